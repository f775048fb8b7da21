"""Student distillation on the demo pipeline: outputs, DKD vs CE, resume across a phase change,
online vs offline teacher signals, feature losses end to end, and configuration errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from fertrain.ensemble import load_teacher
from fertrain.errors import ConfigError, FertrainError
from fertrain.manifests import SourceFilter
from fertrain.manifests.imageprobe import sha256_file
from fertrain.posthoc import calibrate_teacher
from fertrain.runs import open_run
from fertrain.serialization import load_torch_file
from fertrain.softlabels.export import export_softlabels
from fertrain.student import KDLoss, resolve_student_config, train_student
from fertrain.student.trainer import StudentTrainer
from fertrain.teacher import resolve_teacher_config
from fertrain.teacher.trainer import TeacherTrainer

from .clitools import run_cli

DEMO_STUDENT_YAML = Path(__file__).resolve().parents[1] / "fertrain" / "configs" / "demo_student.yaml"


def _manifest(demo: Path) -> Path:
    return demo / "manifests" / "demo.parquet"


def _teacher_a(demo: Path) -> Path:
    return next((demo / "teachers").glob("*stageA*"))


def test_demo_student_outputs_follow_seeds_000_and_004(demo_pipeline):
    run = demo_pipeline / "students" / "demo_dkd"
    for name in ("best.pt", "student_stage1_best.pt", "student_final.pt", "checkpoint_last.pt", "history.json",
                 "training_history_two_stage.json", "metrics.csv", "metrics.json", "results.json", "config.yaml",
                 "alignmentreport.json", "model.onnx", "model.onnx.json"):  # fmt: skip
        assert (run / name).is_file(), name
    two = json.loads((run / "training_history_two_stage.json").read_text())
    for key in ("stage", "train_loss", "train_distill_loss", "train_task_loss", "val_loss", "val_acc", "val_auc"):
        assert len(two[key]) == 10, key
    hist = json.loads((run / "history.json").read_text())
    # DKD's terms are logged separately and add up: loss = CE + distill, distill = ramp * (alpha TCKD + beta NCKD)
    for rec in hist:
        assert rec["train_loss"] == pytest.approx(rec["train_task_loss"] + rec["train_distill_loss"], rel=1e-5)
        assert rec["train_tckd"] > 0 and rec["train_nckd"] > 0
    # the 2-epoch DKD warmup ramps the distillation term in: at most half of alpha TCKD + beta NCKD in epoch 1,
    # all of it from epoch 3 (alpha 1, beta 8)
    full = [r["train_tckd"] + 8 * r["train_nckd"] for r in hist]
    assert hist[0]["train_distill_loss"] < 0.5 * full[0]
    assert [r["train_distill_loss"] for r in hist[2:]] == pytest.approx(full[2:], rel=1e-5)
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["loss"]["name"] == "dkd" and results["teacher_signal"]["mode"] == "offline"
    assert results["test"]["n"] > 0 and 0 <= results["test"]["accuracy"] <= 1
    assert results["params"]["student"] < 500_000  # test_resnet: under a tenth of the resnet10t teachers
    sidecar = json.loads((run / "model.onnx.json").read_text())
    assert sidecar["parity"]["max_abs_diff"] < 1e-3 and sidecar["backbone"] == "test_resnet"
    best = load_torch_file(run / "best.pt", "test")
    assert best["metrics"]["macro_f1"] == pytest.approx(max(r["val_macro_f1"] for r in hist))


def test_dkd_student_follows_its_teachers_soft_labels_closer_than_a_ce_student(demo_pipeline, tmp_path):
    """Same seed, epochs and recipe; only the loss differs. The demo's 10 CPU epochs are too few to rank
    the two on validation accuracy (measured either way by a few points), but distillation must make
    the student's distribution on the training faces closer to the ensemble's soft labels."""
    from fertrain.ensemble.predictor import RunPredictor, manifest_faces
    from fertrain.manifests import load_manifest
    from fertrain.student.signal import SoftLabelSignal

    cfg = resolve_student_config({"manifest": str(_manifest(demo_pipeline)), "loss": "ce", "skip_onnx": True,
                                  "output_dir": str(tmp_path / "ce")}, DEMO_STUDENT_YAML)  # fmt: skip
    train_student(cfg, show_progress=False)
    manifest = load_manifest(_manifest(demo_pipeline))
    train = manifest.df[manifest.df["split"] == "train"].reset_index(drop=True)
    soft = SoftLabelSignal(demo_pipeline / "softlabels" / "train.parquet", manifest, train, torch.device("cpu"))
    target = torch.softmax(soft(torch.arange(len(train))).logits, 1)

    def kl_to_teacher(run: Path) -> float:
        logits, _ = RunPredictor.load(run).logits(manifest_faces(manifest, train), device=torch.device("cpu"),
                                                  workers=0)  # fmt: skip
        log_q = torch.log_softmax(torch.as_tensor(logits), 1)
        return float((target * (torch.log(target.clamp_min(1e-12)) - log_q)).sum(1).mean())

    dkd, ce = kl_to_teacher(demo_pipeline / "students" / "demo_dkd"), kl_to_teacher(tmp_path / "ce")
    assert dkd < 0.5 * ce, (dkd, ce)  # measured 0.075 vs 0.275


def _two_stage(demo: Path, out: Path) -> dict:
    return {"manifest": str(_manifest(demo)), "softlabels": str(demo / "softlabels" / "train.parquet"),
            "backbone": "resnet10t", "img_size": 32, "batch_size": 64, "workers": 0, "device": "cpu",
            "strategy": "two-stage", "epochs_s1": 1, "epochs_s2": 2, "lr_s1": 3e-3, "lr_s2": 1e-3, "loss": "kd",
            "freeze_bn": True, "skip_onnx": True, "output_dir": str(out),
            "augment": {"scale": [0.85, 1.0], "erasing": 0.0}}  # fmt: skip


def test_two_stage_resume_across_the_phase_change_equals_one_run(demo_pipeline, tmp_path):
    ref = train_student(resolve_student_config(_two_stage(demo_pipeline, tmp_path / "ref")), show_progress=False)
    out = tmp_path / "killed"
    first = train_student(resolve_student_config(_two_stage(demo_pipeline, out)), show_progress=False, until_epoch=1)
    assert first.test is None and not (out / "student_final.pt").exists()  # stopped after stage 1
    ckpt = load_torch_file(out / "checkpoint_last.pt", "test")
    assert ckpt["phase"] == 0 and ckpt["layout"] == ["head", "head/no_decay"]
    # resumed at the phase boundary: stage 2 begins, then stopped again inside it
    train_student(resolve_student_config(_two_stage(demo_pipeline, out)), show_progress=False, until_epoch=2)
    ckpt = load_torch_file(out / "checkpoint_last.pt", "test")
    assert ckpt["phase"] == 1 and ckpt["layout"] == ["head", "head/no_decay", "layer4", "layer4/no_decay"]
    done = train_student(resolve_student_config(_two_stage(demo_pipeline, out)), show_progress=False)
    assert done.resumed_from_epoch == 2
    assert [r["train_loss"] for r in done.history] == pytest.approx([r["train_loss"] for r in ref.history], rel=1e-6)
    assert [r["stage"] for r in done.history] == [1, 2, 2]
    a = load_torch_file(tmp_path / "ref" / "student_final.pt", "test")["model"]
    b = load_torch_file(out / "student_final.pt", "test")["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    for stage in (1, 2):
        assert (out / f"student_stage{stage}_best.pt").is_file()
    # stage 1 trained only the head: with --freeze-bn the frozen backbone, BN statistics included, is exactly
    # the seeded initialization; in stage 2 only layer4 moved
    from fertrain.engine import seed_everything
    from fertrain.models import build_model

    seed_everything(1337)
    init = build_model("resnet10t", head="linear").state_dict()
    s1 = load_torch_file(out / "student_stage1_best.pt", "test")["model"]
    s2 = load_torch_file(out / "student_stage2_best.pt", "test")["model"]
    backbone = [k for k in init if k.startswith("backbone.") and not k.endswith("num_batches_tracked")]
    assert all(torch.equal(s1[k], init[k]) for k in backbone)
    assert any("running_mean" in k for k in backbone)
    assert not torch.equal(s1["head.fc.weight"], init["head.fc.weight"])
    moved = {k.split(".")[1] for k in backbone if not torch.equal(s2[k], init[k])}
    assert moved == {"layer4"}


def _batch_signals(demo: Path, teacher: Path, softlabels: Path, source: str | None = None):
    from fertrain.data import ManifestFaces, PreprocessSpec, collate_faces
    from fertrain.manifests import load_manifest
    from fertrain.student.signal import OnlineTeacherSignal, SoftLabelSignal

    manifest = load_manifest(_manifest(demo))
    train = manifest.df[manifest.df["split"] == "train"].reset_index(drop=True)
    offline = SoftLabelSignal(softlabels, manifest, train, torch.device("cpu"))
    online = OnlineTeacherSignal(teacher, torch.device("cpu"), need_features=False, amp=False, channels_last=False,
                                 fused=False)  # fmt: skip
    size = max(s.img_size for s in online.specs)
    positions = train.index[train["source"] == source] if source else train.index
    positions = positions[:48]
    loader = DataLoader(ManifestFaces(manifest, train.loc[positions].reset_index(drop=True), PreprocessSpec(size)),
                        batch_size=48, collate_fn=collate_faces)  # fmt: skip
    x, sizes, _host_sizes, y, _soft, _ = next(iter(loader))
    index = torch.as_tensor(np.asarray(positions))
    return offline(index).logits, online(index, x_uint8=x, sizes=sizes, host_sizes=sizes).logits, y


def test_online_and_offline_kd_terms_match_for_the_same_teacher_outputs(demo_pipeline, tmp_path):
    from fertrain.softlabels import export_softlabels

    manifest = _manifest(demo_pipeline)
    run_a = _teacher_a(demo_pipeline)
    sl = tmp_path / "a.parquet"
    export_softlabels(run_a, manifest, sl, splits=["train"], workers=0, device="cpu", show_progress=False)
    off, on, y = _batch_signals(demo_pipeline, run_a, sl)
    student = torch.randn(off.shape, generator=torch.Generator().manual_seed(0)) * 2
    kd = KDLoss(temperature=4.0)
    assert torch.allclose(torch.softmax(off, 1), torch.softmax(on, 1), atol=1e-4)
    assert float(kd(student, y, off)["distill"]) == pytest.approx(float(kd(student, y, on)["distill"]), rel=1e-4)
    # the demo ensemble (members at 48 and 64 px, calibrated, fused) against its exported soft labels
    off, on, y = _batch_signals(demo_pipeline, demo_pipeline / "ensembles" / "demo_AB.json",
                                demo_pipeline / "softlabels" / "train.parquet", "demo_lowres")  # fmt: skip
    assert torch.allclose(torch.softmax(off, 1), torch.softmax(on, 1), atol=1e-4)
    assert float(kd(student, y, off)["distill"]) == pytest.approx(float(kd(student, y, on)["distill"]), rel=1e-4)


@pytest.mark.parametrize("loss", ["crd", "combined", "rkd", "mmd"])
def test_online_feature_losses_train_end_to_end(demo_pipeline, tmp_path, capsys, loss):
    out = tmp_path / loss
    code, text = run_cli(["student", "-m", _manifest(demo_pipeline), "--teacher", _teacher_a(demo_pipeline),
                          "--loss", loss, "--backbone", "mobilenetv3_small_100", "--img-size", "32", "--epochs", "1",
                          "-b", "64", "-j", "0", "--device", "cpu",
                          *(["--loss-opt", "negatives=128"] if loss == "crd" else []),
                          "--include-sources", "demo_lowres", "--skip-onnx", "--output-dir", out, "-q"],
                         capsys)  # fmt: skip
    assert code == 0, text
    rec = json.loads((out / "history.json").read_text())[0]
    term = {"crd": "train_crd", "combined": "train_feature", "rkd": "train_rkd_angle", "mmd": "train_mmd"}[loss]
    assert rec[term] > 0 and np.isfinite(rec["train_loss"])
    ckpt = load_torch_file(out / "checkpoint_last.pt", "test")
    if loss in ("combined", "mmd"):  # student 1024 wide, teacher 512: a trained projection
        assert ckpt["loss"]["proj.weight"].shape == (512, 1024)
    if loss == "crd":
        bank = ckpt["loss"]["bank_s"]
        assert torch.allclose(bank.norm(dim=1), torch.ones(len(bank)), atol=1e-4)
    assert "(online, frozen)" in text and "Trainable parameters:" in text


def test_teachers_and_students_build_their_net_from_the_shared_options_and_their_own_head(demo_pipeline, tmp_path):
    """One engine `create_model` for both trainers: --drop-path and --drop reach a student's net as a
    teacher's, a teacher adds its ArcFace scale, and neither training-only option enters the model spec."""
    common = {"manifest": str(_manifest(demo_pipeline)), "backbone": "resnet10t", "img_size": 32, "workers": 0,
              "device": "cpu", "include_sources": ["demo_lowres"], "drop_path": 0.3, "drop": 0.2}
    student_cfg = resolve_student_config({**common, "teacher": str(_teacher_a(demo_pipeline))})
    teacher_cfg = resolve_teacher_config({**common, "head": "arcface", "arcface_s": 12.0})
    trainers = {}
    for kind, cfg, cls in (("student", student_cfg, StudentTrainer), ("teacher", teacher_cfg, TeacherTrainer)):
        with open_run(tmp_path / kind, manifest=cfg.manifest,
                      source_filter=SourceFilter(splits=["train", "val"])) as run:  # fmt: skip
            trainers[kind] = cls(cfg, run, show_progress=False)
        model = trainers[kind].model
        rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
        assert rates and max(rates) == pytest.approx(0.3), kind
        assert model.backbone.drop_rate == 0.2, kind
    assert trainers["teacher"].model.head.s == 12.0
    assert trainers["teacher"].model_spec() == {"backbone": "resnet10t", "head": "arcface", "head_kwargs": {"s": 12.0}}
    assert trainers["student"].model_spec() == {"backbone": "resnet10t", "head": "linear", "head_kwargs": {}}


