"""The training engine on real (tiny) runs: the resume allowlist, --force records, model EMA,
non-finite losses, TensorBoard logging, top-k checkpoints and CPU threads."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from rich.console import Console

from fertrain.engine import TrainConfig, configure_cpu_threads, run_training
from fertrain.engine.config import check_value
from fertrain.engine.config import flag as flag_of
from fertrain.engine.summary import summary_table
from fertrain.errors import ConfigError, FertrainError
from fertrain.runs.checkpoints import load_checkpoint
from fertrain.student import resolve_student_config, train_student
from fertrain.teacher import TeacherTrainer, resolve_teacher_config, train_teacher

TINY = {"backbone": "resnet10t", "head": "linear", "img_size": 32, "batch_size": 32, "workers": 0, "device": "cpu",
        "lr": 2e-3, "lr_warmup_epochs": 0.2, "skip_onnx": True, "augment": {"scale": [0.85, 1.0], "erasing": 0.0}}


def tiny_teacher(manifest: Path, out: Path, **over) -> dict:
    return {**TINY, "manifest": str(manifest), "output_dir": str(out), "epochs": 1, **over}


def test_resume_refuses_each_changed_data_loss_or_augmentation_key_and_names_it(lowres_manifest, tmp_path):
    out = tmp_path / "run"
    first = train_teacher(resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=2)), show_progress=False,
                          until_epoch=1)  # fmt: skip
    assert not first.complete
    frozen = {name: (out / name).read_bytes() for name in ("alignmentreport.json", "history.json",
                                                            "checkpoint_last.pt")}  # fmt: skip
    changes = {"exclude_sources": ["demo_hires"], "clahe": True, "smoothing": 0.1, "class_weights": "inverse",
               "augment": {"scale": [0.5, 1.0], "erasing": 0.0}, "balanced_min_per_class": 200, "lr": 1e-3,
               "model_ema": True, "arcface_m": 0.2, "seed": 7, "fold": 0, "drop_path": 0.1}  # fmt: skip
    for key, value in changes.items():
        cfg = resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=2, **{key: value}))
        with pytest.raises(FertrainError, match=f"{flag_of(key)}: .* -> ") as err:
            train_teacher(cfg, show_progress=False)
        assert "--force" in str(err.value), key
        # a refused resume changes nothing in the run
        assert {n: (out / n).read_bytes() for n in frozen} == frozen, key
    # where and how often may change: eval/checkpoint cadence, workers, logging
    allowed = {"eval_every": 2, "checkpoint_every_steps": 5, "workers": 1, "log": "csv"}
    cfg = resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=2, **allowed))
    with pytest.raises(FertrainError, match="--smoothing: 0.0 -> 0.2"):
        train_teacher(resolve_teacher_config({**cfg.to_dict(), "smoothing": 0.2}), show_progress=False)
    # --force resumes and records the override in run_status.json and in the next history record
    done = train_teacher(resolve_teacher_config({**cfg.to_dict(), "smoothing": 0.2, "force": True}),
                         show_progress=False)  # fmt: skip
    assert done.complete and done.resumed_from_epoch == 1
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "finished"
    assert status["resume_overrides"][0]["changes"]["smoothing"] == [0.0, 0.2]
    history = json.loads((out / "history.json").read_text())
    assert "resume_overrides" not in history[0] and history[1]["resume_overrides"]["smoothing"] == [0.0, 0.2]


def test_student_resume_refuses_changed_loss_options_and_sources(demo_pipeline, tmp_path):
    base = {"manifest": str(demo_pipeline / "manifests" / "demo.parquet"), "backbone": "resnet10t", "img_size": 32,
            "softlabels": str(demo_pipeline / "softlabels" / "train.parquet"), "epochs": 2, "batch_size": 64,
            "workers": 0, "device": "cpu", "skip_onnx": True, "output_dir": str(tmp_path / "s")}  # fmt: skip
    train_student(resolve_student_config(base, loss_opts={"beta": 8}), show_progress=False, until_epoch=1)
    for over, opts, flag in ((base, {"beta": 4}, "--loss"), (base, {"warmup": 5}, "--loss"),
                             ({**base, "loss": "kd"}, {}, "--loss"),
                             ({**base, "include_sources": ["demo_lowres"]}, {"beta": 8}, "--include-sources"),
                             ({**base, "select_metric": "auc"}, {"beta": 8}, "--select-metric")):  # fmt: skip
        with pytest.raises(FertrainError, match=f"{flag}: "):
            train_student(resolve_student_config(over, loss_opts=opts), show_progress=False)
    resumed = train_student(resolve_student_config(base, loss_opts={"beta": 8}), show_progress=False)
    assert resumed.complete and resumed.resumed_from_epoch == 1


class _ModeRecordingTeacher(TeacherTrainer):
    """A teacher that notes, at each epoch, whether torch's deterministic algorithms are on."""

    modes: ClassVar[list[tuple[bool, bool]]] = []

    def train_epoch(self) -> dict:
        self.modes.append((torch.are_deterministic_algorithms_enabled(),
                           torch.is_deterministic_algorithms_warn_only_enabled()))  # fmt: skip
        return super().train_epoch()


