"""What `fertrain demo run` prints as each stage of the demo ends."""

from __future__ import annotations

from typing import Any

from fertrain.console import console
from fertrain.deploy.predict import result_table
from fertrain.engine.summary import summary_table
from fertrain.labels import CLASS_NAMES
from fertrain.manifests.tables import print_summary


def print_stage(stage: str, value: Any) -> None:
    if stage == "manifest":
        print_summary(value.summary)
        console.print(f"manifest {value.path} ({len(value.df):,} rows)", soft_wrap=True)
    elif stage.startswith("teacher"):
        console.print(summary_table(value, f"{stage}:"))
    elif stage == "student":
        console.print(summary_table(value, "student (DKD from the ensemble's soft labels):"))
    elif stage.startswith("calibration"):
        console.print(f"{stage}: ECE {value['before']['ece']:.3f} -> {value['after']['ece']:.3f} (sampling noise "
                      f"alone on these {value['n']:,} faces: {value['after']['ece_floor']['mean']:.3f}), NLL "
                      f"{value['before']['nll']:.3f} -> {value['after']['nll']:.3f} ({value['written'][1]})",
                      soft_wrap=True)  # fmt: skip
    elif stage == "ensemble":
        console.print(f"ensemble 0.7 A : 0.3 B on test: acc {value['accuracy']:.3f}, macro-F1 {value['macro_f1']:.3f} "
                      f"({value['written'][0]})", soft_wrap=True)  # fmt: skip
    elif stage == "predict":
        console.print(result_table(value.rows, list(CLASS_NAMES), title="student (ONNX) on demo test faces, one per "
                                   "class: fertrain predict MODEL FILES --detector none"))  # fmt: skip
    elif stage == "soft labels":
        console.print(f"soft labels {value['path']} ({value['rows']:,} rows, agreement with the labels "
                      f"{value['agreement']:.3f})", soft_wrap=True)  # fmt: skip
