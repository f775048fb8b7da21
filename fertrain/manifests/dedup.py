"""Duplicate faces within and across sources.

Exact: same image bytes (sha256) and same face box. Near: 64-bit dHash within a Hamming
threshold, found through band buckets (pigeonhole: two hashes within t bits agree exactly
on at least one of t+1 bands), so the cost is near-linear instead of all pairs.

Which copy survives: the row from the higher-priority source (recipe order, or `priority`);
within a source, the copy in the evaluation split (test, then val) so that duplicates never
leak an evaluation image into train; then the first row. Every pair is reported.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from fertrain.errors import ConfigError

MODES = ("off", "report", "drop")
SPLIT_RANK = {"test": 0, "val": 1, "train": 2}
PAIR_COLUMNS = ["kind", "row_id", "dup_of", "source", "dup_of_source", "split", "dup_of_split",
                "label", "dup_of_label", "hamming", "action"]  # fmt: skip


@dataclass
class DedupPolicy:
    exact: str = "report"
    near: str = "report"
    near_threshold: int = 2

    def __post_init__(self) -> None:
        for name in ("exact", "near"):
            if getattr(self, name) is False:  # YAML 1.1 reads a bare `off` as false
                setattr(self, name, "off")
            if getattr(self, name) not in MODES:
                raise ConfigError(f"dedup.{name} = {getattr(self, name)!r}; expected one of {', '.join(MODES)}")
        if not 0 <= int(self.near_threshold) <= 16:
            raise ConfigError(f"dedup.near_threshold = {self.near_threshold}; expected 0..16 bits")

    def to_dict(self) -> dict:
        return asdict(self)


def _priority_order(df: pd.DataFrame, source_priority: dict[str, int]) -> np.ndarray:
    keys = pd.DataFrame({
        "p": df["source"].map(source_priority).fillna(len(source_priority)).to_numpy(),
        "s": df["split"].map(SPLIT_RANK).fillna(3).to_numpy(),
        "i": np.arange(len(df)),
    })  # fmt: skip
    return keys.sort_values(["p", "s", "i"], kind="stable").index.to_numpy()


def face_keys(df: pd.DataFrame) -> pd.Series:
    """Identity of a face: image sha256 plus its box (several faces of one photo differ)."""
    key = df["sha256"].astype(str)
    for col in ("box_x", "box_y", "box_w", "box_h"):
        key = key + "|" + df[col].astype("string").fillna("")
    return key


def _exact_pairs(df: pd.DataFrame, order: np.ndarray) -> list[tuple[int, int, int]]:
    key = face_keys(df).to_numpy()
    first: dict[str, int] = {}
    pairs = []
    for i in order:
        k = key[i]
        if k in first:
            pairs.append((int(i), first[k], 0))
        else:
            first[k] = int(i)
    return pairs


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x) if hasattr(np, "bitwise_count") else np.array([bin(int(v)).count("1") for v in x])


def _near_pairs(df: pd.DataFrame, order: np.ndarray, skip: set[int], threshold: int) -> list[tuple[int, int, int]]:
    hashes = np.array([int(h, 16) if h else 0 for h in df["dhash"].fillna("")], dtype=np.uint64)
    valid = df["dhash"].fillna("").str.len().to_numpy() == 16
    n_bands = threshold + 1
    edges = np.linspace(0, 64, n_bands + 1).astype(int)
    masks = [np.uint64(((1 << (hi - lo)) - 1) << lo) for lo, hi in itertools.pairwise(edges)]
    buckets: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(n_bands)]
    pairs = []
    for i in order:
        i = int(i)
        if i in skip or not valid[i]:
            continue
        h = hashes[i]
        band_keys = [int(h & m) for m in masks]
        cands = {j for b, k in enumerate(band_keys) for j in buckets[b].get(k, ())}
        if cands:
            cand = np.fromiter(cands, dtype=np.int64)
            dist = _popcount(hashes[cand] ^ h)
            best = int(np.argmin(dist))
            if dist[best] <= threshold:
                pairs.append((i, int(cand[best]), int(dist[best])))
                continue
        for b, k in enumerate(band_keys):
            buckets[b][k].append(i)
    return pairs


def find_duplicates(
    df: pd.DataFrame, source_priority: dict[str, int], policy: DedupPolicy
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return (pairs table, boolean mask of rows to drop). `df` must have a 0..n-1 index."""
    order = _priority_order(df, source_priority)
    drop = np.zeros(len(df), dtype=bool)
    records = []
    exact = _exact_pairs(df, order) if policy.exact != "off" else []
    exact_dups = {i for i, _, _ in exact}
    near = _near_pairs(df, order, exact_dups, int(policy.near_threshold)) if policy.near != "off" else []
    for kind, pairs, mode in (("exact", exact, policy.exact), ("near", near, policy.near)):
        for i, j, dist in pairs:
            if mode == "drop":
                drop[i] = True
            records.append((kind, i, j, dist, "dropped" if mode == "drop" else "reported"))
    row_id, source, split, label = (df[c].to_numpy() for c in ("row_id", "source", "split", "label"))
    table = pd.DataFrame(
        [(k, row_id[i], row_id[j], source[i], source[j], split[i], split[j], int(label[i]), int(label[j]), d, a)
         for k, i, j, d, a in records],
        columns=PAIR_COLUMNS,
    )  # fmt: skip
    return table, drop


def summarize_pairs(pairs: pd.DataFrame) -> dict:
    """Counts for the build summary: per kind, how many, dropped, cross-source/split, label conflicts."""
    out: dict = {}
    for kind in ("exact", "near"):
        p = pairs[pairs["kind"] == kind]
        out[kind] = {
            "pairs": len(p),
            "dropped": int((p["action"] == "dropped").sum()),
            "cross_source": int((p["source"] != p["dup_of_source"]).sum()),
            "cross_split": int((p["split"] != p["dup_of_split"]).sum()),
            "label_conflicts": int((p["label"] != p["dup_of_label"]).sum()),
            "by_source_pair": {f"{a}~{b}": int(n) for (a, b), n in
                               p.groupby(["source", "dup_of_source"]).size().items()},
        }  # fmt: skip
    return out
