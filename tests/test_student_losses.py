"""Distillation losses against hand-computed or reference values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fertrain.student import CELoss, DKDLoss, KDLoss, MMDLoss, RKDLoss


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 7, generator=g) * 2, torch.randn(16, 7, generator=g) * 3
    y = torch.randint(0, 7, (16,), generator=g)
    return s, t, y


def test_kd_at_t1_equals_the_kl_term(batch):
    s, t, y = batch
    out = KDLoss(temperature=1.0, ce_weight=0.0, kd_weight=1.0)(s, y, t)
    p_t, log_p_s = F.softmax(t, 1), F.log_softmax(s, 1)
    by_hand = (p_t * (torch.log(p_t) - log_p_s)).sum(1).mean()
    assert out["loss"] == pytest.approx(float(by_hand), rel=1e-5)
    assert out["distill"] == pytest.approx(float(by_hand), rel=1e-5)
    assert out["task"] == pytest.approx(float(F.cross_entropy(s, y)))
    assert KDLoss(temperature=4.0)(s, y, s)["distill"] == pytest.approx(0.0, abs=1e-6)
    assert CELoss()(s, y)["loss"] == pytest.approx(float(F.cross_entropy(s, y)))


def test_dkd_reduces_to_its_parts(batch):
    """Zhao et al.: per sample, KD = TCKD + (1 - p_target) * NCKD (at T = 1)."""
    s, t, y = batch
    dkd = DKDLoss(alpha=1.0, beta=1.0, temperature=1.0, warmup=0)
    for i in range(4):
        si, ti, yi = s[i : i + 1], t[i : i + 1], y[i : i + 1]
        tckd, nckd = dkd.parts(si, yi, ti)
        kd = KDLoss(temperature=1.0, ce_weight=0, kd_weight=1)(si, yi, ti)["distill"]
        p_target = F.softmax(ti, 1)[0, yi[0]]
        assert float(kd) == pytest.approx(float(tckd + (1 - p_target) * nckd), rel=1e-4)
    same = dkd(s, y, s)
    assert same["tckd"] == pytest.approx(0, abs=1e-6) and same["nckd"] == pytest.approx(0, abs=1e-6)


def test_dkd_warmup_ramps_the_distillation_term(batch):
    s, t, y = batch
    dkd = DKDLoss(warmup=20)
    full = dkd(s, y, t, epoch=40)
    assert dkd(s, y, t, epoch=0)["distill"] == 0
    assert dkd(s, y, t, epoch=10)["distill"] == pytest.approx(float(full["distill"]) / 2, rel=1e-5)
    assert full["distill"] == pytest.approx(float(full["tckd"] * 1.0 + full["nckd"] * 8.0), rel=1e-5)
    assert full["loss"] == pytest.approx(float(full["task"] + full["distill"]), rel=1e-5)


def test_offline_soft_labels_give_the_same_kd_term_as_online_logits(batch):
    s, t, y = batch
    probs = F.softmax(t, 1)  # what an exported soft-label file holds (T = 1 teacher)
    online = KDLoss(temperature=4.0)(s, y, t)
    offline = KDLoss(temperature=4.0)(s, y, torch.log(probs))
    assert offline["distill"] == pytest.approx(float(online["distill"]), rel=1e-5)


def test_rkd_is_zero_for_the_same_geometry_and_scale_invariant():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(12, 32, generator=g)
    logits, y = torch.randn(12, 7, generator=g), torch.randint(0, 7, (12,), generator=g)
    rkd = RKDLoss()
    same = rkd(logits, y, student_features=f, teacher_features=f * 3.0 + 1.0)  # scaled and shifted
    assert same["rkd_distance"] == pytest.approx(0, abs=1e-6) and same["rkd_angle"] == pytest.approx(0, abs=1e-6)
    other = rkd(logits, y, student_features=f, teacher_features=torch.randn(12, 32, generator=g))
    assert other["rkd_distance"] > 0 and other["rkd_angle"] > 0


def test_mmd_separates_distributions():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    shifted = torch.randn(64, 16, generator=g) + 2.0
    mmd = MMDLoss()
    assert mmd.mmd2(a, a) == pytest.approx(0, abs=1e-6)
    assert mmd.mmd2(a, shifted) > 5 * mmd.mmd2(a, b)
    logits, y = torch.randn(64, 7, generator=g), torch.randint(0, 7, (64,), generator=g)
    out = mmd(logits, y, student_features=a, teacher_features=shifted)
    assert out["loss"] == pytest.approx(float(out["task"] + out["mmd"]), rel=1e-6)


def test_crd_prefers_the_matching_teacher_row_and_updates_its_memory_bank():
    from fertrain.student import CRDLoss

    torch.manual_seed(0)
    n, d = 64, 16
    feats = torch.randn(n, d)
    crd = CRDLoss(student_dim=d, teacher_dim=d, n_data=n, feat_dim=d, negatives=32, momentum=0.0)
    with torch.no_grad():  # identical embeddings on both sides
        crd.embed_t.weight.copy_(crd.embed_s.weight)
        crd.embed_t.bias.copy_(crd.embed_s.bias)
    index = torch.arange(n)
    y = torch.zeros(n, dtype=torch.long)
    logits = torch.zeros(n, 7)
    crd.train()
    crd(logits, y, student_features=feats, teacher_features=feats, index=index)  # momentum 0: banks = embeddings
    emb = F.normalize(crd.embed_s(feats), dim=1)
    assert torch.allclose(crd.bank_t, emb, atol=1e-5) and torch.allclose(crd.bank_s, emb, atol=1e-5)
    crd.eval()  # eval: banks are read, not written
    matched = crd(logits, y, student_features=feats, teacher_features=feats, index=index)["crd"]
    shuffled = crd(logits, y, student_features=feats, teacher_features=feats, index=index.roll(1))["crd"]
    assert float(matched.detach()) < float(shuffled.detach())
    assert torch.allclose(crd.bank_t, emb, atol=1e-5)
    out = crd(logits, y, student_features=feats, teacher_features=feats, index=index)
    assert out["loss"].item() == pytest.approx((out["task"] + 0.8 * out["crd"]).item(), rel=1e-5)


def test_combined_is_kd_plus_a_feature_term_through_a_trained_projection(batch):
    from fertrain.student import CombinedLoss

    s, t, y = batch
    f = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    same = CombinedLoss(student_dim=32, teacher_dim=32, feature_weight=2.0)
    out = same(s, y, t, student_features=f, teacher_features=f * 3)  # same direction: no feature error
    assert out["feature"].item() == pytest.approx(0.0, abs=1e-6)
    kd = KDLoss()(s, y, t)
    assert out["loss"].item() == pytest.approx(kd["loss"].item(), rel=1e-6)
    wide = CombinedLoss(student_dim=32, teacher_dim=8, feature_weight=2.0)
    out = wide(s, y, t, student_features=f, teacher_features=f[:, :8])
    assert wide.proj.weight.shape == (8, 32) and out["feature"].item() > 0
    assert out["loss"].item() == pytest.approx((kd["loss"] + 2.0 * out["feature"]).item(), rel=1e-5)
    out["loss"].backward()
    assert wide.proj.weight.grad is not None  # the projection trains with the student
