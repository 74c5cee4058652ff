"""Shared pieces of the offline export pipeline.

Seeds, metrics with bootstrap confidence intervals, calibration tables, threshold
selection, tf2onnx export, the Keras-vs-ONNX parity gate, plots, model cards and
the writer of a model folder (``model.onnx``, ``manifest.json``, ``card.md``,
``parity.npz``).

TensorFlow, tf2onnx and matplotlib are imported lazily inside the functions that
need them, so the metric helpers import quickly.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

SEED: int = 20261123
"""The one seed of the pipeline (splits, weight init, bootstrap)."""

DEFAULT_N_BOOT: int = 2000
PARITY_TOLERANCE: float = 1e-5
OPSET: int = 17

NOT_FOR_CLINICAL_USE_HEADING = "NOT FOR CLINICAL USE"

__all__ = [
    "DEFAULT_N_BOOT",
    "NOT_FOR_CLINICAL_USE_HEADING",
    "OPSET",
    "PARITY_TOLERANCE",
    "SEED",
    "ParityError",
    "binary_metrics",
    "bootstrap_ci",
    "choose_threshold",
    "expected_calibration_error",
    "export_onnx",
    "onnx_io",
    "parity_gate",
    "plausible_range",
    "platt_fit",
    "temperature_fit",
    "input_entries",
    "RANGE_RULE",
    "plot_calibration",
    "plot_regression",
    "plot_roc",
    "regression_metrics",
    "reliability_table",
    "render_card",
    "set_seeds",
    "sha256_file",
    "stratified_split",
    "versions",
    "write_model_folder",
]


class ParityError(RuntimeError):
    """The exported ONNX graph does not reproduce the Keras model within tolerance."""


# --- determinism ----------------------------------------------------------------------
def set_seeds(seed: int = SEED) -> None:
    """Seed Python, NumPy and Keras/TensorFlow, and ask TF for deterministic ops.

    Also clears Keras' global state (``keras.backend.clear_session``), so automatic
    layer names, and with them the ONNX bytes and sha256, do not depend on which
    models were built earlier in the same process.

    Parameters
    ----------
    seed
        The seed; defaults to :data:`SEED`.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    try:
        import keras
        import tensorflow as tf
    except ImportError:  # metrics-only use without TensorFlow
        return
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # pragma: no cover - older TF / already initialised
        pass