def test_student_configuration_errors(demo_pipeline, tmp_path, capsys):
    m = _manifest(demo_pipeline)
    sl = demo_pipeline / "softlabels" / "train.parquet"
    with pytest.raises(ConfigError, match="matches features.*--teacher"):
        resolve_student_config({"manifest": str(m), "softlabels": str(sl), "loss": "crd"})
    with pytest.raises(ConfigError, match="needs a teacher signal"):
        resolve_student_config({"manifest": str(m), "loss": "dkd"})
    with pytest.raises(ConfigError, match="epochs-s1 \\+ --epochs-s2"):
        resolve_student_config({"manifest": str(m), "loss": "ce", "strategy": "two-stage", "epochs": 3})
    with pytest.raises(ConfigError, match="--strategy 'slow'"):
        resolve_student_config({"manifest": str(m), "loss": "ce", "strategy": "slow"})
    # soft labels exported for another split do not cover the training rows: refused, naming the file
    from fertrain.softlabels import export_softlabels

    val_sl = tmp_path / "val.parquet"
    export_softlabels(_teacher_a(demo_pipeline), m, val_sl, splits=["val"], workers=0, device="cpu",
                      show_progress=False)  # fmt: skip
    code, text = run_cli(["student", "-m", m, "--softlabels", val_sl, "--epochs", "1", "-j", "0", "--device", "cpu",
                          "--output-dir", tmp_path / "s", "-q"], capsys)  # fmt: skip
    assert code == 2 and "val.parquet" in text and "no soft labels for" in text


