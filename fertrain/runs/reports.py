"""Run reports every run directory gets: environment.json and alignmentreport.json."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fertrain import __version__
from fertrain.atomic import atomic_write_json
from fertrain.errors import FertrainError
from fertrain.manifests.build import count_table
from fertrain.manifests.filters import SourceFilter, filter_rows
from fertrain.manifests.io import Manifest, load_manifest
from fertrain.timestamps import local_timestamp

ALIGNMENT_REPORT = "alignmentreport.json"
ENVIRONMENT = "environment.json"


def installed_packages() -> dict[str, str]:
    """pip-freeze equivalent from importlib.metadata (no subprocess, works without pip)."""
    pkgs = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            pkgs[name] = dist.version
    return dict(sorted(pkgs.items(), key=lambda kv: kv[0].lower()))


def git_commit(cwd: str | Path | None = None) -> dict | None:
    """HEAD commit and dirty flag of the git checkout at `cwd`, or None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment_info(*, seed: int | None = None, command: str | None = None) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "recorded": local_timestamp(),
        "fertrain_version": __version__,
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "command": command if command is not None else " ".join(sys.argv),
        "seed": seed,
        "git": git_commit(),
        "packages": installed_packages(),
    }


def write_environment(output_dir: str | Path, *, seed: int | None = None, command: str | None = None) -> Path:
    return atomic_write_json(Path(output_dir) / ENVIRONMENT, environment_info(seed=seed, command=command))


def _counts(df: pd.DataFrame) -> dict:
    return {"rows": len(df), "by_split": {s: int(n) for s, n in df["split"].value_counts().sort_index().items()},
            "by_source_split_class": count_table(df)}  # fmt: skip


@dataclass
class AlignedData:
    """The manifest a run uses, the rows its filter keeps, and the report saying so."""

    manifest: Manifest
    rows: pd.DataFrame
    report: dict


def load_aligned_data(manifest_path: str | Path, policy: SourceFilter | None = None) -> AlignedData:
    """The manifest (stamp checked) and its rows after `policy`, without writing a report."""
    manifest = load_manifest(manifest_path, verify_stamp=True)
    return AlignedData(manifest, filter_rows(manifest.df, policy or SourceFilter()), {})


def recorded_inputs(report: dict) -> dict[str, str]:
    """{option: sha256} of the input files an alignment report recorded besides the manifest ({} for none)."""
    return {option: entry["sha256"] for option, entry in (report.get("inputs") or {}).items()}


def write_alignment_report(
    output_dir: str | Path,
    manifest_path: str | Path,
    policy: SourceFilter | None = None,
    *,
    allow_manifest_change: bool = False,
    inputs: dict[str, dict] | None = None,
) -> AlignedData:
    """Load the manifest (stamp checked), filter it, and record what the run sees: with `inputs`
    ({option: {"path", "sha256"}}), also the other files it reads by content.

    A run directory whose earlier report names a different manifest sha256 is refused
    (resuming on changed data is how overnight runs go quietly wrong) unless
    `allow_manifest_change`.
    """
    output_dir = Path(output_dir)
    policy = policy or SourceFilter()
    manifest = load_manifest(manifest_path, verify_stamp=True)
    previous_path = output_dir / ALIGNMENT_REPORT
    if previous_path.is_file() and not allow_manifest_change:
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
        if previous.get("manifest_sha256") not in (None, manifest.sha256):
            raise FertrainError(
                f"{output_dir} was run on manifest sha256 {previous['manifest_sha256'][:12]}… "
                f"but {manifest_path} is now {manifest.sha256}; use a new output directory "
                "or pass --force to continue on the changed manifest"
            )
    rows = filter_rows(manifest.df, policy)
    report = {
        "manifest": str(Path(manifest_path)),
        "manifest_resolved": str(Path(manifest_path).resolve()),
        "manifest_sha256": manifest.sha256,
        "source_filter": policy.to_dict(),
        "splits": sorted(rows["split"].unique().tolist()),
        "before_filter": _counts(manifest.df),
        "after_filter": _counts(rows),
        "inputs": inputs or {},
        "output_dir": str(output_dir),
        "recorded": local_timestamp(),
    }
    atomic_write_json(previous_path, report)
    return AlignedData(manifest, rows, report)
