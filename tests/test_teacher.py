"""Teacher training: schedules, heads, losses, Stage A/B on demo data, kill + resume, evaluation, ONNX."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from fertrain.data import epoch_order
from fertrain.engine.schedules import build_lr_scheduler, set_lr_for_step
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests import DedupPolicy, build_manifest, recipe_from_cli
from fertrain.models import ArcFaceHead, build_model, load_initial_weights
from fertrain.runs import RunLockedError, find_runs, run_lock
from fertrain.runs.checkpoints import load_checkpoint
from fertrain.teacher import margin_at_step, run_name, train_teacher
from fertrain.teacher import resolve_teacher_config as resolve_config
from fertrain.teacher.config import TeacherConfig
from fertrain.teacher.losses import class_weights, teacher_loss

from .clitools import run_cli

# --- schedules -------------------------------------------------------------------------


def test_margin_schedule_warmup_then_linear_ramp():
    kw = {"margin": 0.35, "plain_warmup_epochs": 5, "ramp_start_epoch": 5, "ramp_end_epoch": 15}
    spe = 100
    assert margin_at_step(0, spe, **kw) == 0.0
    assert margin_at_step(499, spe, **kw) == 0.0  # still inside the plain-logits warmup
    assert margin_at_step(500, spe, **kw) == 0.0  # ramp starts at 0
    assert margin_at_step(1000, spe, **kw) == pytest.approx(0.175)  # halfway through epochs 5..15
    assert margin_at_step(750, spe, **kw) == pytest.approx(0.0875)  # fractional epochs, not whole ones
    assert margin_at_step(1500, spe, **kw) == pytest.approx(0.35)
    assert margin_at_step(10_000, spe, **kw) == pytest.approx(0.35)
    # a warmup longer than the ramp start holds the margin at 0 until the warmup ends
    assert margin_at_step(600, spe, margin=0.35, plain_warmup_epochs=8, ramp_start_epoch=5, ramp_end_epoch=15) == 0


def test_lr_schedule_warmup_cosine_min_lr_at_chosen_steps():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    sched = build_lr_scheduler(opt, total_steps=1000, warmup_steps=100, min_lr=1e-6)
    assert set_lr_for_step(sched, 0) == pytest.approx(3e-4 / 100)  # first step of linear warmup
    assert set_lr_for_step(sched, 49) == pytest.approx(3e-4 * 50 / 100)
    assert set_lr_for_step(sched, 99) == pytest.approx(3e-4)  # warmup done
    mid = 1e-6 + 0.5 * (3e-4 - 1e-6) * (1 + math.cos(math.pi * 0.5))
    assert set_lr_for_step(sched, 549) == pytest.approx(mid, rel=1e-6)  # cosine halfway
    assert set_lr_for_step(sched, 999) == pytest.approx(1e-6, abs=1e-9)
    # a pure function of the step: going back gives the same value (what resume relies on)
    assert set_lr_for_step(sched, 49) == pytest.approx(3e-4 * 50 / 100)


# --- heads and losses --------------------------------------------------------------------


def test_arcface_margin_applies_to_the_target_only_and_not_at_eval():
    torch.manual_seed(0)
    head = ArcFaceHead(16, 7, s=30.0)
    feats, y = torch.randn(5, 16), torch.tensor([0, 3, 6, 2, 2])
    cos = F.linear(F.normalize(feats), F.normalize(head.weight))
    plain = head(feats)
    assert torch.allclose(plain, 30 * cos, atol=1e-5)
    assert torch.equal(head(feats, y, margin=0.0), plain)
    with_m = head(feats, y, margin=0.35)
    theta = torch.acos(cos.clamp(-1, 1))
    target = with_m[torch.arange(5), y]
    expected = 30 * torch.where(cos[torch.arange(5), y] > math.cos(math.pi - 0.35),
                                torch.cos(theta[torch.arange(5), y] + 0.35),
                                cos[torch.arange(5), y] - math.sin(math.pi - 0.35) * 0.35)  # fmt: skip
    assert torch.allclose(target, expected, atol=1e-4)
    others = torch.ones(5, 7, dtype=torch.bool)
    others[torch.arange(5), y] = False
    assert torch.equal(with_m[others], plain[others])
    assert (target < plain[torch.arange(5), y]).all()  # the margin makes the target harder


def test_loss_matches_cross_entropy_and_uses_soft_targets_and_weights():
    torch.manual_seed(1)
    logits, y = torch.randn(6, 7), torch.tensor([0, 1, 2, 3, 4, 5])
    assert teacher_loss(logits, y, None) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    assert teacher_loss(logits, y, None, smoothing=0.1) == pytest.approx(
        float(F.cross_entropy(logits, y, label_smoothing=0.1)), rel=1e-6)
    soft = torch.full((6, 7), float("nan"))
    soft[0] = torch.tensor([0.5, 0.5, 0, 0, 0, 0, 0])
    mixed = teacher_loss(logits, y, soft)
    logp = F.log_softmax(logits, 1)
    expected = (-(0.5 * logp[0, 0] + 0.5 * logp[0, 1]) + F.cross_entropy(logits[1:], y[1:], reduction="sum")) / 6
    assert mixed == pytest.approx(float(expected), rel=1e-5)
    w = class_weights(np.array([0] * 90 + [1] * 10), 7, "inverse")
    assert w[1] / w[0] == pytest.approx(9.0) and w[2] == 0
    assert teacher_loss(logits, y, None, weights=torch.ones(7)) == pytest.approx(float(F.cross_entropy(logits, y)))
    eff = class_weights(np.array([0] * 90 + [1] * 10), 7, "effective", beta=0.99)
    assert 1 < eff[1] / eff[0] < 9  # effective numbers soften the inverse weighting
    with pytest.raises(ConfigError):
        class_weights(np.array([0, 1]), 7, "sqrt")


def test_epoch_order_is_deterministic_and_balanced():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 20)
    a = epoch_order(labels, seed=3, epoch=2, balanced_min_per_class=30)
    assert np.array_equal(a, epoch_order(labels, seed=3, epoch=2, balanced_min_per_class=30))
    assert not np.array_equal(a, epoch_order(labels, seed=3, epoch=3, balanced_min_per_class=30))
    counts = np.bincount(labels[a])
    assert counts.tolist() == [50, 30, 30] and len(a) == 110


# --- model creation ------------------------------------------------------------------------


def test_pretrained_offline_fails_fast_with_a_clear_message(monkeypatch):
    import fertrain.models.factory as factory

    monkeypatch.setattr(factory, "hub_reachable", lambda timeout=3.0: False)
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="--pretrained.*--initial-checkpoint"):
        build_model("resnet10t", pretrained=True)
    assert time.perf_counter() - t < 10


def test_initial_checkpoint_loads_timm_state_dict(tmp_path):
    import timm

    src = timm.create_model("resnet10t", num_classes=1000)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    model = build_model("resnet10t", initial_checkpoint=tmp_path / "w.pth")
    assert torch.equal(model.backbone.conv1[0].weight, src.conv1[0].weight)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(FertrainError):
        load_initial_weights(model, tmp_path / "junk.pth")


# --- Stage A / Stage B on the demo pipeline -----------------------------------------------------


def teacher_dirs(demo: Path) -> dict[str, Path]:
    return {d.name.split("_stage")[1][0]: d for d in (demo / "teachers").iterdir()}


def test_stage_a_learns_above_chance_with_the_arcface_schedule(demo_pipeline):
    run = teacher_dirs(demo_pipeline)["A"]
    assert run.name == "RN10T_resnet10t_seed1337_stageA_img48"
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 12
    best = max(h["val_accuracy"] for h in history)
    assert best > 0.3, best  # chance is 1/7
    assert max(h["val_macro_f1"] for h in history) > 0.25
    # the recorded margin follows the schedule (warmup 3 epochs, ramp 3 -> 8)
    spe = history[0]["global_step"]
    margin = TeacherConfig.arcface_m  # the demo config keeps the default
    assert yaml.safe_load((run / "config.yaml").read_text())["arcface_m"] == margin == 0.1
    for h in history:
        last_step = h["global_step"] - 1
        assert h["margin"] == pytest.approx(margin_at_step(last_step, spe, margin=margin, plain_warmup_epochs=3,
                                                           ramp_start_epoch=3, ramp_end_epoch=8))  # fmt: skip
    assert history[0]["margin"] == 0 and history[-1]["margin"] == pytest.approx(margin)
    for name in ("alignmentreport.json", "environment.json", "config.yaml", "metrics.csv", "training_curves.png",
                 "checkpoint_last.pt",
                 "best.pt", "calibration.json", "model.onnx", "model.onnx.json", "run_status.json"):  # fmt: skip
        assert (run / name).is_file(), name
    report = json.loads((run / "alignmentreport.json").read_text())
    assert set(report["after_filter"]["by_source_split_class"]) == {"demo_lowres", "demo_hires"}
    # every epoch's validation logits get a fitted temperature; it minimizes validation NLL
    assert all(h["temperature"] > 0 and h["val_nll_scaled"] <= h["val_nll"] + 1e-9 for h in history)
    assert len(history[-1]["val_confusion_matrix"]) == 7 and "Happy" in history[-1]["val_per_class"]
    ckpt = load_checkpoint(run / "checkpoint_last.pt")
    assert ckpt["global_step"] == history[-1]["global_step"] and ckpt["epoch"] == 12
    assert ckpt["preprocess"]["img_size"] == 48 and ckpt["class_names"][0] == "Angry"


def test_stage_b_inits_from_stage_a_excludes_lowres_at_higher_resolution(demo_pipeline):
    runs = teacher_dirs(demo_pipeline)
    b = runs["B"]
    cfg = load_checkpoint(b / "checkpoint_last.pt")["config"]
    assert cfg["stage"] == "B" and cfg["img_size"] == 64 and cfg["init_from"] == str(runs["A"])
    report = json.loads((b / "alignmentreport.json").read_text())
    assert report["source_filter"]["exclude_sources"] == ["demo_lowres"]
    assert set(report["after_filter"]["by_source_split_class"]) == {"demo_hires"}
    history = json.loads((b / "history.json").read_text())
    assert history[0]["global_step"] < history[-1]["global_step"]  # a new schedule, not A's
    # initialized from A: better than chance after one epoch of fine-tuning
    assert history[0]["val_accuracy"] > 0.2
    assert {r.state for r in find_runs(demo_pipeline)} == {"finished"}


def test_evaluate_only_writes_json_and_confusion_png(demo_pipeline, capsys):
    run = teacher_dirs(demo_pipeline)["A"]
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    code, text = run_cli(["teacher", "--evaluate-only", "--output-dir", run, "--eval-manifest", manifest,
                          "--eval-split", "test", "--device", "cpu", "--workers", "0"], capsys)  # fmt: skip
    assert code == 0, text
    result = json.loads((run / "evaluation_demo_test.json").read_text())
    assert result["split"] == "test" and result["n"] == 258
    assert sum(map(sum, result["confusion_matrix"])) == 258
    assert set(result["by_source"]) == {"demo_lowres", "demo_hires"}
    png = (run / "confusion_demo_test.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_onnx_export_parity(demo_pipeline, capsys):
    run = teacher_dirs(demo_pipeline)["B"]
    sidecar = json.loads((run / "model.onnx.json").read_text())
    assert sidecar["parity"]["max_abs_diff"] < 1e-3 and sidecar["preprocess"]["img_size"] == 64
    code, text = run_cli(["export", "onnx", run, "--out", run / "again.onnx"], capsys)
    assert code == 0 and "max |torch - onnxruntime|" in text
    import onnxruntime as ort

    sess = ort.InferenceSession(str(run / "again.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((3, 3, 64, 64), np.float32)})[0].shape == (3, 7)


def test_second_run_on_a_locked_directory_is_refused(demo_pipeline, tmp_path):
    out = tmp_path / "locked"
    cfg = resolve_config({"manifest": str(demo_pipeline / "manifests" / "demo.parquet"), "output_dir": str(out),
                          "epochs": 1, "device": "cpu"})  # fmt: skip
    with run_lock(out, command="someone else"), pytest.raises(RunLockedError, match="someone else"):
        train_teacher(cfg, show_progress=False)


# --- kill and resume --------------------------------------------------------------------


LIGHT = "augment: {scale: [0.85, 1.0], erasing: 0.0}\n"


def resume_args(manifest: Path, out: Path, cfg_file: Path) -> list[str]:
    return ["teacher", "--config", str(cfg_file), "--manifest", str(manifest), "--backbone", "resnet10t",
            "--img-size", "32", "--epochs", "2", "--batch-size", "16", "--workers", "0", "--device", "cpu",
            "--lr", "0.002", "--lr-warmup-epochs", "0.5", "--plain-logits-warmup-epochs", "0.5",
            "--margin-ramp-start", "0.5", "--margin-ramp-end", "1.5", "--checkpoint-every-steps", "3",
            "--model-ema", "--model-ema-decay", "0.9", "--output-dir", str(out), "--skip-onnx", "-q"]  # fmt: skip


def test_killed_run_resumes_with_the_same_steps_lr_and_weights(demo_data, tmp_path, capsys):
    manifest = tmp_path / "m.parquet"
    build_manifest(recipe_from_cli([f"fer2013:demo_lowres={demo_data / 'lowres'}"], [], DedupPolicy(), 1), manifest,
                   show_progress=False)  # fmt: skip
    cfg_file = tmp_path / "light.yaml"
    cfg_file.write_text(LIGHT)
    # uninterrupted reference, in-process
    code, text = run_cli(resume_args(manifest, tmp_path / "ref", cfg_file), capsys)
    assert code == 0, text
    ref_hist = json.loads((tmp_path / "ref" / "history.json").read_text())
    steps_per_epoch = ref_hist[0]["global_step"]
    assert steps_per_epoch >= 8
    # the same command in a real process, killed mid-epoch after a step checkpoint
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "fertrain", *resume_args(manifest, out, cfg_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while True:
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline, "no step checkpoint appeared"
        ck = out / "checkpoint_last.pt"
        if ck.is_file():
            try:
                state = load_checkpoint(ck)
            except FertrainError:
                state = None
            if state and state["step_in_epoch"] > 0 and state["global_step"] >= steps_per_epoch + 3:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = load_checkpoint(out / "checkpoint_last.pt")["global_step"]
    assert killed_at < 2 * steps_per_epoch
    # same command again: refused (stale lock), then resumed with --recover-stale-lock
    code, text = run_cli(resume_args(manifest, out, cfg_file), capsys)
    assert code == 2 and "stale lock" in text
    code, text = run_cli([*resume_args(manifest, out, cfg_file), "--recover-stale-lock"], capsys)
    assert code == 0, text
    hist = json.loads((out / "history.json").read_text())
    assert [h["global_step"] for h in hist] == [h["global_step"] for h in ref_hist]
    for key in ("lr", "margin", "train_loss", "val_accuracy", "val_nll", "ema_val_accuracy", "ema_val_nll"):
        assert [h[key] for h in hist] == pytest.approx([h[key] for h in ref_hist], rel=1e-6, abs=1e-9), key
    a, b = load_checkpoint(out / "checkpoint_last.pt"), load_checkpoint(tmp_path / "ref" / "checkpoint_last.pt")
    for part in ("model", "ema"):  # the EMA weights survive the kill exactly like the raw ones
        assert all(torch.allclose(a[part][k].float(), b[part][k].float(), atol=1e-6) for k in a[part]), part
    # a changed schedule is not a resume
    code, text = run_cli([*resume_args(manifest, out, cfg_file), "--lr", "0.01"], capsys)
    assert code == 2 and "config or inputs changed" in text and "--lr: 0.002 -> 0.01" in text
    # nor is another augmentation; the same one with a default written out (`--aug trivial=0`) is
    code, text = run_cli([*resume_args(manifest, out, cfg_file), "--aug", "trivial=1"], capsys)
    assert code == 2 and "--aug: {" in text and "'trivial': 0.0} -> {" in text and "'trivial': 1.0}" in text
    code, text = run_cli([*resume_args(manifest, out, cfg_file), "--aug", "trivial=0", "--aug", "rotate=0"], capsys)
    assert code == 0, text
    assert json.loads((out / "history.json").read_text()) == hist  # finished: nothing trained again


def test_config_yaml_cli_precedence_and_stage_presets(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("stage: B\nepochs: 7\nlr: 0.001\n")
    cfg = resolve_config({"lr": 0.005}, cfg_file)
    assert (cfg.stage, cfg.img_size, cfg.exclude_sources, cfg.epochs, cfg.lr) == ("B", 384, ["ferplus"], 7, 0.005)
    assert run_name(cfg) == "RN18_resnet18_seed1337_stageB_img384"
    assert resolve_config({}).img_size == 224 and resolve_config({}).exclude_sources == []
    assert resolve_config({"stage": "B", "exclude_sources": []}).exclude_sources == []
    cfg_file.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown option.*epoch"):
        resolve_config({}, cfg_file)


def test_preprocessing_contract_grey_clahe_and_device_resize():
    from fertrain.data import PreprocessSpec, prepare_face, to_model_input
    from fertrain.data.dataset import collate_faces

    rng = np.random.default_rng(0)
    grey = (rng.normal(120, 6, (48, 48))).clip(0, 255).astype(np.uint8)  # low contrast
    plain = prepare_face(grey, None, PreprocessSpec(img_size=112))
    assert plain.shape == (48, 48, 3) and (plain[..., 0] == plain[..., 2]).all()  # grey replicated, not enlarged
    eq = prepare_face(grey, None, PreprocessSpec(img_size=112, clahe=True))
    assert eq.std() > plain.std() * 1.5  # CLAHE stretches local contrast
    big = rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)
    assert prepare_face(big, (10, 20, 150, 250), PreprocessSpec(img_size=112)).shape == (112, 112, 3)
    # a batch of mixed sizes -> one canvas -> every face resized to the input size on the device
    x, sizes, *_ = collate_faces([(plain, 0, np.zeros(7, np.float32), 0), (np.full((112, 80, 3), 200, np.uint8), 1,
                                                                            np.zeros(7, np.float32), 1)])  # fmt: skip
    assert x.shape == (2, 3, 112, 112) and sizes.tolist() == [[48, 48], [112, 80]]
    out = to_model_input(x, sizes, 112, (0.0,) * 3, (1.0,) * 3, fused=False)
    assert out.shape == (2, 3, 112, 112)
    assert torch.allclose(out[1], torch.full_like(out[1], 200 / 255), atol=1e-5)  # edge padding never leaks in


def test_a_grey_face_is_shrunk_as_one_channel_with_the_same_pixels():
    """`prepare_face` shrinks a grey face before replicating it to RGB: value for value what
    replicating first and shrinking three channels gives (real ExpW photos, many crop sizes)."""
    from fertrain.data import PreprocessSpec, prepare_face

    from .conftest import real_data

    photos = sorted((real_data("expw_mini") / "image" / "origin").glob("*.jpg"))[:12]
    rng = np.random.default_rng(0)
    spec = PreprocessSpec(img_size=112, color="grey")
    for path in photos:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        for _ in range(5):
            w, h = (int(v) for v in rng.integers(60, min(rgb.shape[:2]), 2))
            box = (int(rng.integers(0, rgb.shape[1] - w + 1)), int(rng.integers(0, rgb.shape[0] - h + 1)), w, h)
            x, y = box[:2]
            grey = cv2.cvtColor(rgb[y : y + h, x : x + w], cv2.COLOR_RGB2GRAY)
            reference = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
            if max(h, w) > 112:
                reference = cv2.resize(reference, (112, 112), interpolation=cv2.INTER_AREA)
            assert np.array_equal(prepare_face(rgb, box, spec), reference), (path.name, box)


def test_bench_train_and_export_run_the_real_step_code_on_cpu(demo_pipeline, capsys):
    """The GPU benchmarks, a few steps on CPU: both paths run and report consistent numbers."""
    from fertrain.bench.export_bench import bench_export
    from fertrain.bench.train_bench import bench_train

    manifest = str(demo_pipeline / "manifests" / "demo.parquet")
    tr = bench_train(manifest, backbone="resnet10t", img_size=32, batch_size=16, steps=3, warmup=1, workers=0,
                     amp=False, channels_last=False, device="cpu")  # fmt: skip
    assert tr.model_only_img_s > 0 and tr.end_to_end_img_s > 0
    assert tr.ratio == pytest.approx(tr.end_to_end_img_s / tr.model_only_img_s, rel=1e-2)
    ex = bench_export(manifest, backbone="resnet10t", img_size=32, batch_size=64, workers=0, amp=False,
                      channels_last=False, device="cpu", max_images=200)  # fmt: skip
    assert ex.images == 200 and ex.end_to_end_img_s > 0 and ex.ratio > 0
    code, text = run_cli(["bench", "train", "-m", manifest, "--backbone", "resnet10t", "--img-size", "32", "-b", "16",
                          "--steps", "2", "--warmup", "1", "-j", "0", "--no-amp", "--no-channels-last",
                          "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0 and "ratio" in text


def test_uniform_size_resize_fast_path_samples_like_the_per_face_resample():
    """One interpolate over a batch of equal-size faces == the per-face grid_sample it replaces."""
    from fertrain.data import to_model_input
    from fertrain.data.augment import uniform_size

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8, generator=g)
    sizes = torch.full((4, 2), 48)
    assert uniform_size(sizes) == (48, 48) and uniform_size(torch.tensor([[48, 48], [40, 48]])) is None
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    for out_size in (112, 48, 32):
        slow = to_model_input(x, sizes, out_size, mean, std, fused=False)
        fast = to_model_input(x, sizes, out_size, mean, std, fused=False, native=(48, 48))
        assert fast.shape == slow.shape == (4, 3, out_size, out_size)
        assert torch.allclose(fast, slow, atol=2e-4), (out_size, (fast - slow).abs().max())


@pytest.mark.parametrize("backbone", ["fer_vgg", "fer_vgg_fc"])
def test_fer_vgg_trains_exports_and_serves_like_any_timm_backbone(backbone, lowres_manifest, tmp_path, capsys):
    """`--backbone fer_vgg` (registered with timm by fertrain): a run at FER2013's own 48 px,
    its ONNX export with the parity check, and the same probabilities from the run and the ONNX;
    the same for fer_vgg_fc, whose 3x3 grid and fully connected layers must export too; and their int8
    export passes its accuracy check and serves logits that follow fp32's."""
    import timm

    from fertrain import Recognizer
    from fertrain.data.preprocess import PreprocessSpec
    from fertrain.export.quantize import prepared_rows, served_logits
    from fertrain.manifests import SourceFilter, filter_rows, load_manifest

    from .clitools import run_cli
    from .conftest import real_data

    out = tmp_path / "vgg"
    code, text = run_cli(["teacher", "-m", lowres_manifest, "--backbone", backbone, "--head", "linear",
                          "--img-size", "48", "--epochs", "2", "-b", "32", "-j", "0", "--device", "cpu",
                          "--output-dir", out, "-q"], capsys)  # fmt: skip
    assert code == 0, text
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 2 and all(math.isfinite(r["train_loss"]) and 0 <= r["val_accuracy"] <= 1 for r in hist)
    sidecar = json.loads((out / "model.onnx.json").read_text())
    assert sidecar["backbone"] == backbone and sidecar["parity"]["max_abs_diff"] < 1e-3
    files = sorted((real_data("fer2013") / "validation").rglob("*.jpg"))[::900][:4]
    faces = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in files]
    run_probs = [f.probabilities for f in Recognizer(out, detector="none").predict_faces(faces)]
    onnx_probs = [f.probabilities for f in Recognizer(out / "model.onnx", detector="none").predict_faces(faces)]
    for a, b in zip(run_probs, onnx_probs, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    # the 48-px students are what a folder of faces is served with: their int8 export passes its check,
    code, text = run_cli(["export", "onnx", out, "--int8", "--calibration-images", "64"], capsys)
    assert code == 0, text
    check = json.loads((out / "model.int8.onnx.json").read_text())["int8"]
    assert check["fp32_accuracy"] - check["int8_accuracy"] <= 0.01 and check["agreement"] > 0.9
    # and int8 logits follow fp32 ones face by face. Two epochs leave logits that vary little between
    # faces (and the same argmax everywhere), so the check above cannot see bad activation ranges; the
    # correlation can (above 0.99 here; 0.01-0.16 with calibration inputs scaled by 0.02, which pass the rest)
    spec = PreprocessSpec.from_dict(json.loads((out / "model.onnx.json").read_text())["preprocess"])
    manifest = load_manifest(lowres_manifest)
    val_faces = prepared_rows(manifest, filter_rows(manifest.df, SourceFilter(splits=["val"])).reset_index(drop=True),
                              spec)[0]  # fmt: skip
    fp32, int8 = (served_logits(out / name, val_faces, spec) for name in ("model.onnx", "model.int8.onnx"))
    assert np.corrcoef((fp32 - fp32.mean(0)).ravel(), (int8 - int8.mean(0)).ravel())[0, 1] > 0.9
    params = {"fer_vgg": 4.69e6, "fer_vgg_fc": 10.46e6}[backbone]
    assert sum(p.numel() for p in timm.create_model(backbone).parameters()) == pytest.approx(params, rel=0.01)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        timm.create_model(backbone, pretrained=True)


@pytest.mark.parametrize("lowres_name, stock_name, blocks", [("fer_resnet18", "resnet18", [2, 2, 2, 2]),
                                                            ("fer_resnet34", "resnet34", [3, 4, 6, 3])])
def test_fer_resnets_keep_full_resolution_in_their_first_stage(lowres_name, stock_name, blocks):
    """fer_resnet18/34: resnet18's/34's blocks behind a 3x3 stride-1 stem without max-pool, so a 48-px face
    reaches the first stage at 48x48 (timm's stem gives 12x12) and the last at 6x6."""
    import timm

    lowres, stock = timm.create_model(lowres_name, num_classes=0), timm.create_model(stock_name, num_classes=0)
    x = torch.randn(2, 3, 48, 48)
    first = {}

    def record(name):
        def hook(module, inputs, output):
            first[name] = output.shape[-1]

        return hook

    lowres.layer1.register_forward_hook(record("lowres"))
    stock.layer1.register_forward_hook(record("stock"))
    assert lowres.forward_features(x).shape == (2, 512, 6, 6) and stock.forward_features(x).shape[-1] == 2
    assert first == {"lowres": 48, "stock": 12}
    assert [len(getattr(lowres, f"layer{i}")) for i in range(1, 5)] == blocks
    n = sum(p.numel() for p in lowres.parameters())
    assert n == pytest.approx(sum(p.numel() for p in stock.parameters()), rel=0.01)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        timm.create_model(lowres_name, pretrained=True)


def test_fer_vgg_w_is_fer_vgg_at_twice_the_width_and_keeps_its_stages():
    """Four times fer_vgg's parameters (each convolution twice as wide in and out), the same four stages as
    timm layer groups, and a 48-px face pooled to 1,024 features."""
    import timm

    from fertrain.student.freezing import layer_groups

    wide, base = timm.create_model("fer_vgg_w", num_classes=0), timm.create_model("fer_vgg", num_classes=0)
    ratio = sum(p.numel() for p in wide.parameters()) / sum(p.numel() for p in base.parameters())
    assert 3.99 < ratio < 4.0  # the BatchNorm scales grow with the width, not its square
    assert len(layer_groups(wide)) == len(layer_groups(base)) == 4
    assert [m.out_channels for m in wide.modules() if isinstance(m, torch.nn.Conv2d)] == [
        2 * m.out_channels for m in base.modules() if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    with torch.no_grad():
        assert wide.eval()(torch.rand(2, 3, 48, 48)).shape == (2, 1024)


def test_fer_vgg_s_is_a_quarter_of_fer_vgg_and_trains_as_a_student(lowres_manifest, tmp_path, capsys):
    """The student net: a quarter of fer_vgg's parameters, one timm layer group per stage in depth
    order (what progressive unfreezing needs), and `fertrain student --backbone fer_vgg_s` trains."""
    import timm

    from fertrain.student.freezing import layer_groups

    from .clitools import run_cli

    small, big = timm.create_model("fer_vgg_s", num_classes=0), timm.create_model("fer_vgg", num_classes=0)
    ratio = sum(p.numel() for p in small.parameters()) / sum(p.numel() for p in big.parameters())
    assert 0.24 < ratio < 0.251  # 1.18 M of 4.69 M: the BatchNorm scales do not shrink with the square
    groups = layer_groups(small)
    assert len(groups) == 4
    assert [sorted({int(n.split(".")[1]) // 7 for n in g.params}) for g in groups] == [[0], [1], [2], [3]]
    out = tmp_path / "s"
    code, text = run_cli(["student", "-m", lowres_manifest, "--loss", "ce", "--backbone", "fer_vgg_s",
                          "--img-size", "48", "--epochs", "1", "-b", "32", "-j", "0", "--device", "cpu",
                          "--strategy", "two-phase", "--epochs-s1", "1", "--output-dir", out, "--skip-onnx", "-q"],
                         capsys)  # fmt: skip
    assert code == 0, text
    assert len(json.loads((out / "history.json").read_text())) == 1
