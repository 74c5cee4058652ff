"""``diabetes-progression``: one-year disease-progression score from ten baseline measurements.

Real data (scikit-learn's bundled diabetes set of Efron et al. 2004, 442 patients,
``load_diabetes(scaled=False)``: raw units). A small Keras MLP regressor with in-graph
standardisation of the inputs and in-graph de-standardisation of the output, test-split
MAE and R² with bootstrap intervals, and an ONNX export behind the parity gate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from model_export.cards import render_card
from model_export.export import OPSET, PARITY_TOLERANCE, export_onnx, onnx_io, parity_gate, sha256_file, versions
from model_export.manifest import RANGE_RULE, input_entries, write_model_folder
from model_export.metrics import DEFAULT_N_BOOT, regression_metrics
from model_export.plots import plot_regression
from model_export.splits import SEED, set_seeds, stratified_split

MODEL_ID = "diabetes-progression"
VERSION = "1.0.0"
CREATED = "2026-11-23"  # manifest "created": the day this version was first exported
UNIT = "disease progression score (one year after baseline)"
EPOCHS, QUICK_EPOCHS = 300, 8
PARITY_RTOL = 1e-6

#: sklearn column -> served name, unit, description (see the card for the evidence on units).
FEATURES: list[tuple[str, str, str, str]] = [
    ("age", "age", "years", "age at baseline"),
    (
        "sex",
        "sex",
        "code (1 or 2)",
        "sex, coded 1/2 as in the source; the source does not say which is which",
    ),
    ("bmi", "bmi", "kg/m²", "body mass index"),
    (
        "bp",
        "bp",
        "mmHg",
        "average blood pressure (the source says 'average'; mean arterial pressure is the usual reading)",
    ),
    ("s1", "tc", "mg/dL", "total serum cholesterol"),
    ("s2", "ldl", "mg/dL", "low-density lipoprotein cholesterol"),
    ("s3", "hdl", "mg/dL", "high-density lipoprotein cholesterol"),
    ("s4", "tch", "ratio", "total cholesterol / HDL (ratio, rounded in the source)"),
    ("s5", "ltg", "ln(mg/dL)", "natural log of serum triglycerides (mg/dL)"),
    ("s6", "glu", "mg/dL", "blood glucose"),
]

#: Physiological overrides of the range rule.
BOUNDS: dict[str, tuple[float, float]] = {"age": (18.0, 110.0)}
ALLOWED: dict[str, list[float]] = {"sex": [1, 2]}

log = logging.getLogger(__name__)


def feature_names() -> list[str]:
    """Served input names in ONNX column order."""
    return [f[1] for f in FEATURES]


def load() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (float32, raw units), target (float32) and served feature names."""
    from sklearn.datasets import load_diabetes

    ds = load_diabetes(scaled=False)
    if list(ds.feature_names) != [f[0] for f in FEATURES]:
        raise RuntimeError(f"unexpected sklearn diabetes columns {ds.feature_names}")
    return ds.data.astype(np.float32), ds.target.astype(np.float32), feature_names()