# --- mixup / cutmix on students ------------------------------------------------------------------------------


def test_an_online_teacher_sees_the_students_mixed_faces_at_its_own_size(demo_pipeline):
    """A student's --mixup/--cutmix reaches its online teacher: each member of the demo ensemble (48 and 64
    px) gets its own view of the student's augmented faces mixed with the same partner (B-1-i); a cutmix
    box drawn for the student's 32-px faces covers the same share of the face at 48 and at 64 px."""
    from fertrain.data import AugmentConfig, augment_params
    from fertrain.data.mixup import MixDraw, MixupConfig, draw_mix, mix_vector

    _, _, _, online, x, sizes, index = _signal_batch(demo_pipeline, demo_pipeline / "ensembles" / "demo_AB.json")
    assert sorted(m.spec.img_size for m in online.teacher.members) == [48, 64]
    seen: list[torch.Tensor] = []
    for m in online.teacher.members:
        m.model.backbone.register_forward_pre_hook(lambda _module, args: seen.append(args[0].clone()))
    aug = AugmentConfig(rotate=10)
    params = augment_params(len(x), aug, torch.Generator().manual_seed(0), torch.device("cpu"))

    def views(draw: MixDraw | None) -> list[torch.Tensor]:
        seen.clear()
        mix = None if draw is None else torch.tensor(mix_vector(draw))
        online(index, x_uint8=x, sizes=sizes, params=params, augment=aug, mix=mix)
        return list(seen)

    plain = views(None)
    unmixed = online(index, x_uint8=x, sizes=sizes, params=params, augment=aug)
    mixup = online(index, x_uint8=x, sizes=sizes, params=params, augment=aug,
                   mix=torch.tensor(mix_vector(MixDraw(0.3))))  # fmt: skip
    assert unmixed.partner_logits is None and torch.equal(mixup.partner_logits, mixup.logits)  # one mixed face
    assert not torch.allclose(mixup.logits, unmixed.logits, atol=1e-3)
    for own, mixed in zip(plain, views(MixDraw(0.3)), strict=True):
        assert torch.allclose(mixed, 0.3 * own + 0.7 * own.flip(0), atol=1e-5)
    draw = next(d for s in range(100) if 0.3 < (d := draw_mix(MixupConfig(cutmix=1.0), 32, 5, s)).lam < 0.7)
    for own, mixed in zip(plain, views(draw), strict=True):
        pasted = (mixed != own).any(1)  # (B, H, W): pixels that came from the partner
        assert torch.equal(mixed.permute(0, 2, 3, 1)[pasted], own.flip(0).permute(0, 2, 3, 1)[pasted])
        share = pasted[0].float().mean().item()
        assert share == pytest.approx(1 - draw.lam, abs=0.08), (own.shape[-1], share, draw)


