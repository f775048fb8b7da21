"""PNG plots people would rather look at than read (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fertrain.atomic import atomic_path


def plot_confusion_matrix(cm, class_names, path: str | Path, title: str = "") -> Path:
    """Row-normalized confusion matrix with counts, true classes as rows."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=120)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def plot_reliability(before: dict, after: dict, path: str | Path, title: str = "") -> Path:
    """Reliability diagrams before and after scaling, side by side, with ECE in the titles."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), dpi=120, sharey=True)
    for ax, rep, name in ((axes[0], before, "before"), (axes[1], after, "after")):
        r = rep["reliability"]
        edges = np.asarray(r["edges"])
        centers = (edges[:-1] + edges[1:]) / 2
        counts = np.asarray(r["count"])
        acc = np.where(counts > 0, r["accuracy"], np.nan)
        ax.bar(centers, acc, width=edges[1] - edges[0], edgecolor="black", alpha=0.75, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        conf = np.where(counts > 0, r["confidence"], np.nan)
        ax.plot(conf, acc, "o", color="tab:red", ms=3, label="(confidence, accuracy)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        t = rep["temperature"]
        t_text = f"T={t:.3f}" if isinstance(t, float) else "per-class T"
        ax.set_title(f"{name}: ECE {rep['ece']:.4f}, NLL {rep['nll']:.3f} ({t_text})")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