def test_deterministic_mode_holds_for_the_run_alone_and_may_change_on_resume(lowres_manifest, tmp_path):
    """`--deterministic` turns torch's deterministic algorithms on (warn-only: ops without a deterministic
    form still run) while the run trains, restores the mode the process had afterwards (a library caller's
    setting is not changed behind it), and like --device it may differ on resume: it changes which kernels
    run, not what is computed."""
    out = tmp_path / "det"
    cfg = resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=2, deterministic=True))
    assert not torch.are_deterministic_algorithms_enabled()
    run_training(_ModeRecordingTeacher, cfg, out, show_progress=False, until_epoch=1)
    assert _ModeRecordingTeacher.modes == [(True, True)]
    assert not torch.are_deterministic_algorithms_enabled()
    result = run_training(_ModeRecordingTeacher, resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=2)),
                          out, show_progress=False)  # fmt: skip
    assert result.complete and result.resumed_from_epoch == 1
    assert _ModeRecordingTeacher.modes == [(True, True), (False, False)]
    torch.use_deterministic_algorithms(True)  # a caller's own strict setting survives a run without the flag
    try:
        run_training(_ModeRecordingTeacher, resolve_teacher_config(tiny_teacher(lowres_manifest, tmp_path / "strict")),
                     tmp_path / "strict", show_progress=False)  # fmt: skip
        assert _ModeRecordingTeacher.modes[-1] == (True, False)
        run_training(_ModeRecordingTeacher, resolve_teacher_config(tiny_teacher(lowres_manifest, tmp_path / "both",
                                                                                deterministic=True)),
                     tmp_path / "both", show_progress=False)  # fmt: skip
        assert _ModeRecordingTeacher.modes[-1] == (True, False)  # --deterministic does not loosen it to warn-only
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_a_compiled_backbone_trains_the_runs_own_weights_and_checkpoints_the_plain_module(lowres_manifest,
                                                                                          tmp_path):
    """`--compile` (set by the shipped fer_resnet configs) runs the training steps through torch.compile of the
    backbone: the compiled module must update the run's own parameters, so two epochs on real faces follow the
    eager run's training and validation losses, and best.pt holds the plain module's keys (no `_orig_mod.`)
    that evaluation and export load. About 15-25 s on a 2-core CPU, most of it the compile."""
    runs = {}
    for compiled in (False, True):
        out = tmp_path / f"compiled_{compiled}"
        cfg = resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=2, compile=compiled,
                                                  deterministic=compiled))  # fmt: skip
        assert train_teacher(cfg, show_progress=False).complete
        runs[compiled] = (json.loads((out / "history.json").read_text()), load_checkpoint(out / "best.pt")["model"])
    (eager_history, eager_weights), (history, weights) = runs[False], runs[True]
    # the compiled kernels round differently (0.15 % apart after 14 steps); the loss falls 8 % in that time, so a
    # compiled module that trained a copy of the weights, or none, would be far outside this
    for key in ("train_loss", "val_nll"):
        assert [e[key] for e in history] == pytest.approx([e[key] for e in eager_history], rel=5e-3), key
    assert eager_history[1]["train_loss"] < 0.97 * eager_history[0]["train_loss"]
    # validation runs the plain module: its NLL above shows the plain weights are the trained ones
    assert list(weights) == list(eager_weights)


