"""Small deterministic PNG plots: ROC, reliability diagram, predicted vs observed (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from model_export.calibration import expected_calibration_error, reliability_table
from model_export.splits import SEED

__all__ = ["plot_calibration", "plot_regression", "plot_roc"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = str(SEED)
    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    _pyplot().close(fig)


def plot_roc(y_true: np.ndarray, p: np.ndarray, path: str | os.PathLike[str], title: str) -> None:
    """Write a small ROC-curve PNG (test split) with its AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fpr, tpr, _ = roc_curve(y_true, p)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {roc_auc_score(y_true, p):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_calibration(
    y_true: np.ndarray, p: np.ndarray, path: str | os.PathLike[str], title: str, n_bins: int = 10
) -> None:
    """Write a small reliability-diagram PNG (marker size ~ bin count)."""
    plt = _pyplot()
    rows = reliability_table(y_true, p, n_bins)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    xs, ys = [r["mean_predicted"] for r in rows], [r["observed"] for r in rows]
    ax.plot(xs, ys, lw=1.2, label="model (marker area ~ bin count)")
    ax.scatter(xs, ys, s=[12 + 4 * r["count"] for r in rows], alpha=0.6, zorder=3)
    ece = expected_calibration_error(y_true, p, n_bins)
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency", title=f"{title}\nECE {ece:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.05))
    ax.legend(loc="upper left", fontsize=7)
    _save(fig, path)


def plot_regression(
    y_true: np.ndarray, y_pred: np.ndarray, path: str | os.PathLike[str], title: str, unit: str = ""
) -> None:
    """Write a small predicted-vs-observed PNG with the identity line."""
    plt = _pyplot()
    y, yp = np.ravel(y_true), np.ravel(y_pred)
    lo, hi = float(min(y.min(), yp.min())), float(max(y.max(), yp.max()))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(y, yp, s=10, alpha=0.7)
    ax.plot([lo, hi], [lo, hi], ls="--", c="grey", lw=1)
    ax.set(xlabel=f"observed {unit}".strip(), ylabel=f"predicted {unit}".strip(), title=title)
    _save(fig, path)
