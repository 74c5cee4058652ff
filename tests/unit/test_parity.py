"""Every shipped model folder is intact and ONNX Runtime reproduces Keras (no TensorFlow needed).

Covers each ``layers/models/<id>/<version>/`` that has a ``manifest.json``, so a new
model folder is checked without touching this file. The reference outputs were
recorded from Keras at export time in ``parity.npz`` (inputs under ``in:<onnx input>``,
Keras outputs under ``out:<onnx output>``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS_ROOT = REPO / "layers" / "models"
MODEL_DIRS = sorted(p.parent for p in MODELS_ROOT.glob("*/*/manifest.json"))
SHIPPED = {"breast-cancer", "diabetes-progression"}

REQUIRED_KEYS = {
    "schema_version",
    "id",
    "version",
    "task",
    "kind",
    "synthetic",
    "intended_use",
    "not_for_clinical_use",
    "onnx",
    "preprocessing",
    "outputs",
    "calibration",
    "training_data",
    "metrics",
    "parity",
    "files",
    "created_with",
    "created",
}
ONNX_KEYS = {"file", "sha256", "opset", "inputs", "outputs"}
INPUT_KEYS = {"name", "dtype", "unit", "description", "min", "max", "train_min", "train_max", "train_mean"}
TRAINING_DATA_KEYS = {
    "name",
    "source",
    "license",
    "n_total",
    "n_train",
    "n_validation",
    "n_test",
    "synthetic",
}


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file (independent of the export package and of the registry)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def ids(folder: Path) -> str:
    return f"{folder.parent.name}/{folder.name}"


def test_the_shipped_models_are_present() -> None:
    # Given the repository, When listing model folders, Then both real-data risk models are there.
    found = {d.parent.name for d in MODEL_DIRS}
    assert found >= SHIPPED


@pytest.mark.parametrize("folder", MODEL_DIRS, ids=ids)
def test_manifest_sha256_matches_model_file(folder: Path) -> None:
    m = load_manifest(folder)
    assert sha256_of(folder / m["onnx"]["file"]) == m["onnx"]["sha256"]


@pytest.mark.parametrize("folder", MODEL_DIRS, ids=ids)
def test_manifest_has_required_keys(folder: Path) -> None:
    m = load_manifest(folder)
    assert REQUIRED_KEYS <= m.keys(), REQUIRED_KEYS - m.keys()
    assert ONNX_KEYS <= m["onnx"].keys()
    assert (m["id"], m["version"]) == (folder.parent.name, folder.name)
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", m["id"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", m["version"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", m["created"])
    assert m["task"] in {"risk", "imaging", "vitals"}
    assert isinstance(m["synthetic"], bool)
    assert m["synthetic"] == m["training_data"]["synthetic"]
    assert TRAINING_DATA_KEYS <= m["training_data"].keys()
    td = m["training_data"]
    assert td["n_train"] + td["n_validation"] + td["n_test"] == td["n_total"]
    assert {"max_abs_diff", "tolerance", "n"} <= m["parity"].keys()
    assert m["parity"]["max_abs_diff"] <= m["parity"]["tolerance"] or m["parity"].get("rtol", 0) > 0
    for name in m["files"].values():
        assert (folder / name).is_file(), name
    if m["task"] == "risk":
        assert m["preprocessing"]["standardization"] == "in_graph"
        assert m["inputs"], "risk models list their features"
        for f in m["inputs"]:
            assert INPUT_KEYS <= f.keys(), (f["name"], INPUT_KEYS - f.keys())
            assert f["min"] <= f["train_min"] <= f["train_mean"] <= f["train_max"] <= f["max"], f["name"]
        width = m["onnx"]["inputs"][0]["shape"][-1]
        assert width == len(m["inputs"])
    if m["kind"] == "classification":
        out = m["outputs"]
        assert out["positive_label"] in out["labels"]
        assert 0.0 <= out["threshold"] <= 1.0
        assert out["threshold_rule"]
    for key, metric in m["metrics"].items():
        if isinstance(metric, dict):
            lo, hi = metric["ci95"]
            assert np.isfinite([metric["value"], lo, hi]).all(), key
            assert lo <= hi, key


@pytest.mark.parametrize("folder", MODEL_DIRS, ids=ids)
def test_onnxruntime_reproduces_recorded_keras_outputs(folder: Path) -> None:
    # Given the exported graph and the Keras outputs recorded at export
    m = load_manifest(folder)
    sess = ort.InferenceSession(str(folder / m["onnx"]["file"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [i["name"] for i in m["onnx"]["inputs"]]
    assert [o.name for o in sess.get_outputs()] == [o["name"] for o in m["onnx"]["outputs"]]
    with np.load(folder / m["parity"].get("reference", "parity.npz")) as ref:
        feeds = {k[3:]: ref[k] for k in ref.files if k.startswith("in:")}
        expected = {k[4:]: ref[k] for k in ref.files if k.startswith("out:")}
    assert set(feeds) == {i.name for i in sess.get_inputs()}
    assert expected, "parity.npz holds no outputs"
    # (large inputs, e.g. images, store a subset of the gated set: `stored_samples`)
    assert len(next(iter(feeds.values()))) == m["parity"].get("stored_samples", m["parity"]["n"])
    # When ONNX Runtime runs the recorded inputs
    got = dict(zip(expected, sess.run(list(expected), feeds), strict=True))
    # Then every output matches within the manifest's tolerance (per output where it states one)
    per_output = m["parity"].get("per_output", {})
    for name, ref_out in expected.items():
        atol = per_output.get(name, {}).get("tolerance", m["parity"]["tolerance"])
        rtol = m["parity"].get("rtol", 0.0)
        assert got[name].shape == ref_out.shape, name
        np.testing.assert_allclose(got[name], ref_out, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("folder", MODEL_DIRS, ids=ids)
def test_card_states_use_limits_metrics_and_limitations(folder: Path) -> None:
    m = load_manifest(folder)
    card = (folder / m["files"].get("card", "card.md")).read_text(encoding="utf-8")
    low = card.lower()
    assert "not for clinical use" in low
    assert "intended use" in low
    assert m["intended_use"] in card
    assert "limitations" in low
    assert "95%" in card
    for key, metric in m["metrics"].items():
        if isinstance(metric, dict):
            row = re.search(rf"^\|\s*{re.escape(key)}\s*\|(.+)$", card, flags=re.MULTILINE)
            assert row, f"metric {key} missing from the card's table"
            v = metric["value"]
            assert f"{v:.3f}" in row.group(1) or f"{v:.2e}" in row.group(1), key


def test_one_changed_byte_fails_the_sha_check(tmp_path: Path) -> None:
    # Given a copy of a shipped model folder
    src = MODELS_ROOT / "breast-cancer" / "1.0.0"
    dst = tmp_path / "breast-cancer" / "1.0.0"
    shutil.copytree(src, dst)
    m = load_manifest(dst)
    onnx_file = dst / m["onnx"]["file"]
    assert sha256_of(onnx_file) == m["onnx"]["sha256"]
    # When one byte of the ONNX file changes
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx_file.write_bytes(bytes(data))
    # Then the file no longer matches its manifest
    assert sha256_of(onnx_file) != m["onnx"]["sha256"]