def test_model_ema_is_evaluated_beside_the_raw_weights_and_the_better_is_best(lowres_manifest, tmp_path):
    out = tmp_path / "ema"
    cfg = resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=3, model_ema=True, model_ema_decay=0.9,
                                              checkpoint_hist=2))  # fmt: skip
    result = train_teacher(cfg, show_progress=False)
    history = json.loads((out / "history.json").read_text())
    for rec in history:
        assert 0 <= rec["ema_val_accuracy"] <= 1 and rec["selected_weights"] in ("model", "ema")
        better = "ema" if rec["ema_val_macro_f1"] > rec["val_macro_f1"] else "model"
        assert rec["selected_weights"] == better
    chosen = [max(r["val_macro_f1"], r["ema_val_macro_f1"]) for r in history]
    best = load_checkpoint(out / "best.pt")
    assert best["metrics"]["macro_f1"] == pytest.approx(max(chosen))
    assert result.best["weights"] == history[chosen.index(max(chosen))]["selected_weights"]
    # the EMA weights differ from the raw ones and travel in the resume state
    last = load_checkpoint(out / "checkpoint_last.pt")
    assert any(not torch.equal(last["ema"][f"module.{k}"], v) for k, v in last["model"].items()
               if v.dtype.is_floating_point)  # fmt: skip
    # --checkpoint-hist 2: the two best evaluations are kept, no more
    kept = sorted(p.name for p in out.glob("checkpoint-epoch*.pt"))
    assert len(kept) == 2
    ranked = sorted(range(3), key=lambda i: -chosen[i])[:2]
    assert kept == sorted(f"checkpoint-epoch{i + 1}.pt" for i in ranked)


class FirstEpochBest(TeacherTrainer):
    """Selection sees a validation macro-F1 that falls every epoch, so best.pt stays at epoch 1."""

    def evaluate(self, dataset, module=None):
        val = super().evaluate(dataset, module)
        return {**val, "macro_f1": 1.0 - 0.1 * self.epoch} if dataset is self.val_set else val


class EveryEpochBest(TeacherTrainer):
    """Selection sees a validation macro-F1 that rises every epoch, so best.pt is saved every epoch."""

    def evaluate(self, dataset, module=None):
        val = super().evaluate(dataset, module)
        return {**val, "macro_f1": 0.1 * self.epoch} if dataset is self.val_set else val


def test_training_never_replaces_a_post_hoc_calibration_however_it_is_written(lowres_manifest, tmp_path):
    out = tmp_path / "calibrated"
    cfg = resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=2))
    run_training(EveryEpochBest, cfg, out, show_progress=False, until_epoch=1)
    assert "posthoc" not in json.loads((out / "calibration.json").read_text())  # the trainer's report
    # `fertrain calibrate` fitted one meanwhile, written compactly (by hand or another tool)
    posthoc = json.dumps({"posthoc": True, "temperature": 0.8, "tta": "ten"}, separators=(",", ":"))
    (out / "calibration.json").write_text(posthoc)
    resumed = run_training(EveryEpochBest, cfg, out, show_progress=False)
    assert resumed.complete and load_checkpoint(out / "best.pt")["epoch"] == 2  # best.pt was saved again
    assert (out / "calibration.json").read_text() == posthoc


def test_training_calibration_and_summary_describe_best_pt_not_the_last_epoch(lowres_manifest, tmp_path):
    out = tmp_path / "first_best"
    result = run_training(FirstEpochBest, resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=3)), out,
                          show_progress=False)  # fmt: skip
    history = json.loads((out / "history.json").read_text())
    best = load_checkpoint(out / "best.pt")
    assert best["epoch"] == result.best["epoch"] == 1 and len(history) == 3
    assert history[0]["temperature"] != history[-1]["temperature"]  # so the checks below tell the epochs apart
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["epoch"] == 1 and cal["fit"]["temperature"] == best["temperature"] == history[0]["temperature"]
    assert cal["raw"]["ece"] == history[0]["val_ece"]
    console = Console(file=io.StringIO(), width=200)
    console.print(summary_table(result))
    row = next(line for line in console.file.getvalue().splitlines() if "best.pt temperature" in line)
    served, last = f"T={best['temperature']:.3f}", f"T={history[-1]['temperature']:.3f}"
    assert served in row and (served == last or last not in row)