def test_offline_soft_labels_of_a_mixed_batch_bring_the_partners_rows_along(demo_pipeline):
    from fertrain.data.mixup import MixDraw, mix_vector
    from fertrain.student.signal import SoftLabelSignal

    manifest, train, _, _, _, _, index = _signal_batch(demo_pipeline, _teacher_a(demo_pipeline))
    offline = SoftLabelSignal(demo_pipeline / "softlabels" / "train.parquet", manifest, train, torch.device("cpu"))
    out = offline(index, mix=torch.tensor(mix_vector(MixDraw(0.4))))
    assert torch.equal(out.logits, offline(index).logits) and offline(index).partner_logits is None
    assert torch.equal(out.partner_logits, offline(index.flip(0)).logits)
    assert not torch.equal(out.partner_logits, out.logits)


def _signal_batch(demo: Path, teacher: Path):
    from fertrain.data import ManifestFaces, PreprocessSpec, collate_faces
    from fertrain.manifests import load_manifest
    from fertrain.student.signal import OnlineTeacherSignal

    manifest = load_manifest(_manifest(demo))
    train = manifest.df[manifest.df["split"] == "train"].reset_index(drop=True)
    online = OnlineTeacherSignal(teacher, torch.device("cpu"), need_features=False, amp=False, channels_last=False,
                                 fused=False)  # fmt: skip
    positions = train.index[train["source"] == "demo_lowres"][:32]
    loader = DataLoader(ManifestFaces(manifest, train.loc[positions].reset_index(drop=True), PreprocessSpec(64)),
                        batch_size=32, collate_fn=collate_faces)  # fmt: skip
    x, sizes, _host_sizes, y, _soft, _ = next(iter(loader))
    return manifest, train, y, online, x, sizes, torch.as_tensor(np.asarray(positions))


