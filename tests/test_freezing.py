"""Progressive unfreezing: timm layer groups, phases, freezing that really freezes, BN statistics."""

from __future__ import annotations

import pytest
import torch
from timm.scheduler import CosineLRScheduler

from fertrain.errors import ConfigError
from fertrain.models import build_model
from fertrain.student.freezing import STRATEGIES, UnfreezePolicy, build_phases, layer_groups


@pytest.mark.parametrize("name", ["resnet10t", "efficientnet_b0", "mobilenetv3_small_100", "convnext_atto",
                                  "vit_tiny_patch16_224"])  # fmt: skip
def test_layer_groups_come_from_timm_for_every_family(name):
    backbone = build_model(name, head="linear").backbone
    groups = layer_groups(backbone)
    names = [p for g in groups for p in g.params]
    assert sorted(names) == sorted(n for n, _ in backbone.named_parameters())  # every parameter exactly once
    assert len(groups) >= 4 and groups[0].name == "stem"
    sizes = [sum(dict(backbone.named_parameters())[p].numel() for p in g.params) for g in groups]
    assert sizes[-1] > 0.01 * sum(sizes)  # a trailing final-norm group is merged into the last block
    # the same strategy object drives every family: head only, then the top group joins the optimizer
    model = build_model(name, head="linear")
    policy = UnfreezePolicy(model, build_phases("balanced", layer_groups(model.backbone), lr=1e-3, epochs=30))
    opt = torch.optim.AdamW(policy.param_groups(), lr=1e-3)
    policy.on_epoch_start(0, opt)
    head_only, total = policy.trainable_counts()
    policy.on_epoch_start(5, opt)
    top = policy.trainable_counts()[0]
    assert head_only == sum(p.numel() for p in model.head.parameters()) and head_only < top < total
    assert top - head_only == sizes[-1] and opt.param_groups[2]["name"] == groups[-1].name


def _batch(n=8, size=32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 7, (n,), generator=g)


def _train_step(model, optimizer, policy):
    model.train()
    policy.on_train_mode(model)
    x, y = _batch()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_frozen_groups_do_not_change_and_unfreeze_at_the_scheduled_epoch(freeze_bn):
    torch.manual_seed(0)
    model = build_model("resnet10t", head="linear")
    groups = layer_groups(model.backbone)
    phases = build_phases("two-phase", groups, lr=1e-2, epochs=3, epochs_s1=1)
    policy = UnfreezePolicy(model, phases, freeze_bn=freeze_bn)
    opt = torch.optim.AdamW(policy.param_groups(), lr=1e-2)
    assert policy.on_epoch_start(0, opt) is phases[0]
    trainable, total = policy.trainable_counts()
    assert trainable == sum(p.numel() for p in model.head.parameters()) < total
    before = _snapshot(model)
    _train_step(model, opt, policy)
    after = _snapshot(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("head.") for k in changed)
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    weights = {k for k in changed if k.startswith("backbone.") and not k.endswith(buffers)}
    assert not weights  # frozen parameters never move
    stats = {k for k in changed if k.endswith(("running_mean", "running_var"))}
    assert (not stats) if freeze_bn else stats  # --freeze-bn keeps frozen blocks' BN statistics fixed

    assert policy.on_epoch_start(0, opt) is None  # same phase: nothing happens
    phase = policy.on_epoch_start(1, opt)  # phase 2: last group + head at lr/10
    assert phase is phases[1] and phase.lr == pytest.approx(1e-3)
    last = groups[-1].name
    assert [pg["name"] for pg in opt.param_groups] == ["head", "head/no_decay", last, f"{last}/no_decay"]
    assert all(pg["lr"] == pytest.approx(1e-3) for pg in opt.param_groups)
    before = _snapshot(model)
    _train_step(model, opt, policy)
    after = _snapshot(model)
    moved = {k.split(".")[1] for k in before if k.startswith("backbone.") and not torch.equal(before[k], after[k])
             and not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}  # fmt: skip
    assert moved == {last}


def test_layerwise_lrs_decay_per_depth_and_the_timm_scheduler_keeps_the_scales():
    model = build_model("resnet10t", head="linear")
    groups = layer_groups(model.backbone)
    phases = build_phases("layerwise", groups, lr=1e-3, epochs=60)
    assert [(p.start_epoch, len(p.trainable)) for p in phases] == [(0, 0), (8, 1), (15, 2), (25, 3), (35, 5)]
    policy = UnfreezePolicy(model, phases, layer_decay=0.5)
    opt = torch.optim.AdamW(policy.param_groups(), lr=1e-3)
    policy.enter_phase(4, opt)
    sched = policy.make_scheduler(opt, epochs=60, min_lr=0.0)
    assert isinstance(sched, CosineLRScheduler)
    sched.step(35)
    lrs = {pg["name"]: pg["lr"] for pg in opt.param_groups if "/" not in pg["name"]}
    base = lrs["head"]
    assert lrs[groups[-1].name] == pytest.approx(base * 0.5)
    assert lrs[groups[-2].name] == pytest.approx(base * 0.25)
    assert lrs["stem"] == pytest.approx(base * 0.5 ** len(groups))


def test_strategy_schedules_custom_yaml_and_errors(tmp_path):
    groups = layer_groups(build_model("resnet18", head="linear").backbone)
    assert [g.name for g in groups] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    tops = {s: [(p.start_epoch, len(p.trainable)) for p in build_phases(s, groups, lr=1e-3, epochs=100)]
            for s in ("conservative", "balanced", "none")}  # fmt: skip
    assert tops["conservative"] == [(0, 0), (10, 1), (20, 2), (30, 5)]
    assert tops["balanced"] == [(0, 0), (5, 1), (10, 2), (15, 3), (20, 5)]
    assert tops["none"] == [(0, 5)]
    two = build_phases("two-stage", groups, lr=1e-3, epochs=25, epochs_s1=5, lr_s1=1e-3, lr_s2=1e-4)
    assert [(p.start_epoch, p.scheduler, p.lr) for p in two] == [(0, "plateau", 1e-3), (5, "cosine", 1e-4)]
    assert build_phases("conservative", groups, lr=1e-3, epochs=12)[-1].start_epoch == 10  # later phases cut off
    spec = tmp_path / "schedule.yaml"
    spec.write_text("- {epoch: 0, unfreeze: []}\n- {epoch: 2, unfreeze: layer4, lr_mult: 0.5}\n"
                    "- {epoch: 4, unfreeze: [layer3, layer2], lr_mult: 0.1}\n"
                    "- {epoch: 6, unfreeze: all}\n")  # fmt: skip
    custom = build_phases("custom", groups, lr=1e-3, epochs=10, custom=str(spec))
    assert [(p.start_epoch, sorted(groups[i].name for i in p.trainable), p.lr) for p in custom][:3] == [
        (0, [], 1e-3), (2, ["layer4"], 5e-4), (4, ["layer2", "layer3", "layer4"], 1e-4)]  # fmt: skip
    spec.write_text("- {epoch: 0, unfreeze: layer9}\n")
    with pytest.raises(ConfigError, match=r"schedule.yaml.*unknown group.*layer9.*layer4"):
        build_phases("custom", groups, lr=1e-3, epochs=10, custom=str(spec))
    with pytest.raises(ConfigError, match="expected one of"):
        build_phases("sometimes", groups, lr=1e-3, epochs=10)
    assert set(STRATEGIES) >= {"none", "two-stage", "two-phase", "layerwise", "custom"}
