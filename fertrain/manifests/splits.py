"""Deterministic derived splits: stratified by class, grouped by subject when known.

Used where a source lacks a split (no val -> carve val out of train; no split at all ->
train/val/test; grouping keeps every face of one subject or photo on one side) and for the folds
of cross-fitted teachers (`--fold K --folds N`), which hold one fold of the training rows out.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from fertrain.errors import ConfigError


def _holdout_mask(labels: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of ~`fraction` of rows, stratified (and grouped), from sklearn's k-fold."""
    n_splits = max(2, round(1.0 / fraction))
    n_units = len(np.unique(groups)) if groups is not None else len(labels)
    if n_units < n_splits:
        raise ConfigError(
            f"cannot derive a {fraction:.0%} split from {n_units} {'groups' if groups is not None else 'rows'}; "
            f"need at least {n_splits}"
        )
    if np.unique(labels, return_counts=True)[1].max() < n_splits:
        # Too few rows in every class to stratify: hold out whole units (groups or rows) at random.
        units = np.unique(groups) if groups is not None else np.arange(len(labels))
        held_units = np.random.default_rng(seed).permutation(units)[: max(1, round(fraction * len(units)))]
        return np.isin(groups if groups is not None else np.arange(len(labels)), held_units)
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer members than folds; the split is still valid.
        warnings.simplefilter("ignore", UserWarning)
        if groups is not None:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            _, held = next(splitter.split(np.zeros(len(labels)), labels, groups))
        else:
            splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            _, held = next(splitter.split(np.zeros(len(labels)), labels))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return mask


FOLD_SEED = 0  # fixed, so that teachers with different --seed values share one partition into folds


def training_folds(labels: np.ndarray, images: np.ndarray, folds: int) -> np.ndarray:
    """Each row's fold in 0..folds-1: stratified by label, rows of one image (same sha256) in one fold.

    Depends only on the rows in their manifest order, not on a run's --seed, so the N teachers of
    a cross-fit hold out every row exactly once (each lists its held-out rows for the export)."""
    distinct = len(np.unique(images))
    if distinct < folds:
        raise ConfigError(f"--folds {folds}: only {distinct} distinct training images")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a class smaller than the number of folds: still valid
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=FOLD_SEED)
        fold_of = np.empty(len(labels), dtype=np.int64)
        for k, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels, images)):
            fold_of[held] = k
    return fold_of


def derive_splits(
    splits: list[str | None],
    labels: list[int],
    groups: list[str | None],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[list[str], dict[str, str]]:
    """Fill in missing splits. Returns the new split list and a note of what was derived."""
    split_arr = np.array([s if s is not None else "" for s in splits], dtype=object)
    label_arr = np.asarray(labels)
    has_groups = any(g is not None for g in groups)
    group_arr = np.array([g if g is not None else f"__row{i}" for i, g in enumerate(groups)], dtype=object)
    derived: dict[str, str] = {}

    def carve(pool: np.ndarray, fraction: float, name: str, offset: int, of_what: str) -> None:
        idx = np.flatnonzero(pool)
        if fraction <= 0 or idx.size == 0:
            return
        mask = _holdout_mask(label_arr[idx], group_arr[idx] if has_groups else None, fraction, seed + offset)
        split_arr[idx[mask]] = name
        how = "grouped by subject/photo, stratified" if has_groups else "stratified"
        derived[name] = f"{int(mask.sum())} rows (~{fraction:.0%} of {of_what}), {how}, seed {seed + offset}"

    missing = split_arr == ""
    if missing.any():
        # No split at all: test first from everything, then val from what remains.
        carve(missing, test_fraction, "test", 0, "all rows")
        remaining = split_arr == ""
        carve(remaining, val_fraction / max(1e-9, 1.0 - test_fraction), "val", 1, "rows left after test")
        split_arr[split_arr == ""] = "train"
    if not (split_arr == "val").any() and (split_arr == "train").any():
        carve(split_arr == "train", val_fraction, "val", 1, "train")
    return [str(s) for s in split_arr], derived
