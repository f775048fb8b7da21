"""Accuracy-recipe ingredients: mixup/cutmix with timm's semantics, random rotation, multi-crop
test-time augmentation, SGD with step/multistep/plateau schedules, and `--aug` overrides."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import timm
import torch
import torchvision.transforms.functional as TF
from timm.data.mixup import mixup_target

from fertrain.cli.options import TTA_CHOICES
from fertrain.data import augment
from fertrain.data.augment import (
    P_MAG,
    P_OP,
    AugmentConfig,
    _resample,
    augment_batch,
    augment_config,
    augment_params,
    step_generator,
)
from fertrain.data.mixup import MixDraw, MixupConfig, draw_mix, mix_images, mix_targets, mix_vector
from fertrain.data.trivial_augment import MAX_SHEAR, OP_INDEX, OPS, apply_photometric
from fertrain.engine.evaluate import TTA_MODES, tta_logits
from fertrain.engine.schedules import build_lr_scheduler, plateau_reductions, set_lr_for_step
from fertrain.errors import ConfigError
from fertrain.models.factory import create_backbone
from fertrain.student.config import resolve_student_config
from fertrain.teacher import resolve_teacher_config, train_teacher
from fertrain.teacher.losses import target_distribution, teacher_loss

from .clitools import run_cli
from .conftest import fer2013_train_faces
from .test_engine import tiny_teacher

SHIPPED = Path(__file__).resolve().parents[1] / "fertrain" / "configs"

# --- mixup / cutmix ---------------------------------------------------------------------------------------


def vec(draw: MixDraw) -> torch.Tensor:
    return torch.tensor(mix_vector(draw))


def test_mixup_targets_sum_to_one_and_equal_timms_mixup_target_with_smoothing_inside():
    labels = torch.tensor([0, 3, 6, 2, 2, 5, 1, 4])
    for step in range(20):
        draw = draw_mix(MixupConfig(mixup=0.4, cutmix=1.0), 48, seed=7, step=step)
        for smoothing in (0.0, 0.1):
            ours = mix_targets(target_distribution(labels, None, 7, smoothing), vec(draw))
            theirs = mixup_target(labels, 7, lam=draw.lam, smoothing=smoothing)  # timm: mirror pairing too
            assert torch.allclose(ours, theirs, atol=1e-6), (step, smoothing)
            assert torch.allclose(ours.sum(1), torch.ones(len(labels)))


def test_mixup_and_cutmix_mix_images_like_timm_and_cutmix_lambda_is_the_pasted_area():
    x = torch.randn(6, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    mixed = mix_images(x, vec(MixDraw(0.3)))
    assert torch.allclose(mixed, 0.3 * x + 0.7 * x.flip(0))  # timm: x * lam + x.flip(0) * (1 - lam)
    draws = [draw_mix(MixupConfig(cutmix=1.0), 40, seed=1, step=s) for s in range(50)]
    boxes = [d for d in draws if d.box is not None]
    assert len(boxes) == 50 and len({d.lam for d in boxes}) > 40  # every batch cut, lambda varies
    for d in boxes:
        y0, y1, x0, x1 = d.box
        assert d.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 1600)
        out = mix_images(x, vec(d))
        pasted = torch.zeros(40, 40, dtype=torch.bool)
        pasted[y0:y1, x0:x1] = True
        assert torch.equal(out[:, :, pasted], x.flip(0)[:, :, pasted])
        assert torch.equal(out[:, :, ~pasted], x[:, :, ~pasted])
        assert float((out != x).float().mean()) == pytest.approx(1 - d.lam, abs=1e-6)  # randn: all pixels differ


def test_no_mix_leaves_the_batch_and_targets_unchanged_bit_for_bit():
    """An identity draw still runs the mixing arithmetic (no host branch in a captured step): it
    must give back the very same values."""
    x = torch.randn(6, 3, 20, 20, generator=torch.Generator().manual_seed(3))
    t = torch.rand(6, 7, generator=torch.Generator().manual_seed(4)).softmax(1)
    assert torch.equal(mix_images(x, vec(MixDraw(1.0))), x) and torch.equal(mix_targets(t, vec(MixDraw(1.0))), t)


def test_mixup_draws_are_deterministic_per_seed_and_step_and_honour_prob_and_switch():
    cfg = MixupConfig(mixup=0.2, cutmix=1.0, prob=0.5, switch_prob=0.5)
    assert draw_mix(cfg, 48, 3, 11) == draw_mix(cfg, 48, 3, 11)
    draws = [draw_mix(cfg, 48, 3, s) for s in range(400)]
    mixed = [d for d in draws if not d.identity]
    cut = [d for d in mixed if d.box is not None]
    assert 0.4 < len(mixed) / 400 < 0.6 and 0.35 < len(cut) / len(mixed) < 0.65
    assert all(draw_mix(MixupConfig(mixup=0.2, prob=0.0), 48, 3, s).identity for s in range(20))
    assert all(draw_mix(MixupConfig(), 48, 3, s).identity for s in range(20))  # off by default


def test_mixed_class_weights_and_loss_follow_the_mixed_targets():
    logits = torch.randn(4, 7, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([1, 2, 3, 4])
    w = torch.arange(1.0, 8.0)
    mix = vec(MixDraw(0.25))
    t = 0.25 * torch.eye(7)[labels] + 0.75 * torch.eye(7)[labels.flip(0)]
    sw = 0.25 * w[labels] + 0.75 * w[labels.flip(0)]
    per = -(t * torch.log_softmax(logits, 1)).sum(1)
    expected = float((per * sw).sum() / sw.sum())
    assert float(teacher_loss(logits, labels, None, weights=w, mix=mix)) == pytest.approx(expected)


# --- rotation ---------------------------------------------------------------------------------------------


def _faces(n=4, size=36):
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8), torch.full((n, 2), size)


def test_rotation_is_deterministic_per_seed_and_step_and_identity_at_zero_strength():
    x, sizes = _faces()
    rotating = AugmentConfig(rotate=15.0)
    a = augment_batch(x, sizes, 36, rotating, (0.5,) * 3, (0.5,) * 3, step_generator(1, 9, torch.device("cpu")))
    b = augment_batch(x, sizes, 36, rotating, (0.5,) * 3, (0.5,) * 3, step_generator(1, 9, torch.device("cpu")))
    c = augment_batch(x, sizes, 36, rotating, (0.5,) * 3, (0.5,) * 3, step_generator(1, 10, torch.device("cpu")))
    assert torch.equal(a, b) and not torch.equal(a, c)
    still = augment_batch(x, sizes, 36, AugmentConfig(rotate=0.0), (0.5,) * 3, (0.5,) * 3,
                          step_generator(1, 9, torch.device("cpu")))  # fmt: skip
    assert not torch.allclose(a, still, atol=1e-3)  # the rotation does something
    # zero strength everywhere: the plain evaluation resize
    none = augment_config({"scale": [1, 1], "ratio": [1, 1], "hflip": 0, "brightness": 0, "contrast": 0,
                           "saturation": 0, "erasing": 0, "rotate": 0})  # fmt: skip
    plain = augment_batch(x, sizes, 36, none, (0.5,) * 3, (0.5,) * 3, step_generator(1, 9, torch.device("cpu")))
    assert torch.allclose(plain, (x.float() / 255 - 0.5) / 0.5, atol=1e-5)


def test_drawn_params_shared_by_views_of_two_sizes_give_each_the_draw_of_its_own_generator():
    """A student and its online teacher see one augmentation draw at their own sizes: the shared
    parameters must reproduce what each view's own generator of the step seed would draw."""
    x, sizes = _faces()
    cfg, cpu = AugmentConfig(rotate=10.0, erasing=0.5), torch.device("cpu")
    params = augment_params(4, cfg, step_generator(1, 9, cpu), cpu)
    for out in (24, 48):
        own = augment_batch(x, sizes, out, cfg, (0.5,) * 3, (0.5,) * 3, step_generator(1, 9, cpu))
        shared = augment_batch(x, sizes, out, cfg, (0.5,) * 3, (0.5,) * 3, params=params)
        assert torch.equal(own, shared)
    with pytest.raises(ValueError, match="generator `g` or drawn `params`"):
        augment_batch(x, sizes, 24, cfg, (0.5,) * 3, (0.5,) * 3)


