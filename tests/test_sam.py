"""Sharpness-aware minimization (`--sam`): the step's gradient is the one at the ascended weights,
weights and batch-norm statistics come back exactly, ASAM scales the radius per weight, the engine's
graph-ready step trains what its plain step trains, and the options are checked and resumable."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fertrain.engine.sam import ASAM_ETA, SharpnessAware
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests import SourceFilter
from fertrain.runs import open_run
from fertrain.runs.checkpoints import load_checkpoint, save_checkpoint
from fertrain.teacher import TeacherTrainer, resolve_teacher_config, train_teacher

from .conftest import fer2013_train_faces
from .test_engine import tiny_teacher


def real_faces(n: int = 14) -> tuple[torch.Tensor, torch.Tensor]:
    """FER2013 training faces, two per class, normalized 48-px grey, with their labels."""
    faces, labels = fer2013_train_faces(n)
    return (torch.from_numpy(faces).float().unsqueeze(1) / 255 - 0.5) / 0.25, torch.from_numpy(labels)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                         nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 7))


def gradient_at(model: nn.Module, weights: list[torch.Tensor], x, y) -> list[torch.Tensor]:
    """The loss gradient of a copy of `model` with `weights` (train mode: batch statistics)."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p, w in zip(other.parameters(), weights, strict=True):
            p.copy_(w)
    return list(torch.autograd.grad(F.cross_entropy(other(x), y), list(other.parameters())))


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_gradient_is_the_gradient_at_the_ascended_weights_and_weights_and_statistics_come_back(adaptive):
    x, y = real_faces()
    model = small_cnn().train()
    start = [p.detach().clone() for p in model.parameters()]
    rho = 1.0 if adaptive else 0.05
    g = gradient_at(model, start, x, y)
    if adaptive:  # ASAM: e = rho T^2 g / ||T g||, T = |w| + eta
        scale = [w.abs() + ASAM_ETA for w in start]
        norm = torch.sqrt(sum(((t * gi) ** 2).sum() for t, gi in zip(scale, g, strict=True)))
        expected_e = [rho * t * t * gi / norm for t, gi in zip(scale, g, strict=True)]
    else:
        norm = torch.sqrt(sum((gi**2).sum() for gi in g))
        expected_e = [rho * gi / norm for gi in g]

    F.cross_entropy(model(x), y).backward()
    after_first_pass = [b.clone() for b in model.buffers()]
    sam = SharpnessAware(rho, adaptive=adaptive)
    with sam.ascended(model.parameters(), [model]):
        moved = [p.detach() - w for p, w in zip(model.parameters(), start, strict=True)]
        for m, e in zip(moved, expected_e, strict=True):
            assert torch.allclose(m, e, rtol=1e-4, atol=2e-7)  # m: a float32 difference of weights ~0.1-1
        assert all(float(p.grad.abs().max()) == 0 for p in model.parameters())  # zeroed for the second pass
        F.cross_entropy(model(x), y).backward()
    # the gradient the optimizer sees is the one at w + e, and nothing else changed
    at_ascended = gradient_at(model, [w + e for w, e in zip(start, expected_e, strict=True)], x, y)
    for p, want in zip(model.parameters(), at_ascended, strict=True):
        assert torch.allclose(p.grad, want, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(model[-1].weight.grad, g[-2], rtol=1e-3)  # not the plain gradient
    assert all(torch.equal(p.detach(), w) for p, w in zip(model.parameters(), start, strict=True))
    assert all(torch.equal(b, kept) for b, kept in zip(model.buffers(), after_first_pass, strict=True))
    # ASAM's radius is rho in the weight-scaled metric; SAM's is rho itself
    scaled = [e / (w.abs() + ASAM_ETA) if adaptive else e for e, w in zip(expected_e, start, strict=True)]
    assert float(torch.sqrt(sum((s**2).sum() for s in scaled))) == pytest.approx(rho, rel=1e-5)


def test_a_non_finite_gradient_is_skipped_by_the_loss_scaler_as_without_sam():
    """An fp16 overflow in the first gradient: the second gradient is not finite either, so the
    scaler skips the optimizer step and lowers its scale; the weights come back unchanged."""
    x, y = real_faces()
    model = small_cnn().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    start = [p.detach().clone() for p in model.parameters()]
    scaler.scale(F.cross_entropy(model(x), y)).backward()
    model[0].weight.grad[0, 0, 0, 0] = float("inf")
    with SharpnessAware(0.05).ascended(model.parameters(), [model]):
        scaler.scale(F.cross_entropy(model(x), y)).backward()
    assert not all(torch.isfinite(p.grad).all() for p in model.parameters())
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 512.0
    assert all(torch.equal(p.detach(), w) for p, w in zip(model.parameters(), start, strict=True))


def sam_trainer(manifest: Path, tmp: Path, **over) -> TeacherTrainer:
    cfg = resolve_teacher_config(tiny_teacher(manifest, tmp / "unused", **over))
    with open_run(tmp / "run", manifest=str(manifest), source_filter=SourceFilter(splits=["train", "val"])) as run:
        return TeacherTrainer(cfg, run, show_progress=False)


def test_the_engines_sam_step_takes_the_ascended_gradient_of_all_trained_weights(lowres_manifest, tmp_path):
    """One micro-step of a teacher with --sam against the same trainer without it: the same loss at
    the same weights, the same batch-norm statistics, and the gradient of the ascended weights."""
    over = {"mixup": 0.5, "augment": {"rotate": 10}}
    plain, sam = sam_trainer(lowres_manifest, tmp_path / "p", **over), sam_trainer(lowres_manifest, tmp_path / "s",
                                                                                      sam=0.05, **over)  # fmt: skip
    raw = next(iter(plain.train_loader(0, 0)))
    for tr in (plain, sam):
        tr.model.train()
        tr.before_step()
    plain_terms, sam_terms = plain.micro_step(raw, 0), sam.micro_step(raw, 0)
    assert torch.equal(plain_terms["loss"], sam_terms["loss"])
    assert all(torch.equal(a, b) for a, b in zip(plain.model.buffers(), sam.model.buffers(), strict=True))
    params = [p for p in plain.model.parameters() if p.grad is not None]
    g = [p.grad for p in params]
    norm = torch.sqrt(sum((gi.double() ** 2).sum() for gi in g))
    trained = {id(p) for grp in sam.optimizer.param_groups for p in grp["params"]}
    assert all(id(p) in trained for p in sam.model.parameters() if p.grad is not None)
    # the plain trainer at w + e, on the same batch and draw, gives the SAM trainer's gradient
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * p.grad / norm.float())
    plain.optimizer.zero_grad(set_to_none=True)
    plain.micro_step(raw, 0)
    sam_grads = [p.grad for p in sam.model.parameters() if p.grad is not None]
    assert len(sam_grads) == len(params)
    for a, b in zip(params, sam_grads, strict=True):
        assert torch.allclose(a.grad, b, rtol=1e-3, atol=1e-6)


