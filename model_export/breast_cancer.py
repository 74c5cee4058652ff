"""``breast-cancer``: calibrated P(malignant) from the 30 WDBC fine-needle-aspirate features.

Real data (scikit-learn's bundled copy of the UCI Wisconsin Diagnostic Breast Cancer
set, 569 cases). A small Keras MLP with in-graph standardisation, temperature scaling
fitted on the validation split and baked into the graph, a validation-chosen
decision threshold, test-split metrics with bootstrap intervals, and an ONNX export
behind the parity gate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_export.calibration import expected_calibration_error, reliability_table, temperature_fit
from model_export.cards import render_card
from model_export.export import OPSET, PARITY_TOLERANCE, export_onnx, onnx_io, parity_gate, sha256_file, versions
from model_export.manifest import RANGE_RULE, input_entries, write_model_folder
from model_export.metrics import DEFAULT_N_BOOT, binary_metrics, choose_threshold
from model_export.plots import plot_calibration, plot_roc
from model_export.splits import SEED, set_seeds, stratified_split

MODEL_ID = "breast-cancer"
VERSION = "1.0.0"
LABELS = ["benign", "malignant"]
POSITIVE = "malignant"
THRESHOLD_RULE = "sensitivity>=0.95"
EPOCHS, QUICK_EPOCHS = 150, 8

log = logging.getLogger(__name__)

_BASE_UNITS = {
    "radius": (
        "image length units (the source gives no physical unit)",
        "mean distance from the nucleus centre to points on its perimeter",
    ),
    "texture": ("grey levels", "standard deviation of grey-scale values inside the nucleus"),
    "perimeter": ("image length units (no physical unit given)", "nucleus perimeter"),
    "area": ("image area units (no physical unit given)", "nucleus area"),
    "smoothness": ("dimensionless", "local variation in radius lengths"),
    "compactness": ("dimensionless", "perimeter^2 / area - 1.0"),
    "concavity": ("dimensionless", "severity of concave portions of the contour"),
    "concave_points": ("dimensionless", "number of concave portions of the contour (normalised)"),
    "symmetry": ("dimensionless", "nucleus symmetry"),
    "fractal_dimension": ("dimensionless", "'coastline approximation' - 1"),
}
_STAT = {
    "mean": "mean over the nuclei in the image",
    "error": "standard error over the nuclei in the image",
    "worst": "mean of the three largest values in the image",
}


def _degenerate_interval_note(metrics: dict[str, Any], y: np.ndarray, p: np.ndarray, threshold: float) -> str:
    """Explain percentile-bootstrap intervals that collapse to a point (no errors observed)."""
    from scipy.stats import beta

    lines = []
    for name, mask, hit in (
        ("sensitivity", y == 1, p >= threshold),
        ("specificity", y == 0, p < threshold),
    ):
        lo, hi = metrics[name]["ci95"]
        if lo == hi:
            n, k = int(mask.sum()), int((hit & mask).sum())
            cp_lo = float(beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
            cp_hi = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
            lines.append(
                f"- {name}: {k}/{n} on the test split, so every bootstrap resample gives {lo:.3f} and the "
                f"percentile interval collapses; the exact (Clopper-Pearson) 95% interval is "
                f"{cp_lo:.3f}-{cp_hi:.3f}."
            )
    return "\n".join(lines)


def feature_names() -> list[str]:
    """The 30 scikit-learn feature names with spaces as underscores, in column order."""
    from sklearn.datasets import load_breast_cancer

    return [n.replace(" ", "_") for n in load_breast_cancer().feature_names]


def _describe(name: str) -> tuple[str, str]:
    """Unit and description of one WDBC feature name (``mean_x``, ``x_error``, ``worst_x``)."""
    if name.startswith("mean_"):
        stat, base = "mean", name[len("mean_") :]
    elif name.startswith("worst_"):
        stat, base = "worst", name[len("worst_") :]
    elif name.endswith("_error"):
        stat, base = "error", name[: -len("_error")]
    else:
        raise ValueError(f"unexpected WDBC feature name {name!r}")
    unit, what = _BASE_UNITS[base]
    return unit, f"{what}; {_STAT[stat]}"


def load() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (float32, raw units), labels (1 = malignant) and feature names."""
    from sklearn.datasets import load_breast_cancer

    ds = load_breast_cancer()
    x = ds.data.astype(np.float32)
    y = (ds.target == 0).astype(np.int64)  # sklearn: 0 = malignant, 1 = benign
    return x, y, feature_names()


