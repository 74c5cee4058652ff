"""Export of ``chest-xray``: two ONNX outputs (probabilities + in-graph CAM), parity, metrics, .npz input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow", reason="export tests run in .venv-export (make test)")

from medserve.registry import Registry, sha256_file  # noqa: E402
from medserve.tasks.imaging import service  # noqa: E402
from medserve.tasks.imaging.decode import DecodedImage, ImageSpec, to_model_input  # noqa: E402
from model_export import chest_xray  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chest_xray.build(tmp_path_factory.mktemp("models"), quick=True)


@pytest.fixture(scope="module")
def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def session(folder: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


def test_folder_and_manifest(folder: Path, manifest: dict) -> None:
    assert folder.name == "1.0.0" and folder.parent.name == "chest-xray"
    for name in (
        "model.onnx",
        "manifest.json",
        "card.md",
        "parity.npz",
        "roc.png",
        "calibration.png",
        "cam_examples.png",
    ):
        assert (folder / name).is_file(), name
    assert manifest["task"] == "imaging" and manifest["synthetic"] is True
    assert manifest["training_data"]["synthetic"] is True
    assert manifest["onnx"]["sha256"] == sha256_file(folder / "model.onnx")
    assert [o["name"] for o in manifest["onnx"]["outputs"]] == ["probabilities", "cam"]
    assert manifest["onnx"]["inputs"] == [{"name": "image", "shape": [None, 128, 128, 1], "dtype": "float32"}]
    image = manifest["image"]
    assert {k: image[k] for k in ("height", "width", "channels", "min_height", "min_width", "modalities")} == {
        "height": 128,
        "width": 128,
        "channels": 1,
        "min_height": 64,
        "min_width": 64,
        "modalities": ["CR", "DX"],
    }
    assert image["normalization"]
    assert manifest["outputs"]["labels"] == ["normal", "pneumonia"]
    assert 0.0 < manifest["outputs"]["threshold"] < 1.0
    for key in ("auc", "sensitivity", "specificity", "brier", "ece"):
        m = manifest["metrics"][key]
        assert m["ci95"][0] <= m["value"] <= m["ci95"][1], key
    # it learnt something even in quick mode
    assert manifest["metrics"]["auc"]["ci95"][0] > 0.5
    card = (folder / "card.md").read_text()
    assert "SYNTHETIC" in card and "NOT FOR CLINICAL USE" in card and "class activation map" in card


def test_parity_on_both_outputs(folder: Path, manifest: dict) -> None:
    ref = np.load(folder / "parity.npz")
    probs, cam = session(folder).run(["probabilities", "cam"], {"image": ref["in:image"]})
    np.testing.assert_allclose(probs, ref["out:probabilities"], atol=chest_xray.PROB_PARITY_TOLERANCE, rtol=0)
    scale = np.abs(ref["out:cam"]).max(axis=(1, 2), keepdims=True)
    assert np.all(np.abs(cam - ref["out:cam"]) <= chest_xray.CAM_PER_IMAGE_RELATIVE * scale)
    assert cam.shape == (len(ref["in:image"]), 16, 16)
    per = manifest["parity"]["per_output"]
    assert per["probabilities"]["max_abs_diff"] <= per["probabilities"]["tolerance"]
    assert per["probabilities"]["label_agreement"] == 1.0
    assert per["cam"]["max_abs_diff"] <= per["cam"]["tolerance"]
    assert per["cam"]["max_relative_to_image_range"] <= chest_xray.CAM_PER_IMAGE_RELATIVE


def test_cam_mean_is_the_log_odds(folder: Path) -> None:
    x = np.load(folder / "parity.npz")["in:image"]
    probs, cam = session(folder).run(["probabilities", "cam"], {"image": x})
    ok = probs.min(axis=1) > 1e-4  # float32 softmax saturates beyond that
    log_odds = np.log(probs[ok, 1].astype(np.float64)) - np.log(probs[ok, 0].astype(np.float64))
    np.testing.assert_allclose(cam[ok].mean(axis=(1, 2)), log_odds, atol=2e-3)
    # saturated images: the sign of the mean still gives the label
    assert np.all((cam.mean(axis=(1, 2)) > 0) == (probs[:, 1] > probs[:, 0]))


def test_graph_standardises_each_image(folder: Path) -> None:
    x = np.load(folder / "parity.npz")["in:image"][:2]
    sess = session(folder)
    a = sess.run(["probabilities"], {"image": x})[0]
    b = sess.run(["probabilities"], {"image": (x * 0.5 + 0.2).astype(np.float32)})[0]
    # invariant up to the epsilon in sqrt(var + 1e-4); without in-graph standardisation a halved
    # contrast would move these probabilities by far more
    np.testing.assert_allclose(a, b, atol=5e-3)


def test_the_library_serves_the_exported_folder(folder: Path) -> None:
    registry = Registry.load(folder.parent.parent, task="imaging")
    entry = registry.get("chest-xray", task="imaging")
    images, _ = chest_xray.synthetic_radiographs(6, seed=99)
    spec = ImageSpec.from_manifest(entry.manifest)
    for img in images:
        decoded = DecodedImage(pixels=img.astype(np.float32) / 255.0, format="png", height=128, width=128)
        result = service.predict_decoded(entry, decoded, explain=True)
        expected = session(folder).run(["probabilities"], {"image": to_model_input(decoded.pixels, spec)})[0][0]
        got = list(result["prediction"]["probabilities"].values())
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert result["heatmap"]["width"] == 128


def test_trains_on_a_medmnist_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("val", 16), ("test", 16)):
        images, labels = chest_xray.synthetic_radiographs(n, seed=int(rng.integers(1 << 30)), size=28)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    npz = tmp_path / "pneumoniamnist.npz"
    np.savez(npz, **arrays)
    out = chest_xray.build(tmp_path / "models", quick=True, npz=npz)
    m = json.loads((out / "manifest.json").read_text())
    assert m["synthetic"] is False and m["training_data"]["synthetic"] is False
    assert (m["training_data"]["n_train"], m["training_data"]["n_validation"], m["training_data"]["n_test"]) == (
        40,
        16,
        16,
    )
    assert "pneumoniamnist.npz" in m["training_data"]["name"]
    probs = session(out).run(["probabilities"], {"image": np.load(out / "parity.npz")["in:image"]})[0]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