def test_translate_shifts_the_crop_within_its_range_and_leaves_the_other_draws_as_they_were():
    cpu = torch.device("cpu")
    base = augment_config({"rotate": 10, "erasing": 0.5})
    moved = augment_config({"rotate": 10, "erasing": 0.5, "translate": 0.1})
    p0 = augment_params(256, base, step_generator(3, 5, cpu), cpu)
    p1 = augment_params(256, moved, step_generator(3, 5, cpu), cpu)
    again = augment_params(256, moved, step_generator(3, 5, cpu), cpu)
    assert torch.equal(p1, again)  # deterministic per (seed, step)
    centre = [2, 3]  # the crop centre columns (face coordinates, [-1, 1] across the face)
    others = [c for c in range(p0.shape[1]) if c not in centre]
    assert torch.equal(p0[:, others], p1[:, others])  # every other draw as without translate
    shift = p1[:, centre] - p0[:, centre]
    assert shift.abs().max() <= 0.2 + 1e-6 and shift.abs().max() > 0.15  # +-10 % of the face = +-0.2
    # a pure shift: a bright square moves by the drawn fraction of the face, edges padded from the border
    x = torch.zeros(1, 3, 40, 40, dtype=torch.uint8)
    x[:, :, 15:25, 15:25] = 255
    only = augment_config({"scale": [1, 1], "ratio": [1, 1], "hflip": 0, "brightness": 0, "contrast": 0,
                           "saturation": 0, "erasing": 0, "translate": 0.2})  # fmt: skip
    params = augment_params(1, only, step_generator(0, 1, cpu), cpu)
    out = augment_batch(x, torch.tensor([[40, 40]]), 40, only, (0.0,) * 3, (1.0,) * 3, params=params)
    ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
    dx, dy = params[0, 2].item() * 20, params[0, 3].item() * 20  # crop centre moved right -> content moves left
    assert xs.float().mean().item() == pytest.approx(19.5 - dx, abs=0.6)
    assert ys.float().mean().item() == pytest.approx(19.5 - dy, abs=0.6)