def split(y: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 64/16/20 train/validation/test index split."""
    return stratified_split(y, seed=seed)


def _base_model(x_train: np.ndarray) -> Any:
    import keras

    norm = keras.layers.Normalization(name="standardize")
    norm.adapt(x_train)
    inp = keras.Input((x_train.shape[1],), name="features")
    h = norm(inp)
    h = keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-3))(h)
    h = keras.layers.Dropout(0.2)(h)
    logit = keras.layers.Dense(1, name="logit")(h)
    return keras.Model(inp, logit, name="breast_cancer_logit")


@dataclass(frozen=True)
class Variant:
    """One version: the base network and its description; data, split, calibration and export are shared."""

    version: str
    created: str  # manifest "created": the day this version was first exported
    make_base: Callable[[np.ndarray], Any]  # x_train -> Keras model: features -> logit
    network: str  # the card's description of the network, up to the optimiser
    change_note: str = ""  # the card's "Changes from the live version" section (empty: none)


MLP_16 = Variant(
    version=VERSION,
    created="2026-11-23",
    make_base=_base_model,
    network="Dense(16, relu, L2 1e-3) -> Dropout(0.2) -> Dense(1) logit",
)
"""1.0.0: one hidden layer of 16."""


def _wide_model(x_train: np.ndarray) -> Any:
    import keras

    norm = keras.layers.Normalization(name="standardize")
    norm.adapt(x_train)
    inp = keras.Input((x_train.shape[1],), name="features")
    h = norm(inp)
    for i, units in enumerate((32, 16)):
        h = keras.layers.Dense(
            units, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-2), name=f"hidden_{i}"
        )(h)
        h = keras.layers.Dropout(0.3, name=f"dropout_{i}")(h)
    logit = keras.layers.Dense(1, name="logit")(h)
    return keras.Model(inp, logit, name="breast_cancer_logit")


MLP_32_16 = Variant(
    version="1.1.0",
    created="2026-11-30",
    make_base=_wide_model,
    network="Dense(32, relu, L2 1e-2) -> Dropout(0.3) -> Dense(16, relu, L2 1e-2) -> Dropout(0.3) -> Dense(1) logit",
    change_note=(
        "Candidate to replace 1.0.0 (Dense(16, L2 1e-3, dropout 0.2)): two hidden layers (32, 16), ten times "
        "the L2 penalty and dropout 0.3, on the same split, inputs, calibration method and threshold rule. "
        "It serves only when the change-control gate (`make promote`, plan `../change_control.json`, declared "
        "before training) passes; `comparison.md` beside this card holds the verdict."
    ),
)
"""1.1.0: two hidden layers (32, 16) with ten times the L2 penalty and more dropout."""


def _calibrated(base: Any, n_features: int, temperature: float) -> Any:
    """Append ``sigmoid(logit / T)`` as a frozen Dense(1) layer named ``probability``."""
    import keras

    inp = keras.Input((n_features,), name="features")
    z = base(inp, training=False)
    calib = keras.layers.Dense(
        1,
        activation="sigmoid",
        name="probability",
        kernel_initializer=keras.initializers.Constant(1.0 / temperature),
        bias_initializer=keras.initializers.Constant(0.0),
        trainable=False,
    )
    return keras.Model(inp, calib(z), name="breast_cancer")


def build(out_root: Path, *, quick: bool = False, seed: int = SEED, variant: Variant | None = None, **_: Any) -> Path:
    """Train, calibrate, evaluate, export and document the model.

    Parameters
    ----------
    out_root
        Root of the model folders; writes ``<out_root>/breast-cancer/<variant.version>/``.
    quick
        Few epochs and bootstrap resamples (tests).
    seed
        Seed of the split, the weights and the bootstrap.
    variant
        :data:`MLP_16` (1.0.0, the default) or :data:`MLP_32_16` (1.1.0).

    Returns
    -------
    pathlib.Path
        The model folder.

    Raises
    ------
    model_export.export.ParityError
        If ONNX Runtime disagrees with Keras on the test split beyond tolerance.
    """
    import keras
    import tensorflow as tf

    variant = variant or MLP_16
    set_seeds(seed)
    x, y, names = load()
    tr, va, te = split(y, seed)
    n_boot = 200 if quick else DEFAULT_N_BOOT

    base = variant.make_base(x[tr])
    base.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=20, restore_best_weights=True)
    hist = base.fit(
        x[tr],
        y[tr].astype(np.float32),
        validation_data=(x[va], y[va].astype(np.float32)),
        epochs=QUICK_EPOCHS if quick else EPOCHS,
        batch_size=32,
        shuffle=True,
        callbacks=[stop],
        verbose=0,
    )
    epochs_run = len(hist.history["loss"])

    z_val = base.predict(x[va], verbose=0).ravel()
    temperature = temperature_fit(z_val, y[va])
    model = _calibrated(base, x.shape[1], temperature)

    p_val = model.predict(x[va], verbose=0).ravel()
    threshold, rule_text = choose_threshold(y[va], p_val, THRESHOLD_RULE)

    p_test_2d = model.predict(x[te], verbose=0).astype(np.float32)
    p_test = p_test_2d.ravel()
    metrics = binary_metrics(y[te], p_test, threshold, n_boot=n_boot, seed=seed)
    z_test = base.predict(x[te], verbose=0).ravel().astype(np.float64)
    ece_uncalibrated = expected_calibration_error(y[te], 1.0 / (1.0 + np.exp(-z_test)))
    interval_note = _degenerate_interval_note(metrics, y[te], p_test, threshold)

    out = Path(out_root) / MODEL_ID / variant.version
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    export_onnx(
        model,
        [tf.TensorSpec([None, x.shape[1]], tf.float32, name="features")],
        onnx_path,
        opset=OPSET,
        output_names=["probability"],
    )
    parity = parity_gate({"probability": p_test_2d}, onnx_path, {"features": x[te]}, tol=PARITY_TOLERANCE)
    # The Keras source model stays beside the ONNX one (not shipped in the layer): the
    # benchmark measures it side by side with ONNX Runtime, and auditors can re-check parity.
    model.save(out / "model.keras")
    log.info("%s parity max abs diff %.3g (n=%d)", MODEL_ID, parity["max_abs_diff"], parity["n"])

    units = {n: _describe(n)[0] for n in names}
    descs = {n: _describe(n)[1] for n in names}
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "created": variant.created,
        "id": MODEL_ID,
        "version": variant.version,
        "task": "risk",
        "kind": "classification",
        "synthetic": False,
        "intended_use": (
            "Research and teaching demo: estimate the probability that a breast mass is malignant from "
            "30 nuclear features computed on a digitised fine-needle-aspirate image (WDBC feature set)."
        ),
        "not_for_clinical_use": (
            "Trained and tested on 569 cases from a single institution (University of Wisconsin, "
            "1990s) whose features were extracted by one specific image-analysis program; it has no "
            "external or prospective validation, no regulatory clearance, and its 95% intervals come "
            "from a held-out set of about 114 cases. Feature values produced by any other "
            "pipeline, scanner or staining protocol are out of distribution. It must not inform "
            "the diagnosis or management of any patient."
        ),
        "onnx": {"file": "model.onnx", "sha256": "", "opset": OPSET, **onnx_io(onnx_path)},
        "inputs": input_entries(names, x[tr], units=units, descriptions=descs, x_all=x),
        "preprocessing": {"standardization": "in_graph"},
        "outputs": {
            "labels": LABELS,
            "positive_label": POSITIVE,
            "threshold": round(threshold, 6),
            "threshold_rule": rule_text,
            "unit": None,
            "target": "calibrated probability that the mass is malignant (WDBC diagnosis M)",
        },
        "calibration": {
            "method": "temperature",
            "params": {
                "temperature": temperature,
                "formula": "p = sigmoid(logit / temperature)",
                "fitted_on": "validation split",
            },
            "ece": metrics["ece"]["value"],
            "ece_uncalibrated": ece_uncalibrated,
            "reliability": reliability_table(y[te], p_test),
        },
        "training_data": {
            "name": "Breast Cancer Wisconsin (Diagnostic), WDBC",
            "source": "scikit-learn sklearn.datasets.load_breast_cancer() (copy of the UCI ML repository "
            "dataset, https://archive.ics.uci.edu/dataset/17)",
            "citation": "W.N. Street, W.H. Wolberg, O.L. Mangasarian. Nuclear feature extraction for breast "
            "tumor diagnosis. IS&T/SPIE Electronic Imaging 1993, vol. 1905, pp. 861-870.",
            "license": "CC BY 4.0 (UCI Machine Learning Repository); scikit-learn copy under BSD-3-Clause",
            "n_total": int(len(y)),
            "n_train": int(len(tr)),
            "n_validation": int(len(va)),
            "n_test": int(len(te)),
            "n_positive": {
                "train": int(y[tr].sum()),
                "validation": int(y[va].sum()),
                "test": int(y[te].sum()),
            },
            "split": f"stratified on diagnosis, 64/16/20 train/validation/test, seed {seed}",
            "synthetic": False,
        },
        "metrics": {k: v for k, v in metrics.items() if k != "threshold"},
        "parity": {k: parity[k] for k in ("max_abs_diff", "tolerance", "rtol", "n")},
        "files": {"card": "card.md", "roc": "roc.png", "calibration": "calibration.png"},
        "created_with": versions(),
    }
    manifest["onnx"]["sha256"] = sha256_file(onnx_path)
    plot_roc(y[te], p_test, out / "roc.png", "breast-cancer: ROC (test split)")
    plot_calibration(y[te], p_test, out / "calibration.png", "breast-cancer: calibration (test)")

    training = (
        f"Keras MLP: Normalization (adapted on the training split, {len(tr)} cases) -> {variant.network}, "
        "Adam 1e-3, batch 32, binary cross-entropy, early "
        f"stopping on validation loss (patience 20, best weights restored; {epochs_run} epochs run). "
        f"Temperature scaling (T = {temperature:.3f}) fitted by maximum likelihood on the validation split "
        f"({len(va)} cases) is a frozen Dense(1, sigmoid) layer (weight 1/T, bias 0) at the end of the "
        "graph, so the ONNX output `probability` is already calibrated. Test ECE before calibration: "
        f"{ece_uncalibrated:.3f}; after: {metrics['ece']['value']:.3f}. Temperature (one parameter) was "
        "preferred over two-parameter Platt scaling because the calibration set is small; during "
        "development Platt scaling with Platt's smoothed targets was also tried and made the model "
        "under-confident (worse ECE and Brier)."
    )
    card = render_card(
        manifest,
        extra_sections={
            "Training": training,
            **({"Changes from the live version": variant.change_note} if variant.change_note else {}),
            **({"Note on the intervals": interval_note} if interval_note else {}),
            "Input ranges": (
                f"`min`/`max` are the accepted range (the API answers 422 outside it): the {RANGE_RULE}. "
                "Every value in the full dataset lies inside them. The source gives no physical unit for "
                "the size features (they are measured on the digitised image)."
            ),
            "Limitations": (
                "- Single-centre, 1990s data (569 cases); prevalence of malignancy here (37%) is far higher "
                "than in screening populations, so predictive values do not transfer.\n"
                "- Inputs must be WDBC features from the same image-analysis software; nothing checks "
                "that they are.\n"
                "- The threshold and the calibration were fitted on only "
                f"{len(va)} validation cases; test-set intervals (n={len(te)}) are wide.\n"
                "- No subgroup analysis is possible: the data hold no demographics.\n"
                "- Calibration is one-parameter temperature scaling fitted on 91 cases; it rescales confidence "
                "but cannot fix miscalibration that differs across the probability range."
            ),
        },
    )
    parity_arrays = {"in:features": x[te], "out:probability": p_test_2d}
    return write_model_folder(out, manifest, card, parity_arrays)


def build_1_1_0(out_root: Path, *, quick: bool = False, seed: int = SEED, **kw: Any) -> Path:
    """Build the 1.1.0 candidate (:data:`MLP_32_16`) into ``<out_root>/breast-cancer/1.1.0/``."""
    return build(out_root, quick=quick, seed=seed, variant=MLP_32_16, **kw)
