"""Calibration maths: known temperature recovered, ECE/Brier on a hand-computed example, bounds."""

from __future__ import annotations

import math

import pytest
import torch

from fertrain.calibration import (
    brier_score,
    calibration_report,
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