def test_a_scale_above_one_zooms_out():
    x = torch.zeros(1, 3, 40, 40, dtype=torch.uint8)
    x[:, :, 10:30, 10:30] = 255  # a 20-px square: a quarter of the face's area
    cpu = torch.device("cpu")
    out_cfg = augment_config({"scale": [2.25, 2.25], "ratio": [1, 1], "hflip": 0, "brightness": 0, "contrast": 0,
                              "saturation": 0, "erasing": 0})  # fmt: skip
    out = augment_batch(x, torch.tensor([[40, 40]]), 40, out_cfg, (0.0,) * 3, (1.0,) * 3, step_generator(0, 1, cpu))
    bright = (out[0, 0] > 0.5).float().sum().item()
    assert bright == pytest.approx(400 / 2.25, rel=0.15)  # the window is 1.5x the face on each side


def test_a_quarter_turn_of_the_resample_is_torch_rot90():
    x, sizes = _faces(2, 32)
    one, zero = torch.ones(2), torch.zeros(2)
    turned = _resample(x, sizes, 32, one, one, zero, zero, one, cos=zero, sin=one)
    assert torch.allclose(turned, torch.rot90(x.float(), k=1, dims=(2, 3)), atol=1e-3)


def test_rotate_is_checked_in_degrees():
    assert augment_config({"rotate": 15}).rotate == 15.0
    with pytest.raises(ConfigError, match=r"augment.rotate: expected a number from 0 to 180"):
        augment_config({"rotate": 200})


# --- TrivialAugment-style ops ------------------------------------------------------------------------------


