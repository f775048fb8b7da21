"""Calibration maths: known temperature recovered, ECE/Brier on a hand-computed example, bounds."""

from __future__ import annotations

import math

import pytest
import torch

from fertrain.calibration import (
    brier_score,
    calibration_report,
    debiased_ece,
    ece_noise_floor,
    expected_calibration_error,
    fit_temperature,
    reliability,
)


def test_recovers_a_known_temperature():
    torch.manual_seed(0)
    true_logits = torch.randn(20000, 7) * 3
    labels = torch.distributions.Categorical(logits=true_logits).sample()
    fit = fit_temperature(true_logits * 2.5, labels)  # over-confident by a factor 2.5
    assert fit.temperature == pytest.approx(2.5, rel=0.03)
    assert fit.converged and not fit.at_bound and fit.nll_after < fit.nll_before
    before = calibration_report(true_logits * 2.5, labels)
    after = calibration_report(true_logits * 2.5, labels, fit.temperature)
    assert after["ece"] < before["ece"] / 5 and after["nll"] < before["nll"]
    assert after["accuracy"] == before["accuracy"]  # scaling never changes the argmax


def test_ece_and_brier_hand_computed():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]], dtype=torch.float64)  # 0.6 is a bin edge
    labels = torch.tensor([0, 1, 0])
    # one sample per bin: |1 - 0.9|, |0 - 0.6|, |1 - 0.8| -> mean 0.3
    assert expected_calibration_error(probs, labels, n_bins=15) == pytest.approx(0.3)
    # (0.01 + 0.01) + (0.36 + 0.36) + (0.04 + 0.04) = 0.82 over 3
    assert brier_score(probs, labels) == pytest.approx(0.82 / 3)
    r = reliability(probs, labels, n_bins=15)
    assert sum(r["count"]) == 3 and r["count"][8] == 1 and r["accuracy"][8] == 0.0
    assert r["confidence"][13] == pytest.approx(0.9)


def test_temperature_stays_bounded_when_logits_only_mislead():
    labels = torch.arange(300) % 7
    logits = -5.0 * torch.nn.functional.one_hot(labels, 7).float()  # always confidently wrong
    fit = fit_temperature(logits, labels)
    assert fit.at_bound and not fit.converged and fit.temperature == 100.0
    assert math.isfinite(fit.nll_after)