class PoisonedTeacher(TeacherTrainer):
    """A teacher whose loss turns NaN at optimizer step 7 (as an exploding run's would)."""

    def forward_loss(self, x, batch):
        terms = super().forward_loss(x, batch)
        if self.global_step >= 6:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def test_non_finite_loss_stops_before_saving_and_keeps_the_last_good_checkpoint(lowres_manifest, tmp_path):
    out = tmp_path / "nan"
    cfg = resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=2, checkpoint_every_steps=5))
    with pytest.raises(FertrainError, match=r"non-finite loss \(loss\) within steps .*checkpoint_last.pt keeps step 5"):
        run_training(PoisonedTeacher, cfg, out, show_progress=False)
    assert load_checkpoint(out / "checkpoint_last.pt")["global_step"] == 5
    assert json.loads((out / "run_status.json").read_text())["status"] == "failed"
    assert not (out / "best.pt").exists()


def test_tensorboard_event_files_hold_step_and_epoch_tags(lowres_manifest, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    cfg = resolve_teacher_config(tiny_teacher(lowres_manifest, out, head="arcface", log="tensorboard"))
    result = train_teacher(cfg, show_progress=False)
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("train/loss", "train/lr", "train/margin", "train/img_per_sec", "val/accuracy", "val/macro_f1",
                "val/ece", "val/ece_scaled", "val/nll"):  # fmt: skip
        assert tag in tags["scalars"], tag
    assert {"val/confusion_matrix", "val/reliability"} <= set(tags["images"])
    losses = acc.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, result.global_step + 1))  # one value per optimizer step
    assert losses[-1].value == pytest.approx(json.loads((out / "history.json").read_text())[0]["train_loss"],
                                             rel=0.5)  # fmt: skip


@pytest.mark.parametrize("name, value, message", [
    ("lr", -1.0, "--lr must be > 0"), ("lr", 0.0, "--lr must be > 0"), ("lr", float("nan"), "finite"),
    ("lr", "fast", "expected a number"), ("epochs", 1.7, "whole number"), ("epochs", "two", "whole number"),
    ("seed", "abc", "whole number"), ("smoothing", 2.5, "--smoothing must be >= 0 and < 1"),
    ("checkpoint_every_steps", -2, ">= 0"), ("workers", -1, "--workers must be >= 0"),
    ("momentum", 1.0, "< 1"), ("model_ema_decay", 1.0, "< 1"), ("select_metric", "loss", "expected one of"),
])  # fmt: skip
def test_every_value_is_checked_where_it_came_from(name, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve_teacher_config({"manifest": "m.parquet", name: value})


def test_yaml_values_are_checked_with_the_file_and_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    for text, message in (("epochs: two\n", "c.yaml: epochs: expected a whole number"),
                          ("lr: fast\n", "c.yaml: lr: expected a number"),
                          ("augment: {bogus: 1}\n", "augment: unknown key"),
                          ("augment: {scale: big}\n", "augment.scale: expected"),
                          ("epochs: [1\n", r"c.yaml:\d+: not valid YAML"),
                          ("device: tpu\n", "--device 'tpu'")):  # fmt: skip
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=message):
            resolve_teacher_config({"manifest": "m.parquet"}, cfg)
    cfg.write_text("lr: 1e-3\nepochs: 3\n")  # YAML reads 1e-3 as text; a float field takes it
    assert resolve_teacher_config({"manifest": "m.parquet"}, cfg).lr == pytest.approx(1e-3)
    assert check_value(TrainConfig, "clip_grad", None, "--clip-grad") is None


