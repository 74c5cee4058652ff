"""The second versions (TensorFlow): vitals-deterioration 2.0.0 (Transformer) and breast-cancer 1.1.0.

Each is built in --quick mode through the command line's ``id@version`` keys, passes its
parity gate, keeps the live 1.0.0's input contract (so the v1 routes serve it unchanged)
and is trained on the plan's locked split's complement: its test set IS the locked split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow", reason="export tests run in .venv-export (make test)")

from model_export import __main__ as cli  # noqa: E402
from model_export import locked  # noqa: E402
from model_export.promote import CONTRACT_KEYS, INPUT_KEYS, OUTPUT_KEYS  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "layers" / "models"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("models")
    return {key: cli.build(key, out, quick=True) for key in ("vitals-deterioration@2.0.0", "breast-cancer@1.1.0")}


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("key", "version"), [("vitals-deterioration@2.0.0", "2.0.0"), ("breast-cancer@1.1.0", "1.1.0")]
)
def test_candidate_keeps_the_live_contract_and_passes_parity(built: dict[str, Path], key: str, version: str) -> None:
    folder = built[key]
    model_id = key.split("@")[0]
    assert folder.parts[-2:] == (model_id, version)
    m, live = _manifest(folder), _manifest(MODELS / model_id / "1.0.0")
    assert (m["version"], m["created"]) == (version, "2026-11-30")
    for k in CONTRACT_KEYS:
        assert m[k] == live[k], k
    assert m["onnx"]["inputs"] == live["onnx"]["inputs"]
    assert m["onnx"]["outputs"] == live["onnx"]["outputs"]
    assert [{k: f.get(k) for k in INPUT_KEYS} for f in m["inputs"]] == [
        {k: f.get(k) for k in INPUT_KEYS} for f in live["inputs"]
    ]
    assert {k: m["outputs"].get(k) for k in OUTPUT_KEYS} == {k: live["outputs"].get(k) for k in OUTPUT_KEYS}
    assert m["parity"]["max_abs_diff"] <= m["parity"]["tolerance"]
    card = (folder / "card.md").read_text()
    assert "Changes from the live version" in card and "change_control.json" in card
    # ONNX Runtime reproduces the Keras outputs recorded at export
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    with np.load(folder / "parity.npz") as ref:
        feeds = {k[3:]: ref[k] for k in ref.files if k.startswith("in:")}
        np.testing.assert_allclose(sess.run(["probability"], feeds)[0], ref["out:probability"], atol=1e-5)


def test_breast_cancer_candidate_is_tested_on_the_locked_split(built: dict[str, Path]) -> None:
    # The quick build uses the full data set and the plan's seed, so its test set is the locked split.
    plan = json.loads((MODELS / "breast-cancer" / "change_control.json").read_text())
    with np.load(built["breast-cancer@1.1.0"] / "parity.npz") as ref:
        x_test = ref["in:features"]
    locked_set = locked.load(MODELS / "breast-cancer", plan)
    np.testing.assert_array_equal(x_test, locked_set["in:features"])


def test_transformer_is_masked_and_order_aware(built: dict[str, Path]) -> None:
    folder = built["vitals-deterioration@2.0.0"]
    m = _manifest(folder)
    assert "self-attention" in m["architecture"] and "positional encoding" in m["architecture"]
    assert set(m["parity"]["per_length"]) == {"1", "12", "500"}
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    with np.load(folder / "parity.npz") as ref:
        x, mask = ref["in:observations"], ref["in:mask"]
    i = int(np.argmax((mask.sum(axis=1) >= 3) & (mask.sum(axis=1) < mask.shape[1])))
    t = int(mask[i].sum())
    # padding (mask 0) is never attended nor pooled: the padded row equals the row alone
    alone = sess.run(None, {"observations": x[i : i + 1, :t], "mask": mask[i : i + 1, :t]})[0]
    padded = sess.run(None, {"observations": x[i : i + 1], "mask": mask[i : i + 1]})[0]
    np.testing.assert_allclose(alone, padded, atol=1e-6)
    # garbage in the padded positions changes nothing either
    noisy = x[i : i + 1].copy()
    noisy[0, t:] = 1e3
    np.testing.assert_allclose(sess.run(None, {"observations": noisy, "mask": mask[i : i + 1]})[0], padded, atol=1e-6)
    # and the order of the observations matters (positional encoding + last-observation pooling)
    rev = x[i : i + 1, :t][:, ::-1].copy()
    flipped = sess.run(None, {"observations": rev, "mask": mask[i : i + 1, :t]})[0]
    assert abs(float(flipped[0, 0]) - float(alone[0, 0])) > 1e-6


@pytest.mark.parametrize("model_id", locked.DERIVABLE)
def test_locked_split_rederives_from_the_data_and_the_plan_seed(model_id: str) -> None:
    # Given the committed plan and locked_test.npz, When the split is derived again from the data set
    # with the plan's seed, Then the indices and the arrays hash to what the plan recorded.
    assert locked.check(model_id, MODELS) == []