def test_the_mixup_criterion_is_the_loss_against_mixed_targets():
    """Against the partner's label and soft labels, weighted by the draw's target lambda: the task term
    is cross-entropy to the mixed one-hot targets (timm's), and the KD term has the gradient of the KL to
    the mix of the two teacher distributions (it differs from that KL by a constant)."""
    from fertrain.data.mixup import MixDraw, mix_targets, mix_vector
    from fertrain.student.losses import mixup_criterion

    g = torch.Generator().manual_seed(3)
    student = (torch.randn(16, 7, generator=g) * 2).requires_grad_(True)
    teacher = torch.randn(16, 7, generator=g) * 3
    labels = torch.randint(0, 7, (16,), generator=g)
    v = torch.tensor(mix_vector(MixDraw(0.35)))
    kd = KDLoss(temperature=4.0)
    terms = mixup_criterion(kd, v, student, labels, teacher, teacher.flip(0))
    one_hot = torch.nn.functional.one_hot(labels, 7).float()
    expected_task = -(mix_targets(one_hot, v) * torch.log_softmax(student, 1)).sum(1).mean()
    assert terms["task"].item() == pytest.approx(expected_task.item(), rel=1e-5)
    (grad,) = torch.autograd.grad(terms["distill"], student)
    mixed_p = mix_targets(torch.softmax(teacher / 4, 1), v)
    reference = torch.nn.functional.kl_div(torch.log_softmax(student / 4, 1), mixed_p, reduction="batchmean") * 16
    (expected_grad,) = torch.autograd.grad(reference, student)
    assert torch.allclose(grad, expected_grad, atol=1e-6)
    assert terms["loss"].item() == pytest.approx(0.5 * terms["task"].item() + 0.5 * terms["distill"].item(), rel=1e-5)
    # no mix (lambda 1) is the plain loss
    plain = mixup_criterion(kd, torch.tensor(mix_vector(MixDraw(1.0))), student, labels, teacher, teacher.flip(0))
    assert plain["loss"].item() == pytest.approx(kd(student, labels, teacher)["loss"].item(), rel=1e-6)


