"""Metrics with 95% percentile-bootstrap intervals and decision-threshold selection.

scikit-learn is imported inside the functions that need it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from model_export.calibration import expected_calibration_error
from model_export.splits import SEED

DEFAULT_N_BOOT: int = 2000
"""Bootstrap resamples of every reported interval."""

__all__ = ["DEFAULT_N_BOOT", "binary_metrics", "bootstrap_ci", "choose_threshold", "regression_metrics"]


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = SEED,
) -> dict[str, Any]:
    """Point estimate and 95% percentile-bootstrap interval of ``metric``.

    Resamples on which the metric is undefined (it raises ``ValueError`` or returns a
    non-finite value, e.g. AUC on a resample lacking one class) are skipped.

    Parameters
    ----------
    metric
        ``metric(y_true, y_pred) -> float``.
    y_true, y_pred
        Paired arrays of equal length.
    n_boot
        Number of bootstrap resamples.
    seed
        Seed of the resampling generator.

    Returns
    -------
    dict
        ``{"value": float, "ci95": [lo, hi]}``.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if len(y_true) != len(y_pred) or len(y_true) == 0:
        raise ValueError("y_true and y_pred must be non-empty and of equal length")
    with warnings.catch_warnings():
        # sklearn warns (and returns nan) for AUC on a resample holding one class: skipped below.
        warnings.simplefilter("ignore")
        value = float(metric(y_true, y_pred))
        if not np.isfinite(value):
            raise ValueError("metric undefined on the full sample")
        rng = np.random.default_rng(seed)
        n = len(y_true)
        stats: list[float] = []
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            try:
                s = float(metric(y_true[idx], y_pred[idx]))
            except ValueError:
                continue
            if np.isfinite(s):
                stats.append(s)
    if not stats:
        raise ValueError("metric undefined on every bootstrap resample")
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return {"value": value, "ci95": [float(lo), float(hi)]}


def _sensitivity_at(threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
    def sens(y: np.ndarray, p: np.ndarray) -> float:
        pos = y == 1
        return float(np.mean(p[pos] >= threshold)) if pos.any() else float("nan")

    return sens


def _specificity_at(threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
    def spec(y: np.ndarray, p: np.ndarray) -> float:
        neg = y == 0
        return float(np.mean(p[neg] < threshold)) if neg.any() else float("nan")

    return spec


def binary_metrics(
    y_true: np.ndarray,
    p: np.ndarray,
    threshold: float,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = SEED,
) -> dict[str, Any]:
    """AUC, sensitivity, specificity (at ``threshold``), Brier and ECE with 95% bootstrap CIs.

    Parameters
    ----------
    y_true
        0/1 labels, 1 = positive class.
    p
        Predicted probability of the positive class.
    threshold
        Positive iff ``p >= threshold``.

    Returns
    -------
    dict
        ``{"auc", "sensitivity", "specificity", "brier", "ece"}`` each ``{"value", "ci95"}``,
        plus ``"n_test"``, ``"n_bootstrap"`` and ``"threshold"``.
    """
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(p, dtype=float).ravel()
    fns: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "auc": lambda a, b: float(roc_auc_score(a, b)),
        "sensitivity": _sensitivity_at(threshold),
        "specificity": _specificity_at(threshold),
        "brier": lambda a, b: float(brier_score_loss(a, b)),
        "ece": expected_calibration_error,
    }
    out: dict[str, Any] = {k: bootstrap_ci(f, y, p, n_boot=n_boot, seed=seed) for k, f in fns.items()}
    out.update({"n_test": int(len(y)), "n_bootstrap": int(n_boot), "threshold": float(threshold)})
    return out


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, *, n_boot: int = DEFAULT_N_BOOT, seed: int = SEED
) -> dict[str, Any]:
    """MAE and R² with 95% bootstrap CIs.

    Returns
    -------
    dict
        ``{"mae", "r2"}`` each ``{"value", "ci95"}``, plus ``"n_test"`` and ``"n_bootstrap"``.
    """
    from sklearn.metrics import mean_absolute_error, r2_score

    y = np.asarray(y_true, dtype=float).ravel()
    yp = np.asarray(y_pred, dtype=float).ravel()
    out: dict[str, Any] = {
        "mae": bootstrap_ci(lambda a, b: float(mean_absolute_error(a, b)), y, yp, n_boot=n_boot, seed=seed),
        "r2": bootstrap_ci(lambda a, b: float(r2_score(a, b)), y, yp, n_boot=n_boot, seed=seed),
    }
    out.update({"n_test": int(len(y)), "n_bootstrap": int(n_boot)})
    return out


def choose_threshold(y_val: np.ndarray, p_val: np.ndarray, rule: str = "youden") -> tuple[float, str]:
    """Choose a decision threshold on VALIDATION data.

    Parameters
    ----------
    y_val
        0/1 validation labels.
    p_val
        Validation probabilities of the positive class.
    rule
        ``"youden"``: maximise sensitivity + specificity - 1; or ``"sensitivity>=X"``
        (e.g. ``"sensitivity>=0.95"``): the highest threshold whose validation
        sensitivity is at least X (sensitivity-first, for missed-cancer-averse use).
        Ties go to the higher threshold. The threshold is placed halfway between the
        chosen validation score and the next lower one, so it does not sit on a
        training point.

    Returns
    -------
    tuple
        ``(threshold, human-readable rule)``; label = positive iff ``p >= threshold``.
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(y_val).astype(int).ravel()
    p = np.asarray(p_val, dtype=float).ravel()
    if not (y == 1).any() or not (y == 0).any():
        raise ValueError("validation data must contain both classes")
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    finite = np.isfinite(thr)
    fpr, tpr, thr = fpr[finite], tpr[finite], thr[finite]
    if rule == "youden":
        j = tpr - fpr
        i = int(np.flatnonzero(j == j.max())[0])  # thresholds descend: first = highest
        desc = (
            f"Youden's J (max sensitivity + specificity - 1) on the validation split "
            f"(n={len(y)}): J={j[i]:.3f}, validation sensitivity {tpr[i]:.3f}, "
            f"specificity {1 - fpr[i]:.3f}"
        )
    elif rule.startswith("sensitivity>="):
        target = float(rule.split(">=", 1)[1])
        ok = np.flatnonzero(tpr >= target - 1e-12)
        i = int(ok[0])
        desc = (
            f"highest threshold with validation sensitivity >= {target:g} on the validation split "
            f"(n={len(y)}): validation sensitivity {tpr[i]:.3f}, specificity {1 - fpr[i]:.3f}"
        )
    else:
        raise ValueError(f"unknown threshold rule {rule!r}")
    chosen = float(thr[i])
    lower = p[p < chosen]
    value = float((chosen + lower.max()) / 2) if lower.size else chosen
    return value, desc + "; threshold set midway to the next lower validation score"
