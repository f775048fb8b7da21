"""`fertrain calibrate`: post-hoc temperature scaling of a teacher (run or ensemble).

Held-out logits only: a calibration manifest/split that overlaps the rows a run trained on
(read from its alignment report) is refused, matched by image sha256 and face box.
"""

from __future__ import annotations

import json
from pathlib import Path

from fertrain.atomic import atomic_write_json
from fertrain.calibration.metrics import calibration_report
from fertrain.calibration.per_tta import ensemble_posthoc
from fertrain.calibration.temperature import fit_per_class_temperature, fit_temperature
from fertrain.engine.device import resolve_device
from fertrain.ensemble import load_teacher
from fertrain.ensemble.provenance import default_manifest, training_face_mask
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.plots import plot_reliability
from fertrain.runs.report_paths import CALIBRATION_SPLIT
from fertrain.timestamps import local_timestamp


def calibrate_teacher(target: str | Path, manifest: str | Path | None = None, split: str = CALIBRATION_SPLIT, *,
                      per_class: bool = False, device: str = "auto", batch_size: int = 256, workers: int = 4,
                      n_bins: int = 15, reg: float = 0.1, exclude_overlap: bool = False, tta: str = "none",
                      recover_stale: bool = False) -> dict:  # fmt: skip
    """Fit the temperature on held-out logits (`tta`: of the test-time augmentation served with)."""
    teacher = load_teacher(target)
    teacher.check_writable(recover_stale)
    manifest = manifest or default_manifest(teacher)
    m = load_manifest(manifest)
    rows = filter_rows(m.df, SourceFilter(splits=[split])).reset_index(drop=True)
    if rows.empty:
        raise ConfigError(f"{manifest}: no rows in split {split!r}")
    seen, _ = training_face_mask(teacher, rows)
    own_split = split in {m.config.get("train_split", "train") for m in teacher.members}
    if seen.any() and not exclude_overlap and own_split:
        raise ConfigError(f"--split {split}: a model cannot be calibrated on the split it was trained on "
                          f"({int(seen.sum()):,} of these faces are its training faces, where its probabilities "
                          "are over-confident by construction); use a held-out split such as val, or "
                          "--exclude-overlap to keep only the faces of this split it did not train on")  # fmt: skip
    if seen.any() and not exclude_overlap:
        raise FertrainError(
            f"refusing to calibrate on {manifest} split {split!r}: {int(seen.sum())} of its faces are identical to "
            "faces the teacher trained on (FER2013's PublicTest repeats Training images, for one). Build the "
            "manifest with `--dedup-exact drop` and retrain, or pass --exclude-overlap to calibrate on the "
            "held-out faces only"
        )
    excluded = int(seen.sum())
    rows = rows[~seen].reset_index(drop=True)
    if rows.empty:
        raise ConfigError(f"{manifest} [{split}]: no held-out rows left after excluding training faces")
    was_t = teacher.temperature
    teacher.temperature = 1.0  # calibrate the teacher's raw (ensembles: fused) logits from scratch
    logits, labels = teacher.logits(m, rows, device=resolve_device(device), batch_size=batch_size, workers=workers,
                                    tta=tta)  # fmt: skip
    fit = fit_temperature(logits, labels)
    temperature: float | list[float] = fit.temperature
    refinement = None
    if per_class:
        refinement = fit_per_class_temperature(logits, labels, fit.temperature, reg=reg)
        if any(refinement.kept):
            temperature = refinement.temperatures
    before = calibration_report(logits, labels, 1.0, n_bins)
    after = calibration_report(logits, labels, temperature, n_bins, noise_floor=True)
    temperatures = {**teacher.posthoc_temperatures(), tta: temperature}
    result = {
        "posthoc": True, "teacher": str(target), "manifest": str(manifest), "manifest_sha256": m.sha256,
        "split": split, "n": len(rows), "tta": tta, "excluded_training_overlap": excluded, "temperature": temperature,
        "temperatures": temperatures,
        "global_fit": fit.to_dict(),
        "per_class": refinement.to_dict() if refinement else None, "previous_temperature": was_t,
        "before": before, "after": after, "n_bins": n_bins, "recorded": local_timestamp(),
    }  # fmt: skip
    json_out, png_out = teacher.report_path("calibration.json"), teacher.report_path("reliability.png")
    with teacher.writing(recover_stale):
        if teacher.is_ensemble:  # an ensemble serves with its post-hoc T from its own JSON
            atomic_write_json(teacher.path, {**teacher.spec_json, **ensemble_posthoc(temperature, tta, temperatures)})
        atomic_write_json(json_out, result)
        title = f"{teacher.path.name} on {Path(manifest).name} [{split}], n={len(rows)}"
        plot_reliability(before, after, png_out, title=title)
        sidecars = [] if teacher.is_ensemble else refresh_onnx_temperature(teacher.path, temperature, tta, temperatures)
    result["written"] = [str(json_out), str(png_out), *sidecars]
    return result


def refresh_onnx_temperature(run_dir: Path, temperature, tta: str, temperatures: dict) -> list[str]:
    """ONNX models exported before calibration serve with the new temperature too (their sidecars):
    the default one, and every post-hoc fit of the run (`temperatures`, per --tta) over the sidecar's
    own map (which keeps the training fit for the --tta nobody calibrated)."""
    written = []
    for sidecar in sorted(run_dir.glob("*.onnx.json")):
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        meta.update(temperature=temperature, temperature_source="calibration.json (fertrain calibrate)",
                    temperature_tta=tta, temperatures={**meta.get("temperatures", {}), **temperatures})
        atomic_write_json(sidecar, meta)
        written.append(str(sidecar))
    return written


__all__ = ["calibrate_teacher"]
