"""The export pipeline of the two real-data risk models, end to end in --quick mode (TensorFlow).

Run with ``.venv-export/bin/python -m pytest -m slow tests/export``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from model_export import __main__ as cli
from model_export import breast_cancer
from model_export.calibration import expected_calibration_error, platt_fit, reliability_table
from model_export.export import ParityError, export_onnx, onnx_io, parity_gate, sha256_file
from model_export.manifest import write_model_folder
from model_export.metrics import binary_metrics, bootstrap_ci, choose_threshold, regression_metrics
from model_export.splits import set_seeds

pytestmark = pytest.mark.slow

CLASSIFIER_FILES = {"model.onnx", "manifest.json", "card.md", "parity.npz", "roc.png", "calibration.png"}
REGRESSOR_FILES = {"model.onnx", "manifest.json", "card.md", "parity.npz", "predicted_vs_observed.png"}


@pytest.fixture(scope="module")
def threshold_calls() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, threshold_calls: list[dict[str, Any]]) -> dict[str, Path]:
    """Build both models once in --quick mode, spying on the threshold choice of breast-cancer."""
    out = tmp_path_factory.mktemp("models")
    real = breast_cancer.choose_threshold

    def spy(y_val: np.ndarray, p_val: np.ndarray, rule: str = "youden") -> tuple[float, str]:
        result = real(y_val, p_val, rule)
        threshold_calls.append({"y": np.array(y_val), "p": np.array(p_val), "result": result})
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(breast_cancer, "choose_threshold", spy)
        paths = {
            "breast-cancer": cli.build("breast-cancer", out, quick=True),
            "diabetes-progression": cli.build("diabetes-progression", out, quick=True),
        }
    return paths


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def _session(folder: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


# --- end to end -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_id", "files"), [("breast-cancer", CLASSIFIER_FILES), ("diabetes-progression", REGRESSOR_FILES)]
)
def test_quick_build_writes_every_artifact_and_passes_parity(
    built: dict[str, Path], model_id: str, files: set[str]
) -> None:
    folder = built[model_id]
    assert folder.parts[-2:] == (model_id, "1.0.0")
    assert files <= {p.name for p in folder.iterdir()}
    m = _manifest(folder)
    assert m["onnx"]["sha256"] == sha256_file(folder / "model.onnx")
    assert m["onnx"]["opset"] == 17
    assert m["preprocessing"] == {"standardization": "in_graph"}
    assert m["metrics"]["n_bootstrap"] == 200  # quick mode
    # The recorded Keras outputs are reproduced by ONNX Runtime on the held-out set.
    with np.load(folder / "parity.npz") as ref:
        feeds = {k[3:]: ref[k] for k in ref.files if k.startswith("in:")}
        keras_out = {k[4:]: ref[k] for k in ref.files if k.startswith("out:")}
    assert len(feeds["features"]) == m["training_data"]["n_test"] == m["parity"]["n"]
    report = parity_gate(
        keras_out, folder / "model.onnx", feeds, tol=m["parity"]["tolerance"], rtol=m["parity"]["rtol"]
    )
    assert report["max_abs_diff"] == pytest.approx(m["parity"]["max_abs_diff"])


def test_breast_cancer_manifest_names_units_and_orientation(built: dict[str, Path]) -> None:
    from sklearn.datasets import load_breast_cancer

    folder = built["breast-cancer"]
    m = _manifest(folder)
    names = [f["name"] for f in m["inputs"]]
    assert names[0] == "mean_radius" and names[-1] == "worst_fractal_dimension" and len(names) == 30
    assert m["outputs"]["labels"] == ["benign", "malignant"] and m["outputs"]["positive_label"] == "malignant"
    assert m["onnx"]["outputs"] == [{"name": "probability", "shape": [None, 1], "dtype": "float32"}]
    assert m["calibration"]["method"] == "temperature"
    assert m["calibration"]["params"]["temperature"] > 0
    # Raw units in, P(malignant) out: sklearn's target 0 (malignant) must score higher.
    ds = load_breast_cancer()
    p = _session(folder).run(["probability"], {"features": ds.data.astype(np.float32)})[0].ravel()
    assert p.min() >= 0.0 and p.max() <= 1.0
    assert p[ds.target == 0].mean() > p[ds.target == 1].mean() + 0.3
    # Every dataset value is accepted by the plausible range.
    lo = np.array([f["min"] for f in m["inputs"]])
    hi = np.array([f["max"] for f in m["inputs"]])
    assert np.all(ds.data >= lo) and np.all(ds.data <= hi)


def test_diabetes_manifest_names_units_and_output_scale(built: dict[str, Path]) -> None:
    from sklearn.datasets import load_diabetes

    folder = built["diabetes-progression"]
    m = _manifest(folder)
    assert [f["name"] for f in m["inputs"]] == ["age", "sex", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu"]
    assert next(f for f in m["inputs"] if f["name"] == "sex")["allowed"] == [1, 2]
    assert m["outputs"]["unit"] == "disease progression score (one year after baseline)"
    assert m["onnx"]["outputs"][0]["name"] == "value"
    ds = load_diabetes(scaled=False)
    pred = _session(folder).run(["value"], {"features": ds.data.astype(np.float32)})[0].ravel()
    # Output in score units (not standardised): centred near the target mean.
    assert abs(pred.mean() - ds.target.mean()) < ds.target.std()


def test_threshold_is_chosen_on_the_validation_split_only(
    built: dict[str, Path], threshold_calls: list[dict[str, Any]]
) -> None:
    # Given the split the pipeline uses
    x, y, _ = breast_cancer.load()
    tr, va, te = breast_cancer.split(y)
    assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
    # Then choose_threshold saw exactly the validation labels, once
    assert len(threshold_calls) == 1
    call = threshold_calls[0]
    np.testing.assert_array_equal(call["y"], y[va])
    assert len(call["p"]) == len(va) != len(te)
    # And the served threshold is the one chosen there
    m = _manifest(built["breast-cancer"])
    assert m["outputs"]["threshold"] == pytest.approx(call["result"][0], abs=1e-6)
    assert m["training_data"]["n_validation"] == len(va)
    assert "validation" in m["outputs"]["threshold_rule"]


def test_cli_exits_non_zero_when_a_model_fails_parity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def failing(out_root: Path, **_: Any) -> Path:
        raise ParityError("simulated")

    monkeypatch.setattr(breast_cancer, "build", failing)
    assert cli.main(["--model", "breast-cancer", "--out", str(tmp_path)]) == 1
    assert cli.main(["--list"]) == 0


# --- parity gate ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, np.ndarray]:
    import keras
    import tensorflow as tf

    set_seeds()
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    inp = keras.Input((4,), name="features")
    out = keras.layers.Dense(1, activation="sigmoid", name="probability")(keras.layers.Dense(3)(inp))
    model = keras.Model(inp, out)
    path = tmp_path_factory.mktemp("tiny") / "model.onnx"
    export_onnx(model, [tf.TensorSpec([None, 4], tf.float32, name="features")], path, output_names=["probability"])
    return model, path, x


def test_parity_gate_passes_for_the_exported_model(tiny_export: tuple[Any, Path, np.ndarray]) -> None:
    model, path, x = tiny_export
    report = parity_gate({"probability": model.predict(x, verbose=0)}, path, {"features": x})
    assert report["max_abs_diff"] <= 1e-5 and report["n"] == 50
    assert onnx_io(path)["inputs"] == [{"name": "features", "shape": [None, 4], "dtype": "float32"}]


def test_parity_gate_raises_when_weights_change_after_export(tiny_export: tuple[Any, Path, np.ndarray]) -> None:
    model, path, x = tiny_export
    layer = model.layers[-1]
    original = layer.get_weights()
    try:
        layer.set_weights([w + 0.05 for w in original])
        with pytest.raises(ParityError, match="outside tolerance"):
            parity_gate({"probability": model.predict(x, verbose=0)}, path, {"features": x})
    finally:
        layer.set_weights(original)


def test_parity_gate_tolerance_boundary_and_missing_output(tiny_export: tuple[Any, Path, np.ndarray]) -> None:
    model, path, x = tiny_export
    ref = model.predict(x, verbose=0)
    with pytest.raises(ParityError):
        parity_gate({"probability": ref + 1e-4}, path, {"features": x})
    parity_gate({"probability": ref + 1e-4}, path, {"features": x}, tol=1e-3)
    with pytest.raises(ParityError, match="lacks outputs"):
        parity_gate({"logit": ref}, path, {"features": x})


# --- metrics, thresholds, calibration ----------------------------------------------------
def _scores(n: int, rng: np.random.Generator, signal: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(size=n))))
    return y, p


def test_bootstrap_ci_contains_point_estimate_and_narrows_with_n() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    widths = []
    for n in (80, 2000):
        y, p = _scores(n, rng, signal=0.5)  # AUC ~0.75, away from the ceiling
        ci = bootstrap_ci(roc_auc_score, y, p, n_boot=500)
        lo, hi = ci["ci95"]
        assert lo <= ci["value"] <= hi
        assert ci["value"] == pytest.approx(roc_auc_score(y, p))
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def test_bootstrap_skips_resamples_lacking_a_class() -> None:
    from sklearn.metrics import roc_auc_score

    y = np.array([0, 0, 0, 0, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    ci = bootstrap_ci(roc_auc_score, y, p, n_boot=300)
    assert ci["value"] == 1.0 and np.isfinite(ci["ci95"]).all()
    with pytest.raises(ValueError, match="undefined on the full sample"):
        bootstrap_ci(roc_auc_score, np.zeros(5), p[:5], n_boot=50)
    # Defined on the full sample but on no resample: every resample is dropped -> error, not nan.
    with pytest.raises(ValueError, match="every bootstrap"):
        bootstrap_ci(lambda a, b: 1.0 if np.array_equal(b, p) else float("nan"), y, p, n_boot=20, seed=7)


def test_binary_and_regression_metrics_have_cis() -> None:
    rng = np.random.default_rng(2)
    y, p = _scores(300, rng)
    m = binary_metrics(y, p, 0.5, n_boot=200)
    for k in ("auc", "sensitivity", "specificity", "brier", "ece"):
        assert set(m[k]) == {"value", "ci95"}
    assert m["sensitivity"]["value"] == pytest.approx(np.mean(p[y == 1] >= 0.5))
    assert (m["n_test"], m["n_bootstrap"], m["threshold"]) == (300, 200, 0.5)
    t = rng.normal(100, 20, 200)
    r = regression_metrics(t, t + rng.normal(0, 5, 200), n_boot=200)
    assert 3 < r["mae"]["value"] < 5 and r["r2"]["ci95"][0] > 0.8


def test_ece_and_reliability_table() -> None:
    # p = 0.25 on four cases with one positive, p = 0.75 on four with three: perfectly calibrated.
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.25] * 4 + [0.75] * 4)
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    assert expected_calibration_error(y, 1 - p) == pytest.approx(0.5)
    rows = reliability_table(y, p)
    assert [(r["bin_lower"], r["count"], r["observed"]) for r in rows] == [(0.2, 4, 0.25), (0.7, 4, 0.75)]
    assert reliability_table(np.array([1]), np.array([1.0]))[0]["bin_upper"] == 1.0


def test_choose_threshold_rules() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    t, rule = choose_threshold(y, p, "youden")
    pred = p >= t
    assert "Youden" in rule
    assert (pred == (y == 1)).sum() == 7  # best achievable on this toy set
    t95, rule95 = choose_threshold(y, p, "sensitivity>=0.95")
    assert np.all(p[y == 1] >= t95) and t95 > 0.3 and "sensitivity >= 0.95" in rule95
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(np.ones(4), p[:4])
    with pytest.raises(ValueError, match="unknown threshold rule"):
        choose_threshold(y, p, "f1")


def test_platt_fit_recovers_known_parameters() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))).astype(int)
    a, b = platt_fit(z, y)
    assert a == pytest.approx(0.5, abs=0.08) and b == pytest.approx(-1.0, abs=0.15)


def test_write_model_folder_refuses_incomplete_parity_arrays(
    tiny_export: tuple[Any, Path, np.ndarray], tmp_path: Path
) -> None:
    _, path, x = tiny_export
    (tmp_path / "model.onnx").write_bytes(path.read_bytes())
    manifest = {"onnx": {"file": "model.onnx", **onnx_io(path)}}
    with pytest.raises(ValueError, match="cover every ONNX input and output"):
        write_model_folder(tmp_path, manifest, "card", {"in:features": x})
    with pytest.raises(ValueError, match="must start with"):
        write_model_folder(tmp_path, manifest, "card", {"x": x})
    out = write_model_folder(
        tmp_path, manifest, "card", {"in:features": x, "out:probability": np.zeros((50, 1), np.float32)}
    )
    written = json.loads((out / "manifest.json").read_text())
    assert written["onnx"]["sha256"] == sha256_file(out / "model.onnx")