def stratified_split(
    y: np.ndarray, *, fractions: tuple[float, float, float] = (0.64, 0.16, 0.20), seed: int = SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split row indices into train/validation/test, stratified on ``y`` when it is discrete.

    Parameters
    ----------
    y
        Labels (stratified) or a continuous target (then stratified on its quintiles).
    fractions
        Train, validation and test fractions; must sum to 1.
    seed
        Random seed.

    Returns
    -------
    tuple of numpy.ndarray
        Sorted, disjoint index arrays ``(train, validation, test)``.
    """
    from sklearn.model_selection import train_test_split

    if not np.isclose(sum(fractions), 1.0):
        raise ValueError("fractions must sum to 1")
    y = np.asarray(y)
    strata = y
    if np.issubdtype(y.dtype, np.floating) and len(np.unique(y)) > 20:
        strata = np.digitize(y, np.quantile(y, [0.2, 0.4, 0.6, 0.8]))
    idx = np.arange(len(y))
    train_val, test = train_test_split(idx, test_size=fractions[2], stratify=strata, random_state=seed)
    val_share = fractions[1] / (fractions[0] + fractions[1])
    train, val = train_test_split(train_val, test_size=val_share, stratify=strata[train_val], random_state=seed + 1)
    return np.sort(train), np.sort(val), np.sort(test)


# --- metrics --------------------------------------------------------------------------
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


def plausible_range(train_values: np.ndarray, *, widen: float = 0.5, non_negative: bool = True) -> tuple[float, float]:
    """Training range widened by ``widen`` of its width on each side, clipped at 0 if non-negative."""
    lo, hi = float(np.min(train_values)), float(np.max(train_values))
    w = hi - lo
    lo_w, hi_w = lo - widen * w, hi + widen * w
    if non_negative:
        lo_w = max(0.0, lo_w)
    return lo_w, hi_w


# --- export and parity ------------------------------------------------------------------
def _rename_io(model_proto: Any, renames: Mapping[str, str]) -> None:
    """Rename graph inputs/outputs of an ONNX ModelProto in place (every reference)."""
    g = model_proto.graph
    for node in g.node:
        for i, n in enumerate(node.input):
            if n in renames:
                node.input[i] = renames[n]
        for i, n in enumerate(node.output):
            if n in renames:
                node.output[i] = renames[n]
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name in renames:
            vi.name = renames[vi.name]


def _stable_dim_names(model_proto: Any) -> None:
    """Replace tf2onnx's process-global ``unk__<n>`` dimension names with stable ones.

    The batch axis (axis 0 of every graph input and output) becomes ``"N"``; any other
    unnamed dynamic axis becomes ``"unk_<i>"`` in order of appearance. Without this the
    ONNX bytes (and sha256) depend on how many models were converted earlier in the process.
    """
    g = model_proto.graph
    mapping: dict[str, str] = {}
    io_names = {v.name for v in list(g.input) + list(g.output)}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_param") and d.dim_param.startswith("unk__"):
                if axis == 0 and vi.name in io_names:
                    d.dim_param = "N"
                else:
                    d.dim_param = mapping.setdefault(d.dim_param, f"unk_{len(mapping)}")


def export_onnx(
    model: Any,
    input_signature: Sequence[Any],
    path: str | os.PathLike[str],
    *,
    opset: int = OPSET,
    output_names: Sequence[str] | None = None,
) -> None:
    """Export a Keras model to ONNX with ``tf2onnx.convert.from_keras``.

    Parameters
    ----------
    model
        A built Keras model.
    input_signature
        ``tf.TensorSpec`` per input; their ``name`` become the ONNX input names
        (e.g. ``tf.TensorSpec([None, 30], tf.float32, name="features")``).
    path
        Where to write ``model.onnx``.
    opset
        ONNX opset (17).
    output_names
        Stable, meaningful ONNX output names (e.g. ``["probability"]``), in the model's
        output order. Defaults to the Keras output names.
    """
    import onnx
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=list(input_signature), opset=opset)
    if output_names is not None:
        current = [o.name for o in model_proto.graph.output]
        if len(current) != len(output_names):
            raise ValueError(f"model has {len(current)} outputs, got {len(output_names)} names")
        _rename_io(model_proto, dict(zip(current, output_names, strict=True)))
    wanted_inputs = [s.name for s in input_signature]
    got_inputs = [i.name for i in model_proto.graph.input]
    if any(w and w != g for w, g in zip(wanted_inputs, got_inputs, strict=False)):
        _rename_io(model_proto, {g: w for w, g in zip(wanted_inputs, got_inputs, strict=False) if w})
    _stable_dim_names(model_proto)
    onnx.checker.check_model(model_proto)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model_proto, str(path))


def onnx_io(path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """Names, shapes (``None`` for dynamic) and dtypes of an ONNX file's inputs and outputs."""
    import onnx
    from onnx import helper

    m = onnx.load(str(path))

    def spec(vi: Any) -> dict[str, Any]:
        t = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        dtype = str(np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)))
        return {"name": vi.name, "shape": shape, "dtype": dtype}

    inits = {i.name for i in m.graph.initializer}
    return {
        "inputs": [spec(v) for v in m.graph.input if v.name not in inits],
        "outputs": [spec(v) for v in m.graph.output],
    }