def _ops_batch(op: str, mags: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real FER2013 training faces (48 px grey, as the RGB planes the augmentation sees), one per
    magnitude, the second squeezed to grey levels 60-180 (most FER2013 faces already span 0-255, where
    autocontrast changes nothing), the last one made flat (one grey value: the edge case of
    autocontrast and equalize)."""
    faces = torch.from_numpy(fer2013_train_faces(len(mags))[0]).unsqueeze(1).expand(-1, 3, -1, -1).clone()
    faces[1] = (60 + faces[1].float() * 120 / 255).round().to(torch.uint8)  # a dim, low-contrast face
    faces[-1] = 97
    x = faces.float() / 255
    return x, torch.full((len(mags),), float(OP_INDEX[op])), torch.tensor(mags)


def torchvision_op(op: str, face: torch.Tensor, mag: float) -> torch.Tensor:
    """torchvision's function for `op` at magnitude `mag` on one float face on the 8-bit grid."""
    face_u8 = (face * 255).round().to(torch.uint8)
    if op == "autocontrast":
        return TF.autocontrast(face)
    if op == "equalize":
        return TF.equalize(face_u8).float() / 255
    if op == "gamma":
        return TF.adjust_gamma(face, 2.0**mag)
    if op == "sharpness":
        return TF.adjust_sharpness(face, 1 + 0.9 * mag)
    if op == "posterize":
        return TF.posterize(face_u8, 8 - min(int(abs(mag) * 5), 4)).float() / 255
    return TF.solarize(face, 1 - abs(mag))


@pytest.mark.parametrize("op", ["autocontrast", "equalize", "gamma", "sharpness", "posterize", "solarize"])
def test_trivial_photometric_ops_match_torchvisions_function_on_each_image(op):
    mags = [-1.0, -0.55, -0.1, 0.3, 0.8, 0.999, 0.6]
    x, ops, m = _ops_batch(op, mags)
    out = apply_photometric(x, ops, m)
    for i, mag in enumerate(mags):
        assert torch.allclose(out[i], torchvision_op(op, x[i], mag), atol=1e-5), (op, mag)
    assert not torch.allclose(out[:-1], x[:-1], atol=1e-3)  # the op does something to real faces
    assert torch.equal(apply_photometric(x, torch.zeros(len(mags)), m), x)  # identity


def test_trivial_draws_one_op_per_image_uniformly_with_prob_and_leave_the_other_draws_as_they_were():
    cpu = torch.device("cpu")
    base = augment_config({"rotate": 10, "erasing": 0.5, "translate": 0.1})
    p0 = augment_params(4096, base, step_generator(3, 5, cpu), cpu)
    p1 = augment_params(4096, augment_config({**base.to_dict(), "trivial": 1}), step_generator(3, 5, cpu), cpu)
    again = augment_params(4096, augment_config({**base.to_dict(), "trivial": 1}), step_generator(3, 5, cpu), cpu)
    half = augment_params(4096, augment_config({**base.to_dict(), "trivial": 0.5}), step_generator(3, 5, cpu), cpu)
    assert p0.shape[1] == 17 and p1.shape[1] == 19 and torch.equal(p1, again)
    assert torch.equal(p0, p1[:, :17])  # every other draw as without trivial
    counts = torch.bincount(p1[:, P_OP].long(), minlength=len(OPS))
    assert len(counts) == len(OPS) and counts.min() > 4096 / len(OPS) * 0.8  # all ops, about equally often
    assert -1 <= p1[:, P_MAG].min() < -0.99 and 0.99 < p1[:, P_MAG].max() <= 1
    assert 0.5 + 0.5 / len(OPS) == pytest.approx((half[:, P_OP] == 0).float().mean().item(), abs=0.03)


def test_trivial_with_every_image_on_identity_is_the_augmentation_without_it_bit_for_bit():
    x, sizes = _faces()
    cfg = AugmentConfig(rotate=15.0, translate=0.1, erasing=0.5, trivial=1.0)
    params = augment_params(4, cfg, step_generator(1, 9, torch.device("cpu")), torch.device("cpu"))
    plain = augment_batch(x, sizes, 36, cfg, (0.5,) * 3, (0.5,) * 3, params=params[:, :17])
    params[:, P_OP] = 0
    assert torch.equal(augment_batch(x, sizes, 36, cfg, (0.5,) * 3, (0.5,) * 3, params=params), plain)
    params[:, P_OP] = OP_INDEX["equalize"]
    assert not torch.allclose(augment_batch(x, sizes, 36, cfg, (0.5,) * 3, (0.5,) * 3, params=params), plain)


def test_the_compiled_augmentation_asks_for_inductors_deterministic_mode_and_equals_the_eager_one(monkeypatch):
    """The GPU path compiles the augmentation; without Inductor's deterministic mode its reductions' block sizes
    are picked by timing in each process (docs/engine.md, "Repeatable runs"). The compile must ask for the mode,
    this torch must have it, and the compiled augmentation must be the eager one."""
    asked = []
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: asked.append(kwargs) or compile_(fn, **kwargs))
    monkeypatch.setattr(augment, "_compiled_apply", None)  # compile here, whatever compiled before
    x, sizes = _faces()
    cfg = AugmentConfig(rotate=15.0, translate=0.1, erasing=0.5, trivial=1.0)
    params = augment_params(4, cfg, step_generator(1, 9, torch.device("cpu")), torch.device("cpu"))
    params[:, P_OP] = torch.arange(4) + OP_INDEX["equalize"] - 1  # ops with per-face sums among them
    eager = augment_batch(x, sizes, 36, cfg, (0.5,) * 3, (0.5,) * 3, params=params)
    fused = augment_batch(x, sizes, 36, cfg, (0.5,) * 3, (0.5,) * 3, params=params, fused=True)
    torch.testing.assert_close(fused, eager, atol=1e-4, rtol=1e-4)
    assert [kwargs.get("options") for kwargs in asked] == [{"deterministic": True}]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_trivial_shear_x_slants_a_vertical_bar_by_the_drawn_shear(sign):
    x = torch.zeros(1, 3, 40, 40, dtype=torch.uint8)
    x[:, :, :, 18:22] = 255  # a vertical bar through the middle
    cfg = augment_config({"scale": [1, 1], "ratio": [1, 1], "hflip": 0, "brightness": 0, "contrast": 0,
                          "saturation": 0, "erasing": 0, "trivial": 1})  # fmt: skip
    params = augment_params(1, cfg, step_generator(0, 1, torch.device("cpu")), torch.device("cpu"))
    params[0, P_OP], params[0, P_MAG] = OP_INDEX["shear_x"], sign * 0.5
    out = augment_batch(x, torch.tensor([[40, 40]]), 40, cfg, (0.0,) * 3, (1.0,) * 3, params=params)[0, 0]
    cols = torch.arange(40, dtype=torch.float32)
    top = float((out[2] * cols).sum() / out[2].sum())
    bottom = float((out[37] * cols).sum() / out[37].sum())
    # output (u, v) samples (u + shx v, v): the bar sits at u = -shx v, v from -1 (top) to 1 (bottom)
    assert top - bottom == pytest.approx(sign * 0.5 * MAX_SHEAR * 35, abs=1.0)
    params[0, P_OP] = OP_INDEX["shear_y"]  # a vertical bar is unchanged by a vertical shear
    still = augment_batch(x, torch.tensor([[40, 40]]), 40, cfg, (0.0,) * 3, (1.0,) * 3, params=params)[0, 0]
    assert torch.allclose(still[5:35], x[0, 0, 5:35].float() / 255, atol=1e-4)


# --- multi-crop test-time augmentation --------------------------------------------------------------------


