"""Throughput mechanisms on CPU: the device-resident data path equals the DataLoader path sample
for sample, checkpoints written in the background are complete, and whole runs agree."""

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
