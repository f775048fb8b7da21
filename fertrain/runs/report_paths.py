"""The names of a run's reports and where the post-hoc ones about a teacher go (`fertrain calibrate`,
`fertrain evaluate`): inside a run directory, beside an ENSEMBLE.json. Shared by the commands that
write them and the readers (the pipeline that waits for them, `fertrain runs compare`)."""

from __future__ import annotations

from pathlib import Path

# the split each post-hoc command reads unless told: temperatures are fitted on validation faces,
# evaluations report the test split (the pipeline names the reports it waits for from these too)
CALIBRATION_SPLIT = "val"
EVALUATION_SPLIT = "test"
HISTORY = "history.json"  # one record per epoch, written by the training engine
RUN_CONFIG = "config.yaml"  # the run's resolved options, written by the training engine
HELDOUT_ROWS = "heldout_rows.json"  # a --fold run's held-out training rows, read by the out-of-fold export
EVALUATION_GLOB = "evaluation_*.json"  # every `evaluation_name`


def report_path(target: str | Path, name: str, *, ensemble: bool) -> Path:
    """RUN/NAME for a run directory, DIR/ENS.NAME for DIR/ENS.json."""
    target = Path(target)
    return target.with_name(f"{target.stem}.{name}") if ensemble else target / name


def manifest_stem(manifest: str | Path) -> str:
    """How reports name a manifest: its file name up to the first dot (fer2013.parquet -> fer2013)."""
    return Path(manifest).name.split(".")[0]


def evaluation_stem(manifest: str | Path, split: str, tta: str) -> str:
    """MANIFEST_SPLIT[_tta-TTA]: what tells one `fertrain evaluate` report of a teacher from another."""
    return f"{manifest_stem(manifest)}_{split}" + ("" if tta == "none" else f"_tta-{tta}")


def evaluation_name(manifest: str | Path, split: str, tta: str) -> str:
    """The file name of one `fertrain evaluate` report (in a run directory, or ENS. + it beside ENS.json)."""
    return f"evaluation_{evaluation_stem(manifest, split, tta)}.json"
