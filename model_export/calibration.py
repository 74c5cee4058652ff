"""Calibration: expected calibration error, reliability tables, Platt and temperature scaling."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["expected_calibration_error", "platt_fit", "reliability_table", "temperature_fit"]


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.clip(np.floor(p * n_bins).astype(int), 0, n_bins - 1)


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width probability bins.

    ``sum_b |mean_predicted_b - observed_b| * count_b / n``; the last bin includes 1.0.
    """
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    bins = _bin_index(p, n_bins)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += abs(p[m].mean() - y[m].mean()) * m.sum() / len(p)
    return float(ece)


def reliability_table(y_true: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[dict[str, Any]]:
    """Reliability diagram as rows, one per NON-EMPTY equal-width bin.

    Returns
    -------
    list of dict
        ``bin_lower``, ``bin_upper``, ``mean_predicted``, ``observed`` (fraction positive),
        ``count``.
    """
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    bins = _bin_index(p, n_bins)
    rows = []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            rows.append(
                {
                    "bin_lower": round(b / n_bins, 6),
                    "bin_upper": round((b + 1) / n_bins, 6),
                    "mean_predicted": float(p[m].mean()),
                    "observed": float(y[m].mean()),
                    "count": int(m.sum()),
                }
            )
    return rows


def platt_fit(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt (1999) scaling: ``p = sigmoid(a * logit + b)`` fit by maximum likelihood.

    Uses Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` so a
    perfectly separated calibration set does not drive ``a`` to infinity.

    Returns
    -------
    tuple
        ``(a, b)``.
    """
    from scipy.optimize import minimize

    z = np.asarray(logits, dtype=float).ravel()
    yy = np.asarray(y).astype(int).ravel()
    n_pos, n_neg = int(yy.sum()), int(len(yy) - yy.sum())
    t = np.where(yy == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def nll(ab: np.ndarray) -> float:
        s = ab[0] * z + ab[1]
        return float(np.sum(np.logaddexp(0, s) - t * s))

    def grad(ab: np.ndarray) -> np.ndarray:
        s = ab[0] * z + ab[1]
        r = 1 / (1 + np.exp(-s)) - t
        return np.array([np.sum(r * z), np.sum(r)])

    res = minimize(nll, x0=np.array([1.0, 0.0]), jac=grad, method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])


def temperature_fit(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): ``p = sigmoid(logit / T)`` by maximum likelihood.

    One parameter, so it suits small calibration sets; it never changes the ranking.

    Returns
    -------
    float
        ``T`` (> 1 softens over-confident logits).
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=float).ravel()
    yy = np.asarray(y, dtype=float).ravel()

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float(np.sum(np.logaddexp(0, s) - yy * s))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))