class Linear48(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 48 * 48, 7)
        torch.nn.init.normal_(self.fc.weight, std=0.05, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("mode", ["five", "ten"])
def test_multi_crop_tta_is_the_mean_probability_of_torchvisions_crops(mode):
    model, x = Linear48(), torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    crops = (TF.five_crop if mode == "five" else TF.ten_crop)(x, [42, 42])  # 0.875 of 48
    probs = torch.stack([torch.softmax(model(TF.resize(c, [48, 48], antialias=False)), 1) for c in crops]).mean(0)
    with torch.no_grad():
        got = torch.softmax(tta_logits(model, x, mode), 1)
    assert torch.allclose(got, probs.detach(), atol=1e-5)
    assert tuple(TTA_CHOICES) == TTA_MODES  # the CLI offers exactly the engine's modes


def test_evaluate_records_tta_and_refuses_an_unknown_mode(demo_pipeline, capsys, tmp_path):
    run = next((demo_pipeline / "teachers").glob("*stageA*"))
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    code, text = run_cli(["evaluate", run, "-m", manifest, "--split", "val", "--tta", "ten", "-j", "0"], capsys)
    assert code == 0, text
    report = json.loads((run / "evaluation_demo_val_tta-ten.json").read_text())  # beside, not over, the plain one
    assert report["tta"] == "ten" and report["n"] > 0
    code, text = run_cli(["evaluate", run, "-m", manifest, "--tta", "twelve"], capsys)
    assert code == 2 and "--tta" in text and "none, flip, five, ten" in text


# --- optimizers and schedules -----------------------------------------------------------------------------


def _opt(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9, nesterov=True)


def test_step_and_multistep_schedules_decay_at_the_asked_epochs_after_the_warmup():
    step = build_lr_scheduler(_opt(), total_steps=1000, warmup_steps=10, min_lr=0.0, sched="step",
                              steps_per_epoch=10, decay_epochs=30, decay_rate=0.1)  # fmt: skip
    assert set_lr_for_step(step, 9) == pytest.approx(0.1)  # warmup done
    assert set_lr_for_step(step, 10 + 299) == pytest.approx(0.1)
    assert set_lr_for_step(step, 10 + 300) == pytest.approx(0.01)  # epoch 30 after the warmup
    assert set_lr_for_step(step, 10 + 600) == pytest.approx(0.001)
    multi = build_lr_scheduler(_opt(), total_steps=1000, warmup_steps=0, min_lr=0.0, sched="multistep",
                               steps_per_epoch=10, decay_milestones=[20, 50], decay_rate=0.5)  # fmt: skip
    lrs = [set_lr_for_step(multi, s) for s in (0, 198, 200, 498, 500, 999)]
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_plateau_reductions_count_evaluations_without_gain_like_reduce_lr_on_plateau():
    metrics = [0.1, 0.2, 0.3, 0.3, 0.29, 0.3, 0.31, 0.2, 0.2, 0.2, 0.2]
    opt = _opt(1.0)
    torch_plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=2,
                                                               threshold=1e-4)  # fmt: skip
    for i, value in enumerate(metrics):
        torch_plateau.step(value)
        assert 0.5 ** plateau_reductions(metrics[: i + 1], patience=2) == pytest.approx(opt.param_groups[0]["lr"])


def test_sgd_step_schedule_mixup_dropout_drop_path_zoom_and_sam_train_end_to_end_and_are_recorded(
        lowres_manifest, tmp_path, capsys):
    out = tmp_path / "sgd"
    code, text = run_cli(["teacher", "-m", lowres_manifest, "--backbone", "resnet10t", "--head", "linear",
                          "--img-size", "32", "--epochs", "3", "-b", "32", "-j", "0", "--device", "cpu",
                          "--opt", "sgd", "--lr", "0.05", "--weight-decay", "5e-4", "--warmup-epochs", "0",
                          "--sched", "step", "--decay-epochs", "2", "--decay-rate", "0.1", "--mixup", "0.2",
                          "--cutmix", "1.0", "--smoothing", "0.1", "--aug", "rotate=10", "--aug", "erasing=0",
                          "--aug", "scale=[0.64,1.44]", "--aug", "translate=0.1", "--aug", "trivial=1",
                          "--drop", "0.3", "--drop-path", "0.1", "--sam", "0.05", "--skip-onnx", "--output-dir", out,
                          "-q"],
                         capsys)  # fmt: skip
    assert code == 0, text
    hist = json.loads((out / "history.json").read_text())
    assert [r["lr"] for r in hist] == pytest.approx([0.05, 0.05, 0.005])  # the last step of each epoch
    assert all(math.isfinite(r["train_loss"]) for r in hist)
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((out / "config.yaml").read_text())))
    assert cfg["opt"] == "sgd" and cfg["sched"] == "step" and cfg["mixup"] == 0.2
    assert cfg["augment"] == {"rotate": 10, "erasing": 0, "scale": [0.64, 1.44], "translate": 0.1, "trivial": 1}
    assert cfg["drop"] == 0.3 and cfg["drop_path"] == 0.1 and cfg["sam"] == 0.05 and cfg["sam_adaptive"] is False
    ckpt = torch.load(out / "checkpoint_last.pt", weights_only=True, map_location="cpu")
    assert ckpt["optimizer"]["param_groups"][0]["nesterov"] is True  # timm's sgd is Nesterov momentum


