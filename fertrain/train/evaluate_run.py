"""`fertrain teacher --evaluate-only`: evaluate a run's best.pt on any manifest split."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fertrain.atomic import atomic_write_json
from fertrain.calibration import calibration_report
from fertrain.data import ManifestFaces, PreprocessSpec, collate_faces
from fertrain.errors import ConfigError
from fertrain.export.onnx import load_run_model
from fertrain.labels import CLASS_NAMES
from fertrain.manifests import SourceFilter, filter_rows, load_manifest
from fertrain.plots import plot_confusion_matrix
from fertrain.runs import run_lock
from fertrain.train.evaluate import classification_metrics, collect_logits


def evaluate_run(run_dir: str | Path, manifest_path: str | Path, split: str = "test", *, device: str = "auto",
                 batch_size: int = 128, workers: int = 4, recover_stale: bool = False) -> dict:  # fmt: skip
    from fertrain.train.teacher import resolve_device

    run_dir, manifest_path = Path(run_dir), Path(manifest_path)
    model, ckpt, ckpt_path = load_run_model(run_dir)
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    manifest = load_manifest(manifest_path)  # stamp checked
    rows = filter_rows(manifest.df, SourceFilter(splits=[split])).reset_index(drop=True)
    if rows.empty:
        raise ConfigError(f"{manifest_path}: no rows in split {split!r}")
    dev = resolve_device(device)
    loader = DataLoader(ManifestFaces(manifest, rows, spec), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_faces, generator=torch.Generator().manual_seed(0))  # fmt: skip
    logits, labels, _ = collect_logits(model.to(dev), loader, dev, spec)
    temperature = float(ckpt.get("temperature", 1.0))
    result = {
        "checkpoint": str(ckpt_path), "epoch": ckpt.get("epoch"), "manifest": str(manifest_path),
        "manifest_sha256": manifest.sha256, "split": split, **classification_metrics(logits, labels),
        "calibration": {"raw": calibration_report(logits, labels, 1.0),
                        "scaled": calibration_report(logits, labels, temperature)},
        "by_source": {src: classification_metrics(logits[m], labels[m])
                      for src in sorted(rows["source"].unique()) for m in [(rows["source"] == src).to_numpy()]},
    }  # fmt: skip
    stem = f"{manifest_path.name.split('.')[0]}_{split}"
    with run_lock(run_dir, recover_stale=recover_stale):
        atomic_write_json(run_dir / f"evaluation_{stem}.json", result)
        plot_confusion_matrix(result["confusion_matrix"], CLASS_NAMES, run_dir / f"confusion_{stem}.png",
                              title=f"{run_dir.name} on {stem}: acc {result['accuracy']:.3f}, "
                                    f"macro-F1 {result['macro_f1']:.3f}")  # fmt: skip
    result["written"] = [str(run_dir / f"evaluation_{stem}.json"), str(run_dir / f"confusion_{stem}.png")]
    return json.loads(json.dumps(result))
