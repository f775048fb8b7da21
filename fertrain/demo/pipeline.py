"""The demo pipeline behind `make demo`: data -> manifest -> Stage A -> Stage B teachers ->
calibration -> ensemble -> evaluation -> soft labels -> DKD student -> ONNX."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fertrain.configs import config_path
from fertrain.demo.dataset import write_demo_dataset
from fertrain.deploy.predict import PredictReport, predict_paths
from fertrain.deploy.recognizer import Recognizer
from fertrain.engine import TrainResult
from fertrain.ensemble import write_ensemble
from fertrain.export.onnx import export_onnx
from fertrain.manifests import BuildResult, build_manifest, load_manifest
from fertrain.manifests.recipe import recipe_from_dict
from fertrain.posthoc import calibrate_teacher, evaluate_teacher
from fertrain.runs import open_run
from fertrain.softlabels import export_softlabels
from fertrain.student import resolve_student_config, train_student
from fertrain.teacher import resolve_teacher_config, train_teacher


def demo_recipe(data_dir: str | Path, seed: int = 1337) -> dict:
    """The recipe `manifests/demo.yaml` spells out, pointed at `data_dir`."""
    data_dir = Path(data_dir)
    return {
        "name": "demo",
        "seed": seed,
        "sources": [
            {"name": "demo_hires", "adapter": "fer2013", "path": str(data_dir / "hires")},
            {"name": "demo_lowres", "adapter": "fer2013", "path": str(data_dir / "lowres")},
        ],
        # near-duplicates off: the synthetic faces are drawn from one template, so their dHashes
        # collide although the images differ (real data: see docs/manifests.md#duplicates)
        "dedup": {"exact": "drop", "near": "off"},
    }


@dataclass
class DemoResult:
    out: Path
    manifest: BuildResult
    teachers: dict[str, TrainResult] = field(default_factory=dict)
    calibration: dict[str, dict] = field(default_factory=dict)
    ensemble: Path | None = None
    evaluation: dict | None = None
    softlabels: dict | None = None
    student: TrainResult | None = None
    predictions: PredictReport | None = None


Report = Callable[[str, Any], None]


def run_demo(out: str | Path, *, seed: int = 1337, recover_stale: bool = False, teachers: bool = True,
             show_progress: bool = True, report: Report | None = None) -> DemoResult:  # fmt: skip
    """Render the data, build the manifest, then train Stage A and Stage B (init from A), calibrate,
    fuse, evaluate, export soft labels and distill the student. `report(stage, result)` is called
    as each stage ends (the CLI prints it then).

    Re-running resumes or skips whatever is already done (each stage is its own run).
    """
    out = Path(out)
    report = report or (lambda stage, value: None)
    with open_run(out, seed=seed, recover_stale=recover_stale):
        write_demo_dataset(out / "data", seed=seed)
        recipe = recipe_from_dict(demo_recipe(out / "data", seed), "demo")
        built = build_manifest(recipe, out / "manifests" / "demo.parquet", overwrite=True, show_progress=False)
        result = DemoResult(out, built)
        report("manifest", built)
        if teachers:
            common = {"manifest": str(built.path), "seed": seed, "output_root": str(out / "teachers"),
                      "recover_stale_lock": recover_stale}  # fmt: skip
            stage_a = resolve_teacher_config(common, config_path("demo_teacher_stageA.yaml"))
            result.teachers["A"] = trained_and_exported(train_teacher(stage_a, show_progress=show_progress))
            report("teacher A", result.teachers["A"])
            stage_b = resolve_teacher_config({**common, "init_from": str(result.teachers["A"].output_dir)},
                                             config_path("demo_teacher_stageB.yaml"))  # fmt: skip
            result.teachers["B"] = trained_and_exported(train_teacher(stage_b, show_progress=show_progress))
            report("teacher B", result.teachers["B"])
            run_teacher_tools(result, workers=1, report=report)
            student = resolve_student_config({"manifest": str(built.path), "seed": seed,
                                              "softlabels": str(result.out / "softlabels" / "train.parquet"),
                                              "output_dir": str(out / "students" / "demo_dkd"),
                                              "recover_stale_lock": recover_stale},
                                             config_path("demo_student.yaml"))  # fmt: skip
            result.student = trained_and_exported(train_student(student, show_progress=show_progress))
            report("student", result.student)
            result.predictions = predict_demo_faces(built, result.student.output_dir / "model.onnx")
            report("predict", result.predictions)
    return result


def predict_demo_faces(built: BuildResult, model: Path, per_class: int = 1) -> PredictReport:
    """The deployed student (ONNX) on a few test faces of the high-resolution source, one per class:
    what `fertrain predict MODEL FILES --detector none` prints."""
    test = built.df[(built.df["split"] == "test") & (built.df["source"] == "demo_hires")]
    picked = test.groupby("label", sort=True).head(per_class)
    manifest = load_manifest(built.path)
    return predict_paths(Recognizer(model, detector="none"), manifest.image_paths(picked), show_progress=False)


def trained_and_exported(result: TrainResult) -> TrainResult:
    """A finished run also gets its ONNX model (with the parity check)."""
    if result.complete:
        result.onnx = export_onnx(result.output_dir)
    return result


def run_teacher_tools(result: DemoResult, *, workers: int, report: Report) -> None:
    """Calibrate both teachers, fuse them 0.7 : 0.3, evaluate, export soft labels."""
    manifest = result.manifest.path
    for stage, t in result.teachers.items():
        result.calibration[stage] = calibrate_teacher(t.output_dir, manifest, "val", per_class=True, workers=workers)
        report(f"calibration {stage}", result.calibration[stage])
    result.ensemble = result.out / "ensembles" / "demo_AB.json"
    write_ensemble(result.ensemble, [result.teachers["A"].output_dir, result.teachers["B"].output_dir], [0.7, 0.3])
    result.evaluation = evaluate_teacher(result.ensemble, manifest, "test", workers=workers)
    report("ensemble", result.evaluation)
    result.softlabels = export_softlabels(result.ensemble, manifest, result.out / "softlabels" / "train.parquet",
                                          splits=["train"], workers=workers, show_progress=False)  # fmt: skip
    report("soft labels", result.softlabels)