def test_plateau_run_reduces_from_its_history_and_a_resume_continues_it(lowres_manifest, tmp_path):
    out = tmp_path / "plateau"
    base = tiny_teacher(lowres_manifest, out, epochs=4, sched="plateau", patience_epochs=0, decay_rate=0.5,
                        lr_warmup_epochs=0)  # fmt: skip
    train_teacher(resolve_teacher_config(base), show_progress=False, until_epoch=2)
    result = train_teacher(resolve_teacher_config(base), show_progress=False)
    hist = json.loads((out / "history.json").read_text())
    values = [r["val_macro_f1"] for r in hist]
    for i, rec in enumerate(hist):  # the LR of epoch i follows the evaluations before it
        assert rec["lr"] == pytest.approx(2e-3 * 0.5 ** plateau_reductions(values[:i], patience=0))
    assert result.complete


def test_schedule_and_mixup_options_are_checked():
    with pytest.raises(ConfigError, match="--sched multistep needs --decay-milestones"):
        resolve_teacher_config({"img_size": 48, "sched": "multistep"})
    with pytest.raises(ConfigError, match="--sched 'linear'; expected one of cosine, step, multistep, plateau"):
        resolve_teacher_config({"img_size": 48, "sched": "linear"})
    with pytest.raises(ConfigError, match="--mixup-prob must be"):
        resolve_teacher_config({"img_size": 48, "mixup_prob": 1.5})
    with pytest.raises(ConfigError, match="--decay-milestones: expected a list of numbers"):
        resolve_teacher_config({"img_size": 48, "sched": "multistep", "decay_milestones": "sixty"})
    assert resolve_teacher_config({"img_size": 48, "decay_milestones": "60,120"}).decay_milestones == [60.0, 120.0]


@pytest.mark.parametrize("backbone", ["fer_vgg_s", "resnet10t"])
def test_drop_is_dropout_on_the_pooled_features_in_training_only(backbone):
    from fertrain.models.factory import build_model

    torch.manual_seed(0)
    x = torch.randn(4, 3, 48, 48)
    plain, dropped = build_model(backbone), build_model(backbone, drop_rate=0.5)
    dropped.load_state_dict(plain.state_dict())
    assert torch.equal(plain.eval()(x), dropped.eval()(x))  # evaluation: the same net
    feats = dropped.train().backbone(x)
    zeroed = (feats == 0).float().mean().item()
    assert 0.3 < zeroed < 0.7  # about half the pooled features dropped (ReLU alone zeroes almost none here)
    plain.train()
    assert torch.equal(plain.backbone(x), plain.backbone(x))  # no randomness without --drop
    with pytest.raises(ConfigError, match="drop"):
        resolve_teacher_config({"img_size": 48, "drop": 1.0})
    assert resolve_teacher_config({"img_size": 48, "drop": 0.3}).drop == 0.3


def test_drop_path_skips_whole_residual_branches_per_face_in_training_only():
    """--drop-path is timm's stochastic depth: each block's residual branch is dropped for some faces
    of a batch (the block then passes its shortcut on), at rates rising linearly to the flag's value
    in the last block; evaluation and the weights are those of the plain net."""
    from fertrain.models.factory import build_model

    torch.manual_seed(0)
    plain, dropped = build_model("fer_resnet18"), build_model("fer_resnet18", drop_path_rate=0.5)
    dropped.load_state_dict(plain.state_dict())  # no weights of its own
    x = torch.randn(8, 3, 48, 48)
    assert torch.equal(plain.eval()(x), dropped.eval()(x))
    blocks = [b for stage in (1, 2, 3, 4) for b in getattr(dropped.backbone, f"layer{stage}")]
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in blocks]
    assert rates == pytest.approx([0.5 * i / (len(blocks) - 1) for i in range(len(blocks))])
    last = blocks[-1].train()  # identity shortcut: a dropped branch leaves relu(z) = z
    torch.nn.init.ones_(last.bn2.weight)  # timm starts each branch's last BatchNorm at zero, the branch silent
    z = torch.relu(torch.randn(64, 512, 6, 6))
    kept_shortcut = [torch.equal(face, face_in) for face, face_in in zip(last(z), z, strict=True)]
    assert 10 < sum(kept_shortcut) < 54  # about half the faces, each whole or not at all
    for plain_net in ("fer_vgg", "densenet121"):  # ours and a timm model without it: named, not a TypeError
        with pytest.raises(ConfigError, match=rf"--drop-path 0.1: --backbone '{plain_net}' has no stochastic depth"):
            build_model(plain_net, drop_path_rate=0.1)
    with pytest.raises(ConfigError, match="--drop-path"):
        resolve_teacher_config({"img_size": 48, "drop_path": 1.0})