def _calibrated_sample(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities of a FER-like spread and labels drawn from them: calibrated by construction."""
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, 7, generator=gen, dtype=torch.float64) * 2.0, dim=1)
    return probs, torch.multinomial(probs, 1, generator=gen).squeeze(1)


def test_ece_noise_floor_is_what_a_perfectly_calibrated_model_measures():
    n = 3309  # PublicTest without its training duplicates
    probs, _ = _calibrated_sample(n, 0)
    floor = ece_noise_floor(probs)
    assert floor == ece_noise_floor(probs)  # seeded
    measured = [expected_calibration_error(*_calibrated_sample(n, s)) for s in range(1, 41)]
    # labels drawn from the probabilities themselves: their ECE is pure noise, and the floor predicts it
    assert sum(measured) / len(measured) == pytest.approx(floor["mean"], rel=0.15)
    assert 0.01 < floor["mean"] < 0.03 and floor["p05"] < floor["mean"] < floor["p95"]
    inside = sum(floor["p05"] <= m <= floor["p95"] for m in measured)
    assert inside >= 30  # about 90 % of 40
    # a model twice as confident as it should be is far outside the noise
    sharp = torch.softmax(torch.log(probs) * 2, dim=1)
    assert expected_calibration_error(sharp, _calibrated_sample(n, 0)[1]) > 3 * floor["p95"]


def test_one_draw_of_the_floor_is_the_ece_of_labels_right_where_its_coins_say():
    probs = _calibrated_sample(2000, 5)[0]
    conf, pred = probs.max(dim=1)
    hits = torch.rand(1, len(conf), generator=torch.Generator().manual_seed(7), dtype=torch.float64)[0] < conf
    labels = torch.where(hits, pred, (pred + 1) % 7)  # right exactly where the draw's coin landed right
    one = ece_noise_floor(probs, draws=1, seed=7)
    assert one["mean"] == pytest.approx(expected_calibration_error(probs, labels), abs=1e-12)


def test_ece_noise_floor_shrinks_with_more_faces_and_draws_in_chunks(monkeypatch):
    small, large = ece_noise_floor(_calibrated_sample(500, 0)[0]), ece_noise_floor(_calibrated_sample(8000, 0)[0])
    assert large["mean"] < small["mean"] / 2.5  # ~ 1 / sqrt(n): 16x the faces, ~4x less noise
    probs = _calibrated_sample(1000, 3)[0]
    whole = ece_noise_floor(probs, draws=50)
    monkeypatch.setattr("fertrain.calibration.metrics._FLOOR_CHUNK", 7_000)  # 7 draws at a time
    assert ece_noise_floor(probs, draws=50) == whole
    with pytest.raises(ValueError, match="no faces"):
        ece_noise_floor(torch.empty(0, 7))


def _known_miscalibration(n: int, seed: int, sharpen: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Probabilities shown `sharpen` times sharper than the ones the labels are drawn from, the labels, and
    the ECE of the shown ones against the true probabilities (what an infinite sample would measure)."""
    probs, labels = _calibrated_sample(n, seed)
    shown = torch.softmax(torch.log(probs) * sharpen, dim=1)
    conf, pred = shown.max(dim=1)
    edges = torch.linspace(0, 1, 16, dtype=torch.float64)  # `reliability`'s 15 bins, (lo, hi] each
    bins = torch.nn.functional.one_hot((torch.bucketize(conf, edges) - 1).clamp(0, 14), 15).double()
    truth = float((probs.gather(1, pred[:, None])[:, 0] @ bins - conf @ bins).abs().sum() / n)
    return shown, labels, truth


@pytest.mark.parametrize("sharpen", [1.0, 1.05])
def test_debiased_ece_takes_out_the_sampling_bias_where_the_target_is_read(sharpen):
    """On 3,309 faces the ECE of one sample reads above the model's calibration error by its sampling noise;
    the debiased estimate keeps at most 60 % of that excess for a calibrated model, and a quarter of it for
    one whose true ECE is about 0.015, the issue's target."""
    plug_in, debiased, truths = [], [], []
    for seed in range(30):
        shown, labels, truth = _known_miscalibration(3309, seed, sharpen)
        report = calibration_report(torch.log(shown), labels, noise_floor=True)  # log-probabilities as logits
        plug_in.append(report["ece"])
        debiased.append(report["ece_debiased"]["value"])
        truths.append(truth)
    truth, excess = sum(truths) / 30, sum(plug_in) / 30 - sum(truths) / 30
    assert excess > 0.005  # the bias being corrected is real
    if sharpen == 1.0:
        assert truth < 1e-12 and sum(debiased) / 30 < 0.6 * sum(plug_in) / 30
    else:
        assert 0.012 < truth < 0.018 and abs(sum(debiased) / 30 - truth) < 0.25 * excess
    assert report["ece"] == pytest.approx(expected_calibration_error(shown, labels))
    assert debiased_ece(report["reliability"]) == report["ece_debiased"]  # seeded: the same curve, the same estimate
    assert 0 < report["ece_debiased"]["sd"] < report["ece_floor"]["mean"]


def test_a_run_serves_each_tta_with_its_own_temperature_and_reads_older_calibration_files(tmp_path):
    import json

    from fertrain.models.loading import serving_temperature, serving_temperatures

    ckpt = {"temperature": 1.3}  # fitted on single-view validation logits during training
    default, fits = serving_temperatures(tmp_path, ckpt)
    assert (default.value, default.tta) == (1.3, "none") and set(fits) == {"none"}
    (tmp_path / "calibration.json").write_text(json.dumps({"posthoc": False, "temperature": 9.0}))  # the trainer's
    assert serving_temperature(tmp_path, ckpt, tta="ten").value == 1.3  # not post-hoc: the checkpoint's
    # written before per-TTA temperatures: one post-hoc T, fitted on ten-crop logits
    (tmp_path / "calibration.json").write_text(json.dumps({"posthoc": True, "temperature": 0.8, "tta": "ten"}))
    assert (serving_temperature(tmp_path, ckpt).value, serving_temperature(tmp_path, ckpt).tta) == (0.8, "ten")
    assert serving_temperature(tmp_path, ckpt, tta="none").value == 1.3  # the training fit still serves single views
    assert serving_temperature(tmp_path, ckpt, tta="flip").tta == "ten"  # none for flip: the latest, and it says so
    (tmp_path / "calibration.json").write_text(json.dumps(
        {"posthoc": True, "temperature": 0.8, "tta": "ten", "temperatures": {"none": 1.1, "ten": 0.8}}))
    assert serving_temperature(tmp_path, ckpt, tta="none").value == 1.1  # a post-hoc fit replaces training's
    assert "--tta none" in serving_temperature(tmp_path, ckpt, tta="none").source
    assert serving_temperature(tmp_path, ckpt, tta="ten").value == 0.8
