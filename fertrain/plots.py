"""PNG plots people would rather look at than read (matplotlib, no display needed).

Each plot has a `*_figure` function returning the matplotlib figure (TensorBoard logs those)
and a `plot_*` function writing it as a PNG atomically.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fertrain.atomic import atomic_path


def save_figure(fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def confusion_figure(cm, class_names, title: str = ""):
    """Row-normalized confusion matrix with counts, true classes as rows."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=120)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    bar.set_label("fraction of the true class (row-normalized); numbers are counts")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm, class_names, path: str | Path, title: str = "") -> Path:
    return save_figure(confusion_figure(cm, class_names, title), path)


def _temperature_text(t) -> str:
    if isinstance(t, int | float):
        return f"T={t:.3f}"
    return "per-class T " + "/".join(f"{v:.2f}" for v in t)


def reliability_figure(before: dict, after: dict, title: str = "", class_names=None):
    """Reliability diagrams before and after scaling, side by side: accuracy per confidence bin
    with the bin's sample count above each bar, ECE and the temperature(s) in the titles."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=120, sharey=True)
    for ax, rep, name in ((axes[0], before, "before"), (axes[1], after, "after")):
        r = rep["reliability"]
        edges = np.asarray(r["edges"])
        centers = (edges[:-1] + edges[1:]) / 2
        counts = np.asarray(r["count"])
        acc = np.where(counts > 0, r["accuracy"], np.nan)
        ax.bar(centers, acc, width=edges[1] - edges[0], edgecolor="black", alpha=0.75, label="accuracy")
        for x, a, n in zip(centers, acc, counts, strict=True):
            if n > 0:
                ax.text(x, min(a, 0.93) + 0.02, f"{int(n)}", ha="center", va="bottom", fontsize=6, rotation=90)
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        conf = np.where(counts > 0, r["confidence"], np.nan)
        ax.plot(conf, acc, "o", color="tab:red", ms=3, label="(confidence, accuracy)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("confidence (numbers: samples per bin)")
        t = rep["temperature"]
        floor = rep.get("ece_floor")
        debiased = rep.get("ece_debiased")
        noise = f" (noise alone: {floor['mean']:.4f}; debiased {debiased['value']:.4f})" if floor and debiased else ""
        ax.set_title(f"{name}: ECE {rep['ece']:.4f}{noise}, NLL {rep['nll']:.3f}\n{_temperature_text(t)}", fontsize=9)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_reliability(before: dict, after: dict, path: str | Path, title: str = "") -> Path:
    return save_figure(reliability_figure(before, after, title), path)


def training_curves_figure(history: list[dict], title: str = ""):
    """Loss and accuracy per epoch: training loss and validation NLL on the left, validation
    accuracy and macro-F1 on the right."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    epochs = [r["epoch"] for r in history]
    left.plot(epochs, [r.get("train_loss", np.nan) for r in history], "-o", ms=3, label="train loss")
    evals = [r for r in history if "val_accuracy" in r]
    ve = [r["epoch"] for r in evals]
    left.plot(ve, [r["val_nll"] for r in evals], "-o", ms=3, label="val NLL")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend(fontsize=8)
    right.plot(ve, [r["val_accuracy"] for r in evals], "-o", ms=3, label="val accuracy")
    right.plot(ve, [r["val_macro_f1"] for r in evals], "-o", ms=3, label="val macro-F1")
    if any("ema_val_accuracy" in r for r in evals):
        right.plot(ve, [r.get("ema_val_accuracy", np.nan) for r in evals], "--", label="val accuracy (EMA)")
    right.set_xlabel("epoch")
    right.set_ylabel("validation")
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    return save_figure(training_curves_figure(history, title), path)


def comparison_figure(curves: dict[str, list[dict]], best: dict[str, int | None], title: str = ""):
    """Validation accuracy and NLL per epoch of several runs on shared axes, each run's best epoch
    (the one its best.pt holds) marked with a dot; `curves[name]` is a list of {epoch, accuracy, nll}."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=120)
    for name, curve in curves.items():
        epochs = [c["epoch"] for c in curve]
        (line,) = left.plot(epochs, [c["accuracy"] for c in curve], "-", lw=1.2, label=name)
        right.plot(epochs, [np.nan if c["nll"] is None else c["nll"] for c in curve], "-", lw=1.2,
                   color=line.get_color())  # fmt: skip
        at = next((c for c in curve if c["epoch"] == best.get(name)), None)
        if at is not None:
            left.plot([at["epoch"]], [at["accuracy"]], "o", ms=5, color=line.get_color())
            if at["nll"] is not None:
                right.plot([at["epoch"]], [at["nll"]], "o", ms=5, color=line.get_color())
    # the first epochs' low accuracy / high loss would squash the part worth comparing: keep 95 % of the points
    accuracies = [c["accuracy"] for curve in curves.values() for c in curve]
    losses = [c["nll"] for curve in curves.values() for c in curve if c["nll"] is not None]
    if len(accuracies) > 20:
        left.set_ylim(bottom=float(np.percentile(accuracies, 5)))
    if len(losses) > 20:
        right.set_ylim(top=float(np.percentile(losses, 95)))
    left.set_xlabel("epoch")
    left.set_ylabel("validation accuracy (selected weights)")
    right.set_xlabel("epoch")
    right.set_ylabel("validation NLL (before temperature)")
    left.legend(fontsize=7, loc="lower right")
    fig.suptitle(title or "dots: each run's best epoch (its best.pt)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_comparison(curves: dict[str, list[dict]], best: dict[str, int | None], path: str | Path,
                    title: str = "") -> Path:  # fmt: skip
    return save_figure(comparison_figure(curves, best, title), path)