def test_loss_options_are_checked_against_the_loss_they_configure():
    base = {"manifest": "m.parquet", "softlabels": "sl.parquet"}
    assert resolve_student_config(base, loss_opts={"beta": 4}).loss == {"name": "dkd", "beta": 4.0}
    for opts, message in (({"bogus": 1}, "not an option of loss dkd"), ({"temperature": 0}, "temperature must be > 0"),
                          ({"beta": "big"}, "expected a number")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            resolve_student_config(base, loss_opts=opts)
    with pytest.raises(ConfigError, match="--loss 'dkdd'"):
        resolve_student_config({**base, "loss": "dkdd"})


def test_cpu_threads_are_set_deliberately(monkeypatch):
    import fertrain.engine.device as device

    monkeypatch.setattr(device, "available_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    before = torch.get_num_threads()
    try:  # spinning OpenMP threads: only the cores the workers leave
        assert configure_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        assert configure_cpu_threads(0) == 2 and torch.get_num_threads() == 2
        assert configure_cpu_threads(8) == 1
        monkeypatch.setenv("OMP_WAIT_POLICY", "passive")  # sleeping threads: one per core
        assert configure_cpu_threads(1) == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's own setting stands
        torch.set_num_threads(1)
        assert configure_cpu_threads(0) == 1
    finally:
        torch.set_num_threads(before)


def test_the_fertrain_command_lets_idle_openmp_threads_sleep_unless_torch_is_loaded_or_the_user_chose(tmp_path):
    """`fertrain` (and each pytest-xdist worker) sets OMP_WAIT_POLICY=PASSIVE before torch loads; a policy the
    user set stands, and once torch is loaded nothing is set (OpenMP would not read it). Fresh processes: this
    one has torch loaded."""
    probe = ("import os, sys\n"
             "if sys.argv[1] == 'torch-first': import torch\n"
             "from fertrain.cli import main\n"
             "try: main(['--version'])\n"
             "except SystemExit: pass\n"
             "print('policy', os.environ.get('OMP_WAIT_POLICY'))\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def policy(mode: str, **extra: str) -> str:
        out = subprocess.run([sys.executable, "-c", probe, mode], env={**env, **extra}, capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.split("policy ")[-1].strip()

    assert policy("cli") == "PASSIVE"
    assert policy("cli", OMP_WAIT_POLICY="active") == "active"
    assert policy("torch-first") == "None"


def test_model_ema_updates_exactly_as_timms_with_buffers_replaced_midway():
    """The engine's EMA (tensor lists gathered once) gives timm's ModelEmaV3 values bit for bit:
    parameters lerped with the warmup decay, integer buffers copied, and after `.to()` replaced
    every buffer (here a round trip through float64) it follows the new tensors."""
    import timm
    from timm.utils import ModelEmaV3

    from fertrain.engine.ema import ModelEma

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=7)
    reference, ours = ModelEmaV3(model, decay=0.99, use_warmup=True), ModelEma(model, decay=0.99, use_warmup=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def train_step(step: int) -> None:
        loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        reference.update(model, step=step)
        ours.update(model, step=step)

    for step in range(1, 6):
        train_step(step)
    for m in (model, reference.module, ours.module):
        m.double().float()  # new buffer tensors everywhere (parameters keep their identity)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(6, 9):
        train_step(step)
    got, expected = ours.module.state_dict(), reference.module.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert int(got["bn1.num_batches_tracked"]) == 8  # integer buffers follow the model
    assert not torch.equal(got["fc.weight"], model.state_dict()["fc.weight"])  # an average, not a copy


def test_model_ema_runs_on_a_timm_without_its_private_lerp_helper(monkeypatch):
    """timm 1.0.29 (the GPU machines') has no `ModelEmaV3._foreach_lerp_`; an EMA update built on it
    crashed every `--model-ema` run at its first step there."""
    from timm.utils import ModelEmaV3

    from fertrain.engine.ema import ModelEma

    monkeypatch.delattr(ModelEmaV3, "_foreach_lerp_", raising=False)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.75)
    before = ema.module[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 3
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, 0.75 * before + 0.25 * model[0].weight)
    assert int(ema.module[1].num_batches_tracked) == 3


def test_an_epochs_time_includes_the_device_work_it_queued(lowres_manifest, tmp_path, monkeypatch):
    """On a GPU the training loop only queues work: the epoch's clock is read after waiting for the
    device, so a slow wait shows in epoch_sec and in img_per_sec (read before it, the epochs whose
    last loss read fell early looked up to a third faster; this test fails with the clock read first)."""
    import time

    import fertrain.engine.trainer as trainer_module

    waits = []

    def slow_wait(device):
        waits.append(device.type)
        time.sleep(1.5)  # longer than the tiny epoch's own loop (~0.9 s on 2 cores)

    monkeypatch.setattr(trainer_module, "synchronize", slow_wait)
    out = tmp_path / "clock"
    train_teacher(resolve_teacher_config(tiny_teacher(lowres_manifest, out)), show_progress=False)
    (rec,) = json.loads((out / "history.json").read_text())
    assert waits == ["cpu"]  # once per epoch
    assert rec["epoch_sec"] >= 1.5
    assert rec["img_per_sec"] * rec["epoch_sec"] == pytest.approx(rec["train_images"], rel=0.01)