def test_fer_vgg_fc_keeps_the_face_layout_and_drops_before_each_linear_layer():
    """fer_vgg_fc: the last 3x3 map is flattened (moving a feature to another cell changes the
    output, where global pooling would not), and `--drop` acts in training only."""
    import timm

    from fertrain.models.factory import build_model

    torch.manual_seed(0)
    net = timm.create_model("fer_vgg_fc", num_classes=0).eval()
    grid = torch.randn(2, 512, 3, 3)
    swapped = grid.clone()
    swapped[..., 0, 0], swapped[..., 2, 2] = grid[..., 2, 2], grid[..., 0, 0]
    head = torch.nn.Sequential(net.pool, net.hidden)
    assert head(grid).shape == (2, 1024) and not torch.allclose(head(grid), head(swapped))
    assert net.pool(torch.randn(2, 512, 4, 4)).shape == (2, 512 * 9)  # 64-px faces too
    assert timm.create_model("fer_vgg_fc", num_classes=7)(torch.randn(2, 3, 48, 48)).shape == (2, 7)  # timm's own head
    plain, dropped = build_model("fer_vgg_fc"), build_model("fer_vgg_fc", drop_rate=0.5)
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 48, 48)
    assert torch.equal(plain.eval()(x), dropped.eval()(x))
    dropped.train()
    assert not torch.equal(dropped(x), dropped(x))  # a fresh dropout mask per pass
    assert sum(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in dropped.modules()) == 3


def test_aug_flags_change_single_keys_of_the_yaml_augment(tmp_path):
    from fertrain.engine.config import parse_key_values

    yaml_path = tmp_path / "t.yaml"
    yaml_path.write_text("img_size: 48\naugment: {scale: [0.85, 1.0], erasing: 0.0}\n")
    flags = parse_key_values(["rotate=10", "erasing=0.25"], "--aug", "rotate=10")
    cfg = resolve_teacher_config({"augment": flags}, yaml_path)
    assert cfg.augment == {"scale": [0.85, 1.0], "erasing": 0.25, "rotate": 10}
    with pytest.raises(ConfigError, match=r"--aug: unknown key\(s\) twist"):
        resolve_teacher_config({"augment": {"twist": 1}}, yaml_path)


def test_calibrate_with_ten_crop_fits_its_temperature_on_the_ten_crop_logits(demo_pipeline, tmp_path, capsys):
    from fertrain.ensemble import load_teacher, write_ensemble
    from fertrain.posthoc import calibrate_teacher

    runs = sorted((demo_pipeline / "teachers").glob("*stage*"))
    manifest = demo_pipeline / "manifests" / "demo.parquet"
    plain, ten = tmp_path / "plain.json", tmp_path / "ten.json"
    for path in (plain, ten):
        write_ensemble(path, runs, [0.5, 0.5])
    a = calibrate_teacher(plain, manifest, "val", workers=0)
    b = calibrate_teacher(ten, manifest, "val", workers=0, tta="ten")
    assert a["tta"] == "none" and b["tta"] == "ten" and a["n"] == b["n"] > 0
    assert b["temperature"] != pytest.approx(a["temperature"], abs=1e-4)  # fitted on other logits
    assert json.loads(ten.read_text())["temperature"] == b["temperature"]
    # evaluate records which logits the temperature was fitted on, and says so when they are not these
    uncalibrated = tmp_path / "raw.json"
    write_ensemble(uncalibrated, runs, [0.5, 0.5])
    assert load_teacher(uncalibrated).temperature_tta is None and load_teacher(plain).temperature_tta == "none"
    assert load_teacher(runs[0]).temperature_tta == "none"  # the demo calibrated it on single views
    for target, tta, warned in ((ten, "none", True), (ten, "ten", False), (plain, "none", False),
                                (uncalibrated, "ten", False)):
        code, text = run_cli(["evaluate", target, "-m", manifest, "--split", "test", "--tta", tta, "--device", "cpu",
                              "-j", "0"], capsys)  # fmt: skip
        assert code == 0, text
        assert ("temperature was fitted on --tta ten logits, these are --tta none" in text) == warned, text
        assert ("fitted on" in text) == warned
    stem = "evaluation_demo_test"
    assert json.loads((tmp_path / f"ten.{stem}.json").read_text())["temperature_tta"] == "ten"
    assert json.loads((tmp_path / f"raw.{stem}_tta-ten.json").read_text())["temperature_tta"] is None
    # calibrated for single views too, the ensemble keeps both and serves each --tta with its own
    c = calibrate_teacher(ten, manifest, "val", workers=0)
    assert c["temperature"] == pytest.approx(a["temperature"], abs=1e-6)  # the same fit as `plain`'s
    assert json.loads(ten.read_text())["temperatures"] == c["temperatures"] == {"ten": b["temperature"],
                                                                               "none": c["temperature"]}
    for tta, expected in (("ten", b), ("none", c), ("five", c)):  # five: none fitted, the latest (none's)
        teacher = load_teacher(ten, tta)
        assert teacher.temperature == expected["temperature"]
        assert teacher.temperature_tta == (tta if tta != "five" else "none")
    code, text = run_cli(["evaluate", ten, "-m", manifest, "--split", "test", "--tta", "ten", "--device", "cpu",
                          "-j", "0"], capsys)  # fmt: skip
    assert code == 0 and "fitted on" not in text, text
    report = json.loads((tmp_path / f"ten.{stem}_tta-ten.json").read_text())
    assert report["temperature_tta"] == "ten"
    assert report["calibration"]["scaled"]["temperature"] == pytest.approx(b["temperature"])


