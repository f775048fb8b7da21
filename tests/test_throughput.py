"""Throughput mechanisms on CPU: the device-resident data path equals the DataLoader path sample
for sample, checkpoints written in the background are complete, whole runs agree, and the
graph-ready training step (`--cuda-graph on`, run without capture on the CPU) is the plain step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fertrain.data.resident import ResidentFaces, resident_bytes, use_data_on_device
from fertrain.engine.saver import BackgroundWriter, host_snapshot
from fertrain.errors import ConfigError
from fertrain.manifests import SourceFilter
from fertrain.runs import open_run
from fertrain.runs.checkpoints import load_checkpoint
from fertrain.student import resolve_student_config, train_student
from fertrain.teacher import TeacherTrainer, resolve_teacher_config, train_teacher

from .test_engine import tiny_teacher


def demo_manifest(demo_pipeline: Path) -> Path:
    return demo_pipeline / "manifests" / "demo.parquet"


def trainer_for(manifest: Path, tmp: Path, **over) -> TeacherTrainer:
    cfg = resolve_teacher_config(tiny_teacher(manifest, tmp / "unused", **over))
    with open_run(tmp / "run", manifest=str(manifest), source_filter=SourceFilter(splits=["train", "val"])) as run:
        return TeacherTrainer(cfg, run, show_progress=False)


def test_resident_batches_equal_the_loader_batches_sample_for_sample(demo_pipeline, tmp_path):
    """Demo faces come in several sizes (48x48 grey, larger colour crops): the device canvas must
    reproduce each batch's collated canvas, padding included."""
    manifest = demo_manifest(demo_pipeline)
    on = trainer_for(manifest, tmp_path / "on", data_on_device="on", img_size=64, balanced_min_per_class=40)
    off = trainer_for(manifest, tmp_path / "off", data_on_device="off", img_size=64, balanced_min_per_class=40)
    assert on.resident_train is not None and off.resident_train is None
    sides = {int(s) for s in on.resident_train.host_sizes.flatten()}
    assert len(sides) > 1, "the demo manifest should mix face sizes"
    for epoch, skip in ((0, 0), (3, 2)):  # a resumed epoch skips its first micro-batches the same way
        pairs = list(zip(on.train_loader(epoch, skip), off.train_loader(epoch, skip), strict=True))
        assert len(pairs) == on.micro_per_epoch - skip
        for a, b in pairs:
            images, sizes, host_sizes, labels, soft, index = a
            assert images.shape == b[0].shape and torch.equal(images, b[0])
            assert torch.equal(sizes, b[1]) and torch.equal(host_sizes, b[2])
            assert torch.equal(labels, b[3]) and torch.equal(index, b[5])
            assert torch.equal(soft.isnan(), b[4].isnan())
    # evaluation on the resident validation split gives the loader path's metrics
    m_on, m_off = on.evaluate(on.val_set), off.evaluate(off.val_set)
    assert m_on["n"] == m_off["n"] == len(on.val_rows)
    assert m_on["confusion_matrix"] == m_off["confusion_matrix"]
    assert m_on["nll"] == pytest.approx(m_off["nll"], abs=1e-6)


def test_data_on_device_auto_stays_off_on_cpu_and_budget_is_an_upper_bound(demo_pipeline, tmp_path):
    t = trainer_for(demo_manifest(demo_pipeline), tmp_path, img_size=64)
    assert t.resident_train is None  # auto on a CPU device: the loader path
    assert not use_data_on_device("auto", torch.device("cpu"), 1)
    assert use_data_on_device("on", torch.device("cpu"), 10**15) and not use_data_on_device("off", t.device, 0)
    resident = ResidentFaces(t.train_set, t.device)
    assert resident.nbytes <= resident_bytes(t.train_rows, 64)
    with pytest.raises(ConfigError, match="--data-on-device 'gpu'; expected one of auto, on, off"):
        resolve_teacher_config(tiny_teacher(demo_manifest(demo_pipeline), tmp_path, data_on_device="gpu"))


