"""The demo pipeline behind `make demo`: data -> manifest -> Stage A -> Stage B teachers ->
calibration -> ensemble -> evaluation -> soft labels -> DKD student -> ONNX."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fertrain.configs import config_path
from fertrain.demo.dataset import write_demo_dataset
from fertrain.distill.config import resolve_student_config
from fertrain.distill.trainer import StudentResult, train_student
from fertrain.manifests import BuildResult, build_manifest
from fertrain.manifests.recipe import recipe_from_dict
from fertrain.runs import open_run
from fertrain.train import TeacherResult, resolve_config, train_teacher


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
    teachers: dict[str, TeacherResult] = field(default_factory=dict)
    calibration: dict[str, dict] = field(default_factory=dict)
    ensemble: Path | None = None
    evaluation: dict | None = None
    softlabels: dict | None = None
    student: StudentResult | None = None


def run_demo(out: str | Path, *, seed: int = 1337, recover_stale: bool = False, teachers: bool = True,
             show_progress: bool = True) -> DemoResult:  # fmt: skip
    """Render the data, build the manifest, then train Stage A and Stage B (init from A).

    Re-running resumes or skips whatever is already done (each stage is its own run).
    """
    out = Path(out)
    with open_run(out, seed=seed, recover_stale=recover_stale):
        write_demo_dataset(out / "data", seed=seed)
        recipe = recipe_from_dict(demo_recipe(out / "data", seed), "demo")
        built = build_manifest(recipe, out / "manifests" / "demo.parquet", overwrite=True, show_progress=False)
        result = DemoResult(out, built)
        if teachers:
            stage_a = resolve_config({"manifest": str(built.path), "seed": seed, "output_root": str(out / "teachers"),
                                      "recover_stale_lock": recover_stale},
                                     config_path("demo_teacher_stageA.yaml"))  # fmt: skip
            result.teachers["A"] = train_teacher(stage_a, show_progress=show_progress)
            stage_b = resolve_config({"manifest": str(built.path), "seed": seed, "output_root": str(out / "teachers"),
                                      "init_from": str(result.teachers["A"].output_dir),
                                      "recover_stale_lock": recover_stale},
                                     config_path("demo_teacher_stageB.yaml"))  # fmt: skip
            result.teachers["B"] = train_teacher(stage_b, show_progress=show_progress)
            run_teacher_tools(result, workers=1)
            student = resolve_student_config({"manifest": str(built.path), "seed": seed,
                                              "softlabels": str(result.out / "softlabels" / "train.parquet"),
                                              "output_dir": str(out / "students" / "demo_dkd"),
                                              "recover_stale_lock": recover_stale},
                                             config_path("demo_student.yaml"))  # fmt: skip
            result.student = train_student(student, show_progress=show_progress)  # also exports model.onnx
    return result


def run_teacher_tools(result: DemoResult, *, workers: int) -> None:
    """Calibrate both teachers, fuse them 0.7 : 0.3 (seed 002), evaluate, export soft labels."""
    from fertrain.calibration.posthoc import calibrate_teacher
    from fertrain.ensemble import write_ensemble
    from fertrain.ensemble.evaluate import evaluate_teacher
    from fertrain.softlabels import export_softlabels

    manifest = result.manifest.path
    for stage, t in result.teachers.items():
        result.calibration[stage] = calibrate_teacher(t.output_dir, manifest, "val", per_class=True, workers=workers)
    result.ensemble = result.out / "ensembles" / "demo_AB.json"
    write_ensemble(result.ensemble, [result.teachers["A"].output_dir, result.teachers["B"].output_dir], [0.7, 0.3])
    result.evaluation = evaluate_teacher(result.ensemble, manifest, "test", workers=workers)
    result.softlabels = export_softlabels(result.ensemble, manifest, result.out / "softlabels" / "train.parquet",
                                          splits=["train"], workers=workers, show_progress=False)  # fmt: skip