@pytest.mark.parametrize("name", ["fer2013_resnet18", "fer2013_vgg", "fer2013_student", "fer2013_student_vgg",
                                  "fer2013_student_vgg_ensemble"])
def test_shipped_fer2013_configs_resolve_to_what_docs_measured(name):
    """The configs docs/accuracy.md quotes load through the CLI's own resolvers, on backbones timm builds."""
    path = Path(__file__).resolve().parents[1] / "fertrain" / "configs" / f"{name}.yaml"

    def resolve(**flags):
        if "student" in name:
            return resolve_student_config({"manifest": "m.parquet", "teacher": "ens.json", **flags}, path)
        return resolve_teacher_config({"manifest": "m.parquet", **flags}, path)

    cfg = resolve()
    if "student" in name:
        assert cfg.loss["name"] in ("kd", "dkd") and cfg.strategy == "none"
    else:
        recipe = (cfg.opt, cfg.lr, cfg.head, cfg.mixup, cfg.smoothing, cfg.model_ema)
        assert recipe == ("sgd", 0.1, "linear", 0.2, 0.1, True)
    zoom = {"scale": [0.64, 1.44], "translate": 0.1} if name.endswith("_ensemble") else {}
    ops = {"trivial": 1} if name in ("fer2013_vgg", "fer2013_student_vgg_ensemble") else {}
    assert cfg.augment == {"rotate": 10, **zoom, **ops} and cfg.amp and cfg.batch_size == 256
    # `--aug trivial=0` gives back the augmentation docs/accuracy.md measured before the op shipped
    assert augment_config(resolve(augment={"trivial": 0}).augment) == augment_config({"rotate": 10, **zoom})
    assert timm.is_model(cfg.backbone)
    assert create_backbone(cfg.backbone)(torch.zeros(1, 3, cfg.img_size, cfg.img_size)).shape[0] == 1


@pytest.mark.parametrize("backbone", ["fer_resnet18", "fer_resnet34"])
def test_the_out_of_fold_fer_resnet_configs_are_the_runs_docs_measured(backbone):
    """fer2013_student_{backbone}_oof.yaml resolves to exactly what docs/accuracy.md measured with flags on
    the quarter-size student's config (`--backbone BACKBONE --model-ema --model-ema-decay 0.9995 -T 2
    --softlabels OOF --compile --deterministic`), and trains a network timm builds at 48 px."""
    name = f"fer2013_student_{backbone}_oof"
    given = {"manifest": "m.parquet", "softlabels": "oof.parquet"}
    shipped = resolve_student_config(given, name)
    # compiled with deterministic kernels: a compiled backbone repeats its runs only with both (docs/engine.md)
    measured = resolve_student_config({**given, "backbone": backbone, "model_ema": True, "model_ema_decay": 0.9995,
                                       "compile": True, "deterministic": True}, "fer2013_student_vgg_ensemble",
                                      {"temperature": 2.0})  # fmt: skip
    assert shipped == measured
    assert shipped.loss == {"name": "kd", "temperature": 2.0} and shipped.epochs == 250 and shipped.model_ema
    # `--no-compile` on the command line still wins over the config (a machine without a C compiler)
    assert not resolve_student_config({**given, "compile": False}, name).compile
    assert create_backbone(shipped.backbone)(torch.zeros(1, 3, 48, 48)).shape[0] == 1
    with pytest.raises(ConfigError, match="needs a teacher signal"):  # the labels come from the command line
        resolve_student_config({"manifest": "m.parquet"}, name)


def test_a_shipped_config_is_found_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    """The documented `--config fertrain/configs/NAME.yaml` works outside the repository (a pip install),
    as do NAME and NAME.yaml; a file that exists wins; a missing one is refused with the shipped names."""
    monkeypatch.chdir(tmp_path)
    recipe = resolve_teacher_config({"manifest": "m.parquet"}, SHIPPED / "fer2013_vgg.yaml")
    for spelling in ("fertrain/configs/fer2013_vgg.yaml", "fer2013_vgg", "fer2013_vgg.yaml"):
        assert resolve_teacher_config({"manifest": "m.parquet"}, spelling) == recipe, spelling
    student = resolve_student_config({"manifest": "m.parquet", "teacher": "e.json"}, "fer2013_student_vgg_ensemble")
    assert student.backbone == "fer_vgg" and student.epochs == 250
    (tmp_path / "fer2013_vgg.yaml").write_text("epochs: 3\n")  # the user's own file of that name
    assert resolve_teacher_config({"manifest": "m.parquet"}, "fer2013_vgg.yaml").epochs == 3
    for missing in ("fer2013_vggg", "elsewhere/fer2013_vgg.yaml"):
        with pytest.raises(ConfigError, match=rf"--config {missing}: file not found .*fer2013_resnet18, fer2013_st"):
            resolve_teacher_config({"manifest": "m.parquet"}, missing)
    code, text = run_cli(["teacher", "--config", "nosuch", "--manifest", "m.parquet"], capsys)
    assert code == 2 and "--config nosuch: file not found" in text and "fer2013_vgg" in text