def _mixed_student(demo: Path, out: Path, **extra) -> dict:
    return {"manifest": str(_manifest(demo)), "softlabels": str(demo / "softlabels" / "train.parquet"),
            "backbone": "resnet10t", "img_size": 32, "batch_size": 64, "workers": 0, "device": "cpu", "epochs": 2,
            "lr": 3e-3, "loss": "kd", "mixup": 0.4, "cutmix": 1.0, "skip_onnx": True, "output_dir": str(out),
            "include_sources": ["demo_lowres"], **extra}  # fmt: skip


def test_a_config_compares_on_resume_as_it_resolves():
    """Resume compares the augmentation and the loss with their defaults filled in: a default written out
    (or a YAML list for a tuple default) is no change, another value is."""
    from fertrain.engine.config import effective_values
    from fertrain.student.config import StudentConfig

    def same(a: dict, b: dict) -> bool:
        return effective_values(StudentConfig, a) == effective_values(StudentConfig, b)

    assert same({"loss": {"name": "kd"}}, {"loss": {"name": "kd", "temperature": 4, "ce_weight": 0.5}})
    assert same({"loss": "mmd"}, {"loss": {"name": "mmd", "scales": [0.5, 1, 2]}})
    assert same({"augment": {"rotate": 10}}, {"augment": {"rotate": 10.0, "trivial": 0}})
    assert same({"augment": None}, {"augment": {"scale": [0.6, 1.0]}})  # the default crop, spelled as YAML
    assert not same({"loss": {"name": "kd"}}, {"loss": {"name": "kd", "temperature": 2}})
    assert not same({"loss": {"name": "kd"}}, {"loss": {"name": "dkd"}})
    assert not same({"augment": {"rotate": 10}}, {"augment": {"rotate": 10, "trivial": 1}})
    assert effective_values(StudentConfig, {"lr": 0.1}) == {"lr": 0.1}  # other options as they are


def test_a_mixed_student_resumes_to_the_same_run_and_mixing_changes_what_it_learns(demo_pipeline, tmp_path):
    ref = train_student(resolve_student_config(_mixed_student(demo_pipeline, tmp_path / "ref")), show_progress=False)
    out = tmp_path / "resumed"
    train_student(resolve_student_config(_mixed_student(demo_pipeline, out)), show_progress=False, until_epoch=1)
    with pytest.raises(FertrainError, match=r"inputs changed \(--loss: .*'temperature': 4.0.* -> .*'temperature': 2.0"):
        train_student(resolve_student_config(_mixed_student(demo_pipeline, out, loss={"name": "kd", "temperature": 2})),
                      show_progress=False)  # fmt: skip
    # the same loss and augmentation with defaults written out are the same run
    same = _mixed_student(demo_pipeline, out, loss={"name": "kd", "temperature": 4, "kd_weight": 0.5},
                          augment={"trivial": 0})  # fmt: skip
    done = train_student(resolve_student_config(same), show_progress=False)
    assert done.resumed_from_epoch == 1  # the draws come from (seed, step): the same mixes after the resume
    assert [r["train_loss"] for r in done.history] == pytest.approx([r["train_loss"] for r in ref.history], rel=1e-6)
    unmixed = train_student(resolve_student_config(_mixed_student(demo_pipeline, tmp_path / "plain", mixup=0.0,
                                                                  cutmix=0.0)), show_progress=False)  # fmt: skip
    assert unmixed.history[0]["train_loss"] != pytest.approx(ref.history[0]["train_loss"], rel=1e-3)
    assert yaml.safe_load((out / "config.yaml").read_text())["mixup"] == 0.4