def split(y: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64/16/20 train/validation/test split, stratified on target quintiles."""
    return stratified_split(y, seed=seed)


def _model(x_train: np.ndarray, y_train: np.ndarray) -> Any:
    import keras

    norm = keras.layers.Normalization(name="standardize")
    norm.adapt(x_train)
    mu, sd = float(np.mean(y_train)), float(np.std(y_train))
    inp = keras.Input((x_train.shape[1],), name="features")
    h = norm(inp)
    h = keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-3))(h)
    h = keras.layers.Dense(1, name="z")(h)
    out = keras.layers.Rescaling(scale=sd, offset=mu, name="value")(h)  # back to score units
    return keras.Model(inp, out, name="diabetes_progression")


def build(out_root: Path, *, quick: bool = False, seed: int = SEED, **_: Any) -> Path:
    """Train, evaluate, export and document the model.

    Parameters
    ----------
    out_root
        Root of the model folders; writes ``<out_root>/diabetes-progression/1.0.0/``.
    quick
        Few epochs and bootstrap resamples (tests).
    seed
        Seed of the split, the weights and the bootstrap.

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

    set_seeds(seed)
    x, y, names = load()
    tr, va, te = split(y, seed)
    n_boot = 200 if quick else DEFAULT_N_BOOT
    mu, sd = float(np.mean(y[tr])), float(np.std(y[tr]))

    model = _model(x[tr], y[tr])
    # Loss on the standardised target (MSE / sd²) keeps the learning rate scale-free.
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=lambda t, p: keras.ops.mean(keras.ops.square((t - p) / sd)),
        metrics=["mae"],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=30, restore_best_weights=True)
    hist = model.fit(
        x[tr],
        y[tr],
        validation_data=(x[va], y[va]),
        epochs=QUICK_EPOCHS if quick else EPOCHS,
        batch_size=32,
        shuffle=True,
        callbacks=[stop],
        verbose=0,
    )
    epochs_run = len(hist.history["loss"])

    pred_2d = model.predict(x[te], verbose=0).astype(np.float32)
    metrics = regression_metrics(y[te], pred_2d.ravel(), n_boot=n_boot, seed=seed)
    baseline_mae = float(np.mean(np.abs(y[te] - mu)))

    out = Path(out_root) / MODEL_ID / VERSION
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    export_onnx(
        model,
        [tf.TensorSpec([None, x.shape[1]], tf.float32, name="features")],
        onnx_path,
        opset=OPSET,
        output_names=["value"],
    )
    # Scores are O(100): one float32 ulp at 256 is 3e-5, so an absolute 1e-5 alone cannot hold;
    # add a relative term of ~8 float32 epsilons (|diff| <= 1e-5 + 1e-6 * |keras|).
    parity = parity_gate({"value": pred_2d}, onnx_path, {"features": x[te]}, tol=PARITY_TOLERANCE, rtol=PARITY_RTOL)
    log.info("%s parity max abs diff %.3g (n=%d)", MODEL_ID, parity["max_abs_diff"], parity["n"])

    manifest: dict[str, Any] = {
        "schema_version": 1,
        "created": CREATED,
        "id": MODEL_ID,
        "version": VERSION,
        "task": "risk",
        "kind": "regression",
        "synthetic": False,
        "intended_use": (
            "Research and teaching demo: predict the one-year disease-progression score of the Efron et al. "
            "(2004) diabetes cohort from ten baseline measurements in raw clinical units."
        ),
        "not_for_clinical_use": (
            "The target is a study-specific 'quantitative measure of disease progression' whose exact "
            "definition is not published with the data; the model was trained on 282 patients of one "
            "cohort, explains only part of the variance (see R²), has no external validation and no "
            "regulatory clearance, and some input units are inferred rather than documented. It must not "
            "inform the care of any patient."
        ),
        "onnx": {"file": "model.onnx", "sha256": "", "opset": OPSET, **onnx_io(onnx_path)},
        "inputs": input_entries(
            names,
            x[tr],
            units={f[1]: f[2] for f in FEATURES},
            descriptions={f[1]: f[3] for f in FEATURES},
            allowed=ALLOWED,
            bounds=BOUNDS,
            x_all=x,
        ),
        "preprocessing": {"standardization": "in_graph"},
        "outputs": {
            "unit": UNIT,
            "target": "quantitative measure of diabetes disease progression one year after baseline "
            f"(observed range in the data {float(y.min()):g}-{float(y.max()):g})",
        },
        "calibration": {"method": "none", "params": {}, "ece": None, "reliability": []},
        "training_data": {
            "name": "Diabetes (Efron, Hastie, Johnstone, Tibshirani 2004)",
            "source": "scikit-learn sklearn.datasets.load_diabetes(scaled=False) (original: "
            "https://www4.stat.ncsu.edu/~boos/var.select/diabetes.html)",
            "citation": "B. Efron, T. Hastie, I. Johnstone, R. Tibshirani. Least Angle Regression. "
            "Annals of Statistics 32(2):407-499, 2004.",
            "license": "distributed with scikit-learn (BSD-3-Clause); original data published by the "
            "authors for research use without a stated licence",
            "n_total": int(len(y)),
            "n_train": int(len(tr)),
            "n_validation": int(len(va)),
            "n_test": int(len(te)),
            "split": f"stratified on target quintiles, 64/16/20 train/validation/test, seed {seed}",
            "synthetic": False,
        },
        "metrics": metrics,
        "parity": {k: parity[k] for k in ("max_abs_diff", "tolerance", "rtol", "n")},
        "files": {"card": "card.md", "predicted_vs_observed": "predicted_vs_observed.png"},
        "created_with": versions(),
    }
    manifest["onnx"]["sha256"] = sha256_file(onnx_path)
    plot_regression(y[te], pred_2d, out / "predicted_vs_observed.png", "diabetes-progression (test split)", "score")

    card = render_card(
        manifest,
        extra_sections={
            "Training": (
                f"Keras MLP: Normalization (adapted on the training split, {len(tr)} patients) -> Dense(16, "
                "relu, L2 1e-3) -> Dense(1) -> Rescaling back to score units (training mean "
                f"{mu:.1f}, SD {sd:.1f}), so the ONNX output `value` is the score itself. Adam 3e-3, batch "
                "32, MSE on the standardised target, early stopping on validation loss (patience 30, best "
                f"weights restored; {epochs_run} epochs run). Reference: predicting the training mean gives "
                f"test MAE {baseline_mae:.1f}."
            ),
            "Units and their evidence": (
                "The source (Efron et al. 2004; scikit-learn `load_diabetes().DESCR`) names the variables "
                "but does not state units. What we serve, and why:\n\n"
                "- `age` years, `bmi` kg/m²: stated by name, ranges 19-79 and 18-42.2 fit.\n"
                "- `sex`: coded 1/2 exactly as in the source; which code is female is NOT documented.\n"
                "- `bp`: 'average blood pressure', range 62-133; read as mean arterial pressure in mmHg "
                "(an assumption: the source does not say how it was averaged).\n"
                "- `tc`, `ldl`, `hdl` in mg/dL and `ltg` = natural log of triglycerides in mg/dL: in this "
                "data `ldl` equals `tc - hdl - exp(ltg)/5` to within 0.002 (the Friedewald formula in "
                "mg/dL), which confirms these units; scikit-learn only says 'possibly log of serum "
                "triglycerides'.\n"
                "- `tch`: total cholesterol / HDL; it tracks `tc/hdl` (correlation 0.98) but is rounded, "
                "often to integers, in the source.\n"
                "- `glu`: blood sugar in mg/dL (range 58-124); whether fasting is not documented."
            ),
            "Input ranges": (
                f"`min`/`max` are the accepted range (the API answers 422 outside it): the {RANGE_RULE}; "
                "except `age`, limited to adults 18-110 years (the cohort is adult), and `sex`, which must "
                "be 1 or 2. Every value in the full dataset lies inside them."
            ),
            "Limitations": (
                f"- Small single cohort ({len(y)} patients, {len(te)} in the test split): wide intervals.\n"
                "- The outcome's definition and the cohort's recruitment are not published with the data.\n"
                "- Several units are inferred (see above); `sex` coding is unknown.\n"
                "- No uncertainty is returned per prediction; the test MAE above is the typical error.\n"
                "- No demographic subgroup analysis was possible beyond the 1/2 sex code."
            ),
        },
    )
    parity_arrays = {"in:features": x[te], "out:value": pred_2d}
    return write_model_folder(out, manifest, card, parity_arrays)
