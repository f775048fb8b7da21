"""`fertrain manifest verify`: stamp, every image present, optionally every image's sha256."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fertrain.errors import StampMismatchError
from fertrain.manifests.imageprobe import parallel_map, sha256_file
from fertrain.manifests.io import check_stamp, load_manifest


@dataclass
class VerifyReport:
    manifest: Path
    rows: int = 0
    stamp_ok: bool = False
    stamp_error: str | None = None
    missing: list[tuple[str, str]] = field(default_factory=list)  # (row_id, path)
    hash_mismatch: list[tuple[str, str]] = field(default_factory=list)
    outside_root: list[tuple[str, str]] = field(default_factory=list)  # (row_id, real path)
    hashed: bool = False

    @property
    def ok(self) -> bool:
        return self.stamp_ok and not self.missing and not self.hash_mismatch and not self.outside_root


def _check_one(path: Path, expected: str, hash_images: bool) -> str:
    if not path.is_file():
        return "missing"
    if hash_images and sha256_file(path) != expected:
        return "mismatch"
    return ""


def verify_manifest(
    path: str | Path, *, hash_images: bool = False, workers: int | None = None, show_progress: bool = True
) -> VerifyReport:
    report = VerifyReport(Path(path))
    try:
        check_stamp(path)
        report.stamp_ok = True
    except StampMismatchError as exc:
        report.stamp_error = str(exc)
    manifest = load_manifest(path, verify_stamp=False)
    df = manifest.df
    report.rows = len(df)
    report.hashed = hash_images
    paths = manifest.image_paths(check=False)
    report.outside_root = [(row_id, real) for row_id, _, real in manifest.outside_root(df, paths)]
    outside = {row_id for row_id, _ in report.outside_root}
    items = [(p, sha, hash_images and row_id not in outside)  # never read what lies outside the root
             for p, sha, row_id in zip(paths, df["sha256"], df["row_id"], strict=True)]  # fmt: skip
    what = "hashing" if hash_images else "checking"
    results = parallel_map(_check_one, items, workers=workers, description=f"{what} images", show=show_progress)
    for row_id, p, status in zip(df["row_id"], df["path"], results, strict=True):
        if status == "missing":
            report.missing.append((row_id, p))
        elif status == "mismatch":
            report.hash_mismatch.append((row_id, p))
    return report