def parity_gate(
    keras_outputs: Mapping[str, np.ndarray],
    onnx_path: str | os.PathLike[str],
    feeds: Mapping[str, np.ndarray],
    *,
    tol: float = PARITY_TOLERANCE,
    rtol: float = 0.0,
) -> dict[str, Any]:
    """Run ONNX Runtime on ``feeds`` and compare with the Keras outputs.

    An element passes iff ``|onnx - keras| <= tol + rtol * |keras|`` (the
    ``numpy.allclose`` rule). With the default ``rtol=0`` this is a pure absolute
    tolerance. Outputs in raw units of magnitude ~100 need a small ``rtol``: one float32
    ulp at 256 is already 3e-5.

    Parameters
    ----------
    keras_outputs
        ``{onnx output name: Keras output array}``.
    onnx_path
        The exported model.
    feeds
        ``{onnx input name: array}`` (the held-out set).
    tol
        Absolute tolerance.
    rtol
        Relative tolerance (0 = absolute only).

    Returns
    -------
    dict
        ``{"max_abs_diff", "tolerance", "rtol", "n", "per_output": {name: max_abs_diff}}``.

    Raises
    ------
    ParityError
        If an output is missing, has another shape, is not finite, or differs beyond tolerance.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = list(keras_outputs)
    available = {o.name for o in sess.get_outputs()}
    missing = [n for n in names if n not in available]
    if missing:
        raise ParityError(f"ONNX graph lacks outputs {missing}; it has {sorted(available)}")
    got = sess.run(names, {k: np.asarray(v) for k, v in feeds.items()})
    per: dict[str, float] = {}
    failing: list[str] = []
    for name, o in zip(names, got, strict=True):
        ref = np.asarray(keras_outputs[name], dtype=np.float64)
        if o.shape != ref.shape:
            raise ParityError(f"output {name!r}: ONNX shape {o.shape} != Keras shape {ref.shape}")
        diff = np.abs(np.asarray(o, dtype=np.float64) - ref)
        per[name] = float(diff.max()) if diff.size else 0.0
        if not np.all(np.isfinite(diff)) or np.any(diff > tol + rtol * np.abs(ref)):
            failing.append(name)
    worst = max(per.values()) if per else 0.0
    n = int(len(next(iter(feeds.values())))) if feeds else 0
    if failing:
        raise ParityError(
            f"ONNX vs Keras outside tolerance (atol {tol:g}, rtol {rtol:g}) for {failing}; "
            f"max abs diff per output: {per}"
        )
    return {"max_abs_diff": worst, "tolerance": tol, "rtol": rtol, "n": n, "per_output": per}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the export stack (tensorflow, keras, tf2onnx, onnx, onnxruntime, numpy, ...)."""
    out: dict[str, str] = {}
    for dist, key in [
        ("tensorflow-cpu", "tensorflow"),
        ("tensorflow", "tensorflow"),
        ("keras", "keras"),
        ("tf2onnx", "tf2onnx"),
        ("onnx", "onnx"),
        ("onnxruntime", "onnxruntime"),
        ("numpy", "numpy"),
        ("scikit-learn", "scikit-learn"),
    ]:
        if key in out:
            continue
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


# --- plots ------------------------------------------------------------------------------
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


