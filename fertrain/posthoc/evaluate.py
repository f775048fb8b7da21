"""`fertrain evaluate TARGET --manifest M --split test` (and `fertrain teacher --evaluate-only`): metrics of a
run or an ensemble."""

from __future__ import annotations

import json
from pathlib import Path

from fertrain.atomic import atomic_write_json
from fertrain.calibration import calibration_report
from fertrain.engine.device import resolve_device
from fertrain.engine.evaluate import classification_metrics
from fertrain.ensemble import load_teacher
from fertrain.ensemble.agreement import member_agreement
from fertrain.errors import ConfigError
from fertrain.labels import CLASS_NAMES
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.plots import plot_confusion_matrix
from fertrain.runs.report_paths import EVALUATION_SPLIT, evaluation_name, evaluation_stem


def evaluate_teacher(target: str | Path, manifest_path: str | Path, split: str = EVALUATION_SPLIT, *,
                     device: str = "auto", batch_size: int = 256, workers: int = 4, tta: str = "none",
                     recover_stale: bool = False) -> dict:  # fmt: skip
    """Accuracy, macro-F1, per-class metrics, confusion matrix, calibration (raw and at the
    teacher's temperature) and the same per source, and for an ensemble how its members agree
    (`member_agreement`); JSON + confusion PNG next to the target."""
    target, manifest_path = Path(target), Path(manifest_path)
    teacher = load_teacher(target, tta)
    teacher.check_writable(recover_stale)
    manifest = load_manifest(manifest_path)  # stamp checked
    rows = filter_rows(manifest.df, SourceFilter(splits=[split])).reset_index(drop=True)
    if rows.empty:
        raise ConfigError(f"{manifest_path}: no rows in split {split!r}")
    member_logits, labels = teacher.member_logits(manifest, rows, device=resolve_device(device),
                                                  batch_size=batch_size, workers=workers, tta=tta)  # fmt: skip
    logits = teacher.fused(member_logits)
    result = {
        "teacher": teacher.describe(), "manifest": str(manifest_path), "manifest_sha256": manifest.sha256,
        "split": split, "tta": tta, "temperature_tta": teacher.temperature_tta,
        **classification_metrics(logits, labels),
        "calibration": {"raw": calibration_report(logits, labels, 1.0),
                        "scaled": calibration_report(logits, labels, teacher.temperature, noise_floor=True)},
        "by_source": {src: classification_metrics(logits[mask], labels[mask])
                      for src in sorted(rows["source"].unique()) for mask in [(rows["source"] == src).to_numpy()]},
    }  # fmt: skip
    if teacher.is_ensemble:
        result["members"] = member_agreement(member_logits, labels)
    stem = evaluation_stem(manifest_path, split, tta)
    json_out = teacher.report_path(evaluation_name(manifest_path, split, tta))
    png_out = teacher.report_path(f"confusion_{stem}.png")
    title = f"{target.name} on {stem}: acc {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}"
    with teacher.writing(recover_stale):
        atomic_write_json(json_out, result)
        plot_confusion_matrix(result["confusion_matrix"], CLASS_NAMES, png_out, title=title)
    result["written"] = [str(json_out), str(png_out)]
    return json.loads(json.dumps(result, default=str))