def test_graph_ready_sam_step_trains_the_plain_steps_values_and_differs_from_no_sam(lowres_manifest, tmp_path):
    def run(name: str, **over):
        cfg = resolve_teacher_config(tiny_teacher(lowres_manifest, tmp_path / name, epochs=2, opt="sgd", lr=0.02,
                                                  mixup=0.5, model_ema=True, model_ema_decay=0.9, **over))  # fmt: skip
        train_teacher(cfg, show_progress=False)
        return load_checkpoint(tmp_path / name / "checkpoint_last.pt")

    eager, graph = run("eager", sam=0.05, cuda_graph="off"), run("graph", sam=0.05, cuda_graph="on")
    adaptive, none = run("asam", sam=1.0, sam_adaptive=True), run("none")
    for part in ("model", "ema"):
        for name, tensor in eager[part].items():
            assert torch.equal(tensor, graph[part][name]), name
    differs = [name for name, t in eager["model"].items() if t.is_floating_point()
               and not torch.allclose(t, none["model"][name], atol=1e-6)]  # fmt: skip
    assert len(differs) > len(eager["model"]) // 3
    assert not torch.allclose(adaptive["model"]["head.fc.weight"], eager["model"]["head.fc.weight"], atol=1e-6)


def test_sam_options_are_checked_and_a_run_saved_before_them_resumes(lowres_manifest, tmp_path):
    with pytest.raises(ConfigError, match=r"--sam must be >= 0, got -0.1"):
        resolve_teacher_config({"img_size": 48, "sam": -0.1})
    with pytest.raises(ConfigError, match=r"--sam-adaptive .* give --sam too"):
        resolve_teacher_config({"img_size": 48, "sam_adaptive": True})
    with pytest.raises(ConfigError, match=r"--sam 0.05 needs .* --grad-accum-steps 1 \(got 2\)"):
        resolve_teacher_config({"img_size": 48, "sam": 0.05, "grad_accum_steps": 2})
    # a checkpoint written before --sam existed (its config has no sam keys) resumes as sam 0 ...
    out = tmp_path / "old"
    base = tiny_teacher(lowres_manifest, out, epochs=2)
    train_teacher(resolve_teacher_config(base), show_progress=False, until_epoch=1)
    ckpt = load_checkpoint(out / "checkpoint_last.pt")
    for key in ("sam", "sam_adaptive"):
        del ckpt["config"][key]
    save_checkpoint(out / "checkpoint_last.pt", ckpt)
    with pytest.raises(FertrainError, match=r"--sam: 0.0 -> 0.05"):  # ... and refuses to become a SAM run
        train_teacher(resolve_teacher_config({**base, "sam": 0.05}), show_progress=False)
    result = train_teacher(resolve_teacher_config(base), show_progress=False)
    assert result.complete and result.resumed_from_epoch == 1