def test_background_writer_writes_the_snapshot_not_the_live_tensors(tmp_path):
    live = {"w": torch.zeros(4), "nested": {"step": 1, "t": torch.ones(2)}}
    writer = BackgroundWriter()
    writer.submit(tmp_path / "a.pt", live)
    live["w"] += 5  # training goes on while the file is written
    live["nested"]["t"].mul_(3)
    writer.submit(tmp_path / "b.pt", live)
    writer.close()
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    assert torch.equal(a["w"], torch.zeros(4)) and torch.equal(a["nested"]["t"], torch.ones(2))
    assert torch.equal(b["w"], torch.full((4,), 5.0)) and b["nested"]["step"] == 1
    snap = host_snapshot(live)
    assert snap["w"].data_ptr() != live["w"].data_ptr()


def test_background_write_failure_is_raised_not_lost(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    writer = BackgroundWriter()
    writer.submit(blocker / "sub" / "c.pt", {"x": torch.ones(1)})  # a file where a folder should be
    with pytest.raises(OSError):
        writer.flush()
    writer.close()


def test_a_run_with_data_on_device_matches_the_loader_run_and_resumes_across_modes(lowres_manifest, tmp_path):
    def config(out: Path, mode: str):
        return resolve_teacher_config(tiny_teacher(lowres_manifest, out, epochs=2, data_on_device=mode,
                                                   model_ema=True, model_ema_decay=0.9))  # fmt: skip

    on = train_teacher(config(tmp_path / "on", "on"), show_progress=False).history
    off = train_teacher(config(tmp_path / "off", "off"), show_progress=False).history
    # stopped after epoch 1 on the device, resumed with the loader path: the same run
    assert not train_teacher(config(tmp_path / "mixed", "on"), show_progress=False, until_epoch=1).complete
    mixed = train_teacher(config(tmp_path / "mixed", "off"), show_progress=False)
    assert mixed.resumed_from_epoch == 1
    for a, b, c in zip(on, off, mixed.history, strict=True):
        assert a["global_step"] == b["global_step"] == c["global_step"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert c["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_accuracy"] == b["val_accuracy"] == c["val_accuracy"]
    # the files written by the background thread are complete when the run returns
    last = load_checkpoint(tmp_path / "on" / "checkpoint_last.pt")
    assert last["global_step"] == on[-1]["global_step"] and last["epoch"] == 2
    assert load_checkpoint(tmp_path / "on" / "best.pt")["metrics"]["macro_f1"] == pytest.approx(
        max(max(r["val_macro_f1"], r["ema_val_macro_f1"]) for r in on))
    assert json.loads((tmp_path / "on" / "run_status.json").read_text())["status"] == "finished"


def test_graph_ready_step_trains_the_plain_steps_values_and_resumes_across_modes(lowres_manifest, tmp_path):
    """--cuda-graph on runs the step a CUDA graph captures (LRs, EMA weight and mixup draw read from
    one device vector, the augmentation from a re-seeded generator); on the CPU it runs without
    capture and must train exactly what the plain step trains, mixup/cutmix, class weights,
    clipping and EMA included; a run may switch modes on resume."""
    def config(out: Path, mode: str):
        return resolve_teacher_config(tiny_teacher(
            lowres_manifest, out, epochs=2, cuda_graph=mode, opt="sgd", lr=0.02, mixup=0.8, cutmix=1.0,
            mixup_prob=0.8, smoothing=0.1, class_weights="inverse", clip_grad=1.0, model_ema=True,
            model_ema_decay=0.9, augment={"rotate": 10, "erasing": 0.25}))  # fmt: skip

    plain = train_teacher(config(tmp_path / "off", "off"), show_progress=False)
    graph = train_teacher(config(tmp_path / "on", "on"), show_progress=False)
    assert not train_teacher(config(tmp_path / "mixed", "off"), show_progress=False, until_epoch=1).complete
    mixed = train_teacher(config(tmp_path / "mixed", "on"), show_progress=False)
    assert mixed.resumed_from_epoch == 1
    for a, b, c in zip(plain.history, graph.history, mixed.history, strict=True):
        assert "graphed_steps" not in a and b["graphed_steps"] == 0  # nothing captured on a CPU
        for key in ("train_loss", "val_nll", "ema_val_nll", "val_accuracy"):
            assert a[key] == b[key] == c[key], key
    weights = [load_checkpoint(tmp_path / run / "checkpoint_last.pt") for run in ("off", "on", "mixed")]
    for part in ("model", "ema"):
        for name, tensor in weights[0][part].items():
            assert torch.equal(tensor, weights[1][part][name]) and torch.equal(tensor, weights[2][part][name]), name
    # the saved optimizer holds plain float LRs, not the device tensors a captured step reads
    assert all(isinstance(g["lr"], float) for g in weights[1]["optimizer"]["param_groups"])


def test_cuda_graph_auto_stays_off_on_cpu_and_on_names_what_prevents_capture(demo_pipeline, tmp_path):
    manifest = demo_manifest(demo_pipeline)
    assert trainer_for(manifest, tmp_path / "a", cuda_graph="auto").step_graphs is None
    assert trainer_for(manifest, tmp_path / "b", cuda_graph="on").step_graphs is not None
    with pytest.raises(ConfigError, match=r"--cuda-graph on: .*--grad-accum-steps > 1"):
        trainer_for(manifest, tmp_path / "c", cuda_graph="on", grad_accum_steps=2)
    with pytest.raises(ConfigError, match=r"--cuda-graph on: .*--opt lamb"):
        trainer_for(manifest, tmp_path / "d", cuda_graph="on", opt="lamb")
    with pytest.raises(ConfigError, match=r"--cuda-graph 'always'; expected one of auto, on, off"):
        resolve_teacher_config(tiny_teacher(manifest, tmp_path, cuda_graph="always"))
    teacher = next((demo_pipeline / "teachers").glob("*stageA*"))
    cfg = resolve_student_config({"manifest": str(manifest), "output_dir": str(tmp_path / "s"), "device": "cpu",
                                  "teacher": str(teacher), "loss": "rkd", "epochs": 1, "backbone": "resnet10t",
                                  "img_size": 32, "workers": 0, "cuda_graph": "on"})  # fmt: skip
    with pytest.raises(ConfigError, match=r"--cuda-graph on: .*--loss rkd \(captured: ce, kd, dkd\)"):
        train_student(cfg, show_progress=False)


@pytest.mark.parametrize("signal", ["online", "offline", "online-sam", "online-mix", "offline-mix"])
def test_graph_ready_student_step_trains_the_plain_steps_values(demo_pipeline, tmp_path, signal):
    """A student's graph-ready step (teachers' forward on the student's one augmentation draw, the
    loss, progressive unfreezing as part of the graph's key, DKD's warm-up; with --sam the second
    pass on the same draw and teacher outputs; with mixup/cutmix the draw read from the step's value
    vector, mixing the student's and the teacher's views, and the mixup criterion) trains exactly
    what the plain step trains."""
    source = ({"teacher": str(next((demo_pipeline / "teachers").glob("*stageA*"))), "loss": "kd"}
              if signal.startswith("online") else
              {"softlabels": str(demo_pipeline / "softlabels" / "train.parquet"), "loss": "dkd"})  # fmt: skip
    if signal == "online-sam":
        source["sam"] = 0.05
    if signal.endswith("-mix"):
        source.update(mixup=0.8, cutmix=1.0)

    def run(mode: str):
        cfg = resolve_student_config({"manifest": str(demo_manifest(demo_pipeline)), "backbone": "resnet10t",
                                      "img_size": 32, "batch_size": 64, "workers": 0, "device": "cpu",
                                      "skip_onnx": True, "output_dir": str(tmp_path / mode), "strategy": "two-stage",
                                      "epochs_s1": 1, "epochs_s2": 1, "model_ema": True, "cuda_graph": mode,
                                      **source}, loss_opts={"warmup": 1} if signal == "offline" else None)  # fmt: skip
        return train_student(cfg, show_progress=False)

    plain, graph = run("off"), run("on")
    assert [r["phase"] for r in graph.history] == [r["phase"] for r in plain.history] and len(plain.history) == 2
    for a, b in zip(plain.history, graph.history, strict=True):
        for key in ("train_loss", "train_task_loss", "val_nll", "ema_val_nll"):
            assert a[key] == b[key], key
    weights = [load_checkpoint(tmp_path / mode / "checkpoint_last.pt")["model"] for mode in ("off", "on")]
    assert all(torch.equal(t, weights[1][name]) for name, t in weights[0].items())


def test_step_graphs_capture_a_key_seen_three_steps_running_and_replay_it_with_each_steps_inputs():
    """StepGraphs' bookkeeping on the CPU, with a stand-in graph that replays by running the step
    on its captured input buffers (what a CUDA graph's kernels do): the first steps of a key run
    eagerly, the fourth is captured and replayed, a new key runs eagerly while a captured one is
    replayed as soon as it comes back, every replay reads
    that step's batch, values and (seed, step) draws, and the results equal plain eager steps."""
    from dataclasses import replace

    from fertrain.engine import Batch
    from fertrain.engine.graphs import BATCH_TENSORS, CapturedStep, StepGraphs

    class ReplayedStep:
        def __init__(self, body, batch, values, outputs):
            self.body, self.batch, self.values, self.outputs = body, batch, values, outputs

        def replay(self):
            self.outputs.update(self.body(self.batch, self.values))

    def step(graphs: StepGraphs | None, w: torch.Tensor, seed: int):
        def body(batch, values):
            g = graphs.generator if graphs is not None else torch.Generator().manual_seed(seed)
            noise = torch.rand(1, generator=g)
            loss = ((batch.images.float().mean() + noise) * w).sum() * values[1]
            w.sub_(values[0] * (batch.images.float().mean() + noise) * values[1])  # the "optimizer step"
            return {"loss": loss.detach()}
        return body

    def capture(full_key, body, batch, vals, release_grads):
        static = replace(batch, **{f: getattr(batch, f).clone() for f in BATCH_TENSORS})
        captured = CapturedStep(None, static, vals.clone(), {})  # type: ignore[arg-type]
        captured.graph = ReplayedStep(body, static, captured.values, captured.outputs)  # type: ignore[assignment]
        graphs.graphs[full_key] = captured
        graphs.counts["captured"] += 1
        return captured

    def batch_of(i: int) -> Batch:
        images = torch.full((4, 3, 2, 2), i, dtype=torch.uint8)
        return Batch(images, torch.full((4, 2), 2), None, torch.zeros(4, dtype=torch.long),
                     torch.zeros(4, 7), torch.arange(4), i)  # fmt: skip

    keys = ["a"] * 6 + ["b"] + ["a"] * 3
    graphs = StepGraphs(torch.device("cpu"), capture=False)
    graphs.capture_enabled, graphs.capture = True, capture  # type: ignore[method-assign]
    w_graph, w_plain, losses = torch.ones(1), torch.ones(1), []
    for i, key in enumerate(keys):
        values = [0.01 * (i + 1), 1.0 + i]
        out = graphs.run(key, step(graphs, w_graph, 0), batch_of(i), values, 1000 + i, lambda: None)
        plain = step(None, w_plain, 1000 + i)(batch_of(i), torch.tensor(values))
        losses.append((float(out["loss"]), float(plain["loss"])))
    assert all(a == pytest.approx(b, rel=1e-6) for a, b in losses)
    assert torch.allclose(w_graph, w_plain)
    # steps 1-3 eager, 4 captured and replayed, 5-6 replayed, "b" eager, then "a" replayed at once
    assert graphs.counts == {"eager": 4, "captured": 1, "replayed": 6}
