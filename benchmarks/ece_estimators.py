"""How far the plug-in ECE and the debiased ECE land from a model's true calibration error on a
sample the size of FER2013 PublicTest without its training duplicates (3,309 faces).

    python benchmarks/ece_estimators.py [--faces 3309] [--samples 30]

Each sample draws 7-class probabilities of a FER-like spread, labels from them, and shows the
model's probabilities sharpened (or softened) by a factor: its true ECE (what an infinite sample
would measure, from the true probabilities) is then known exactly. Prints, per factor, the true ECE
and the mean plug-in and debiased ECE over the samples (docs/calibration.md).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from fertrain.calibration import debiased_ece, expected_calibration_error, reliability

BINS = 15


def true_ece(shown: torch.Tensor, probs: torch.Tensor) -> float:
    """ECE of `shown` against the probabilities the labels come from, in `reliability`'s bins."""
    conf, pred = shown.max(dim=1)
    edges = torch.linspace(0, 1, BINS + 1, dtype=torch.float64)
    bins = torch.nn.functional.one_hot((torch.bucketize(conf, edges) - 1).clamp(0, BINS - 1), BINS).double()
    return float((probs.gather(1, pred[:, None])[:, 0] @ bins - conf @ bins).abs().sum() / len(conf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=3309)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    print(f"{args.faces:,} faces, {args.samples} samples per row, {BINS} bins")
    print("sharpening | true ECE | plug-in ECE (mean) | debiased ECE (mean ± sd over samples)")
    for factor in (1.0, 0.95, 1.03, 1.05, 1.07, 1.1, 1.2):
        truth, plug_in, debiased = [], [], []
        for seed in range(args.samples):
            gen = torch.Generator().manual_seed(seed)
            probs = torch.softmax(torch.randn(args.faces, 7, generator=gen, dtype=torch.float64) * 2.0, dim=1)
            labels = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            shown = torch.softmax(torch.log(probs) * factor, dim=1)
            curve = reliability(shown, labels, BINS)
            truth.append(true_ece(shown, probs))
            plug_in.append(expected_calibration_error(shown, labels, BINS))
            debiased.append(debiased_ece(curve, seed=seed)["value"])
        print(f"{factor:10.2f} | {statistics.fmean(truth):8.4f} | {statistics.fmean(plug_in):18.4f} | "
              f"{statistics.fmean(debiased):.4f} ± {statistics.stdev(debiased):.4f}")


if __name__ == "__main__":
    main()