# --- model folder -----------------------------------------------------------------------
def write_model_folder(
    out_dir: str | os.PathLike[str],
    manifest: dict[str, Any],
    card_md: str,
    parity_arrays: Mapping[str, np.ndarray],
) -> Path:
    """Finish a model folder whose ``model.onnx`` is already in ``out_dir``.

    Fills ``manifest["onnx"]["sha256"]`` (and ``["parity"]["reference"]``), checks that
    the manifest's ONNX input/output names match the file, and writes
    ``manifest.json`` (sorted keys, indent 2), ``card.md`` and ``parity.npz``.

    Parameters
    ----------
    out_dir
        ``layers/models/<id>/<version>``.
    manifest
        The manifest (docs/manifest.md); modified in place.
    card_md
        Markdown model card.
    parity_arrays
        Inputs under ``"in:<onnx input name>"`` and Keras outputs under
        ``"out:<onnx output name>"``.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    onnx_file = out / manifest.get("onnx", {}).get("file", "model.onnx")
    if not onnx_file.is_file():
        raise FileNotFoundError(f"{onnx_file} must be exported before write_model_folder")
    bad = [k for k in parity_arrays if not (k.startswith("in:") or k.startswith("out:"))]
    if bad:
        raise ValueError(f"parity array keys must start with 'in:' or 'out:': {bad}")
    io = onnx_io(onnx_file)
    for side in ("inputs", "outputs"):
        declared = [s["name"] for s in manifest["onnx"].get(side, [])]
        actual = [s["name"] for s in io[side]]
        if declared != actual:
            raise ValueError(f"manifest onnx.{side} {declared} != ONNX file {actual}")
    in_names = {k[3:] for k in parity_arrays if k.startswith("in:")}
    out_names = {k[4:] for k in parity_arrays if k.startswith("out:")}
    if in_names != {s["name"] for s in io["inputs"]} or out_names != {s["name"] for s in io["outputs"]}:
        raise ValueError("parity arrays must cover every ONNX input and output exactly")
    manifest["onnx"]["sha256"] = sha256_file(onnx_file)
    manifest.setdefault("parity", {})["reference"] = "parity.npz"
    (out / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    (out / "card.md").write_text(card_md if card_md.endswith("\n") else card_md + "\n", encoding="utf-8")
    np.savez(out / "parity.npz", **{k: np.asarray(v) for k, v in parity_arrays.items()})  # type: ignore[arg-type]
    return out


# --- model card -------------------------------------------------------------------------
def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}" if abs(x) >= 10 ** (-nd) or x == 0 else f"{x:.2e}"
    return str(x)


def _metric_rows(metrics: Mapping[str, Any]) -> list[str]:
    rows = ["| metric | value | 95% CI |", "|---|---|---|"]
    for k, v in metrics.items():
        if isinstance(v, Mapping) and "value" in v:
            lo, hi = v.get("ci95", [None, None])
            rows.append(f"| {k} | {_fmt(v['value'])} | {_fmt(lo)} – {_fmt(hi)} |")
    return rows


def render_card(manifest: Mapping[str, Any], *, extra_sections: Mapping[str, str] | None = None) -> str:
    """Render the markdown model card of a manifest.

    Sections: intended use; NOT FOR CLINICAL USE and why; data provenance; inputs;
    outputs and threshold; metrics with 95% CIs; calibration (reliability table + ECE);
    limitations; parity; how to reproduce. ``extra_sections`` (title -> markdown) are
    added before "Limitations"; a ``"Limitations"`` entry replaces the generic text.
    """
    extra = dict(extra_sections or {})
    m = manifest
    td = m.get("training_data", {})
    out = m.get("outputs", {})
    cal = m.get("calibration", {})
    met = m.get("metrics", {})
    par = m.get("parity", {})
    onnx_ = m.get("onnx", {})
    L: list[str] = [f"# Model card: `{m['id']}` {m['version']}", ""]
    synth = "SYNTHETIC data (demo only)" if m.get("synthetic") else "real data, research use"
    L += [f"Task: **{m['task']}** ({m.get('kind', '')}). Trained on {synth}.", ""]
    L += ["## Intended use", "", str(m.get("intended_use", "")), ""]
    L += [
        f"## {NOT_FOR_CLINICAL_USE_HEADING}",
        "",
        f"**{NOT_FOR_CLINICAL_USE_HEADING}.** " + str(m.get("not_for_clinical_use", "")),
        "",
    ]
    L += ["## Training data (provenance)", ""]
    for key in ("name", "source", "citation", "license", "split"):
        if td.get(key):
            L.append(f"- **{key}**: {td[key]}")
    L.append(
        f"- **n**: total {td.get('n_total')}, train {td.get('n_train')}, validation "
        f"{td.get('n_validation')}, test {td.get('n_test')}"
    )
    L.append(f"- **synthetic**: {str(td.get('synthetic', m.get('synthetic'))).lower()}")
    L.append("")
    inputs = m.get("inputs", [])
    if inputs:
        L += [
            "## Inputs",
            "",
            f"ONNX input `{onnx_.get('inputs', [{}])[0].get('name', '')}` "
            f"takes the columns in this order, in raw units; preprocessing: "
            f"`{json.dumps(m.get('preprocessing', {}), sort_keys=True)}`.",
            "",
            "| # | name | unit | accepted range | training range (mean) | description |",
            "|---|---|---|---|---|---|",
        ]
        for i, f in enumerate(inputs):
            rng = f"{_fmt(f.get('min'))} – {_fmt(f.get('max'))}"
            if f.get("allowed"):
                rng = "one of " + ", ".join(str(a) for a in f["allowed"])
            L.append(
                f"| {i} | `{f['name']}` | {f.get('unit', '')} | {rng} | "
                f"{_fmt(f.get('train_min'))} – {_fmt(f.get('train_max'))} ({_fmt(f.get('train_mean'))}) | "
                f"{f.get('description', '')} |"
            )
        L.append("")
    L += ["## Output", ""]
    outs = ", ".join(f"`{o['name']}` {o.get('shape')}" for o in onnx_.get("outputs", []))
    L.append(f"ONNX outputs: {outs}.")
    if out.get("labels"):
        L.append(
            f"The output is the calibrated probability of **{out.get('positive_label')}** "
            f"(labels {out.get('labels')}). Label = `{out.get('positive_label')}` iff "
            f"probability >= **{_fmt(out.get('threshold'), 4)}**."
        )
        L += ["", f"Threshold rule: {out.get('threshold_rule', '')}."]
    else:
        L.append(f"Unit: {out.get('unit')}. Target: {out.get('target', '')}.")
    L.append("")
    L += [
        f"## Metrics (held-out test split, n={met.get('n_test')}, {met.get('n_bootstrap')} bootstrap "
        "resamples, 95% percentile intervals)",
        "",
    ]
    L += _metric_rows(met)
    L.append("")
    if cal and cal.get("method") == "none":
        L += ["## Calibration", "", "None: the output is not a probability (method `none`).", ""]
    elif cal:
        L += [
            "## Calibration",
            "",
            f"Method: **{cal.get('method')}**, parameters "
            f"`{json.dumps(cal.get('params', {}), sort_keys=True)}`. "
            f"ECE on the test split: {_fmt(cal.get('ece'))}.",
            "",
        ]
        rel = cal.get("reliability") or []
        if rel:
            L += [
                "Reliability table (test split, equal-width bins, empty bins omitted):",
                "",
                "| bin | mean predicted | observed | count |",
                "|---|---|---|---|",
            ]
            for r in rel:
                L.append(
                    f"| {r['bin_lower']:.1f}–{r['bin_upper']:.1f} | {_fmt(r['mean_predicted'])} | "
                    f"{_fmt(r['observed'])} | {r['count']} |"
                )
            L.append("")
    for title, body in extra.items():
        if title != "Limitations":
            L += [f"## {title}", "", body.strip(), ""]
    L += ["## Limitations", ""]
    if "Limitations" in extra:
        L.append(extra["Limitations"].strip())
    else:
        L.append(
            f"- Small dataset (n={td.get('n_total')}); the intervals above are wide and the model has not "
            "been validated on any external cohort.\n- Inputs outside the training range are not supported."
        )
    L.append("")
    if par:
        L += [
            "## Export parity",
            "",
            f"ONNX Runtime vs Keras on the held-out set (n={par.get('n')}): max abs "
            f"difference {_fmt(par.get('max_abs_diff'))}; pass rule |onnx - keras| <= "
            f"{_fmt(par.get('tolerance'))}"
            + (f" + {_fmt(par['rtol'])} x |keras|" if par.get("rtol") else "")
            + " for every element. "
            f"Reference arrays: `{par.get('reference', 'parity.npz')}`. ONNX opset {onnx_.get('opset')}, "
            f"sha256 `{onnx_.get('sha256', '(filled at write)')}`.",
            "",
        ]
    cw = m.get("created_with", {})
    L += [
        "## How to reproduce",
        "",
        "```sh",
        "make models            # = .venv-export/bin/python -m model_export --all",
        f".venv-export/bin/python -m model_export --model {m['id']}",
        "```",
        "",
        "Deterministic given the seed ("
        + str(SEED)
        + ") as far as TensorFlow allows. Built with "
        + ", ".join(f"{k} {v}" for k, v in sorted(cw.items()))
        + ".",
        "",
    ]
    return "\n".join(L)


def _short(v: float) -> float:
    """Shortest decimal that round-trips through float32 (41.599998 -> 41.6)."""
    return float(str(np.float32(v)))


def _round_out(v: float, *, down: bool, sig: int = 4) -> float:
    """Round to ``sig`` significant digits, away from the interval's inside."""
    if v == 0 or not np.isfinite(v):
        return float(v)
    scale = 10 ** (np.floor(np.log10(abs(v))) - sig + 1)
    r = (np.floor if down else np.ceil)(v / scale) * scale
    return float(f"{r:.{sig}g}")