def test_online_mixup_student_trains_from_the_cli(demo_pipeline, tmp_path, capsys):
    out = tmp_path / "online"
    code, text = run_cli(["student", "-m", _manifest(demo_pipeline), "--teacher", _teacher_a(demo_pipeline),
                          "--loss", "dkd", "--mixup", "0.2", "--cutmix", "1.0", "--backbone", "resnet10t",
                          "--img-size", "32", "--epochs", "1", "-b", "64", "-j", "0", "--device", "cpu",
                          "--include-sources", "demo_lowres", "--skip-onnx", "--output-dir", out, "-q"],
                         capsys)  # fmt: skip
    assert code == 0, text
    rec = json.loads((out / "history.json").read_text())[0]
    assert np.isfinite(rec["train_loss"]) and rec["train_nckd"] > 0
    with pytest.raises(ConfigError, match="--loss crd cannot be mixed"):
        resolve_student_config({"manifest": str(_manifest(demo_pipeline)), "teacher": str(_teacher_a(demo_pipeline)),
                                "loss": "crd", "cutmix": 1.0})  # fmt: skip


def test_a_student_refuses_to_resume_on_soft_labels_made_again_at_the_same_path(demo_pipeline, tmp_path):
    """Soft labels are read again by every resume: exported again at the path a run started with (here from
    another teacher), they would make the resumed epochs another experiment under the same config. The resume is
    refused before the run directory is touched, naming the option and both sha256; --force resumes and
    records the override."""
    labels = tmp_path / "labels.parquet"
    for suffix in ("", ".sha256"):
        shutil.copy(demo_pipeline / "softlabels" / f"train.parquet{suffix}", f"{labels}{suffix}")
    out = tmp_path / "student"
    options = _mixed_student(demo_pipeline, out, softlabels=str(labels), mixup=0.0, cutmix=0.0)
    train_student(resolve_student_config(options), show_progress=False, until_epoch=1)
    started = sha256_file(labels)
    assert json.loads((out / "alignmentreport.json").read_text())["inputs"] == {
        "softlabels": {"path": str(labels), "sha256": started}}

    other = tmp_path / "other.parquet"
    export_softlabels(_teacher_a(demo_pipeline), _manifest(demo_pipeline), other, splits=["train"], device="cpu",
                      workers=0, show_progress=False)  # fmt: skip
    for suffix in ("", ".sha256"):  # `fertrain export-softlabels` again, as a pipeline's --rerun does
        os.replace(f"{other}{suffix}", f"{labels}{suffix}")
    now = sha256_file(labels)
    assert now != started
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(FertrainError, match=rf"--softlabels content: sha256 {started[:12]}… -> {now[:12]}…"):
        train_student(resolve_student_config(options), show_progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    done = train_student(resolve_student_config({**options, "force": True}), show_progress=False)
    assert done.resumed_from_epoch == 1 and done.complete
    status = json.loads((out / "run_status.json").read_text())
    assert status["resume_overrides"][0]["changes"] == {"softlabels content": [started, now]}
    assert json.loads((out / "alignmentreport.json").read_text())["inputs"]["softlabels"]["sha256"] == now


def test_an_online_teacher_counts_by_its_weights_and_temperatures_not_its_path(demo_pipeline, tmp_path):
    """What a resume compares for --teacher: the same run copied elsewhere is the same teacher; another
    run's weights (a teacher retrained in place) or a temperature fitted again (`fertrain calibrate`) are not."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(_teacher_a(demo_pipeline), first)
    shutil.copytree(_teacher_a(demo_pipeline), moved)
    digest = load_teacher(first, tta="none").fingerprint()
    assert load_teacher(moved, tta="none").fingerprint() == digest
    assert StudentTrainer.input_digests(resolve_student_config(
        {"manifest": str(_manifest(demo_pipeline)), "teacher": str(moved)})) == {"teacher": digest}
    retrained = next((demo_pipeline / "teachers").glob("*stageB*"))
    assert load_teacher(retrained, tta="none").fingerprint() != digest
    fitted = calibrate_teacher(moved, _manifest(demo_pipeline), "test", workers=0)  # another split: another T
    recalibrated = load_teacher(moved, tta="none")
    assert recalibrated.temperature == fitted["temperature"] != load_teacher(first, tta="none").temperature
    assert recalibrated.fingerprint() != digest