RANGE_RULE = "training-split range widened by 50% of its width on each side, clipped at 0 for non-negative quantities"


def input_entries(
    names: Sequence[str],
    x_train: np.ndarray,
    *,
    units: Mapping[str, str],
    descriptions: Mapping[str, str],
    allowed: Mapping[str, list[float]] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    x_all: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Manifest ``inputs`` entries (raw units) with plausible and training ranges.

    ``min``/``max`` follow :data:`RANGE_RULE` unless ``bounds`` (physiological limits)
    or ``allowed`` (a discrete code list; then min/max are its extremes) say otherwise.
    If ``x_all`` is given, every value of the whole dataset must fall inside the range.
    """
    allowed = dict(allowed or {})
    bounds = dict(bounds or {})
    rows = []
    for j, name in enumerate(names):
        col = np.asarray(x_train[:, j], dtype=float)
        if name in allowed:
            lo, hi = float(min(allowed[name])), float(max(allowed[name]))
        elif name in bounds:
            lo, hi = map(float, bounds[name])
        else:
            lo, hi = plausible_range(col, non_negative=bool(col.min() >= 0))
        if x_all is not None:
            full = np.asarray(x_all[:, j], dtype=float)
            if full.min() < lo or full.max() > hi:
                raise ValueError(f"plausible range of {name} [{lo}, {hi}] rejects dataset values")
        rows.append(
            {
                "name": name,
                "dtype": "float32",
                "unit": units[name],
                "description": descriptions[name],
                "min": _round_out(lo, down=True),
                "max": _round_out(hi, down=False),
                "train_min": _short(col.min()),
                "train_max": _short(col.max()),
                "train_mean": round(float(col.mean()), 6),
                "allowed": list(allowed[name]) if name in allowed else None,
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
