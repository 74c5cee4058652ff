"""Open Inference Protocol v2 over HTTP with a real protocol client (tritonclient), against `make run`.

Given the local runner, when tritonclient talks to it in JSON and in binary mode,
then health, metadata and inference work for one model of each task, and the
answer for the same numbers equals the v1 route's.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from medserve.tasks.imaging.decode import ImageSpec, decode_image, to_model_input
from medserve.tasks.vitals.features import encode
from medserve.tasks.vitals.validation import parse_time
from tests.conftest import MODELS, load_event

BINARY_HEADERS = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
RISK = json.loads(load_event("risk_breast_cancer")["body"])
VITALS = json.loads(load_event("vitals_predict")["body"])
PNG = base64.b64decode(load_event("imaging_png")["body"])


def manifest(model_id: str) -> dict[str, Any]:
    return json.loads((MODELS / model_id / "1.0.0" / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(url=server.removeprefix("http://"))
    yield c
    c.close()


def _tensors(model_id: str) -> tuple[dict[str, np.ndarray], str]:
    """The model's input tensors for the bundled example request, and the v1 request body (JSON)."""
    m = manifest(model_id)
    if m["task"] == "risk":
        names = [i["name"] for i in m["inputs"]]
        x = np.array([[row[n] for n in names] for row in RISK["instances"]], dtype=np.float32)
        return {"features": x}, json.dumps(RISK)
    if m["task"] == "vitals":
        obs = VITALS["observations"]
        x = encode(obs, [parse_time(o["time"]) for o in obs])[None]
        return {"observations": x, "mask": np.ones(x.shape[:2], np.float32)}, json.dumps(VITALS)
    image = decode_image(PNG, spec=ImageSpec.from_manifest(m))
    return {"image": to_model_input(image, ImageSpec.from_manifest(m))}, json.dumps(
        {"image": base64.b64encode(PNG).decode()}
    )


def _v1_scores(server: str, http: requests.Session, model_id: str, body: str) -> np.ndarray:
    task = manifest(model_id)["task"]
    r = http.post(f"{server}/v1/{task}/{model_id}/predict", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    out = r.json()
    if task == "risk":
        return np.array([p["probability"] for p in out["predictions"]])
    if task == "vitals":
        return np.array([out["prediction"]["probability"]])
    return np.array([out["prediction"]["probabilities"]["pneumonia"]])


def test_server_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "medserve" and "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize(
    ("model_id", "inputs", "outputs"),
    [
        ("breast-cancer", [("features", "FP32", [-1, 30])], [("probability", "FP32", [-1, 1])]),
        (
            "vitals-deterioration",
            [("observations", "FP32", [-1, -1, 8]), ("mask", "FP32", [-1, -1])],
            [("probability", "FP32", [-1, 1])],
        ),
        (
            "chest-xray",
            [("image", "FP32", [-1, 128, 128, 1])],
            [("probabilities", "FP32", [-1, 2]), ("cam", "FP32", [-1, -1, -1])],
        ),
    ],
)
def test_model_metadata_is_the_onnx_signature(
    client: httpclient.InferenceServerClient, model_id: str, inputs: list[Any], outputs: list[Any]
) -> None:
    meta = client.get_model_metadata(model_id)
    assert meta["name"] == model_id and meta["platform"] == "onnxruntime_onnx" and "1.0.0" in meta["versions"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == inputs
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == outputs
    assert client.is_model_ready(model_id) and client.is_model_ready(model_id, "1.0.0")
    assert client.get_model_metadata(model_id, "1.0.0") == meta


@pytest.mark.parametrize("model_id", ["breast-cancer", "vitals-deterioration", "chest-xray"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_equals_v1(
    server: str, http: requests.Session, client: httpclient.InferenceServerClient, model_id: str, binary: bool
) -> None:
    feeds, v1_body = _tensors(model_id)
    inputs = []
    for name, x in feeds.items():
        tensor = httpclient.InferInput(name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        inputs.append(tensor)
    out_name = "probabilities" if model_id == "chest-xray" else "probability"
    result = client.infer(
        model_id,
        inputs,
        outputs=[httpclient.InferRequestedOutput(out_name, binary_data=binary)],
        request_id="e2e-1",
        headers=BINARY_HEADERS if binary else None,
    )
    response = result.get_response()
    assert response["model_name"] == model_id and response["model_version"] == "1.0.0" and response["id"] == "e2e-1"
    (out,) = response["outputs"]
    assert ("binary_data_size" in out.get("parameters", {})) is binary and ("data" in out) is not binary
    scores = result.as_numpy(out_name)
    assert scores.dtype == np.float32
    v2 = scores[:, 1] if model_id == "chest-xray" else scores[:, 0]
    np.testing.assert_allclose(v2, _v1_scores(server, http, model_id, v1_body), rtol=0, atol=2e-6)


def test_binary_inputs_without_content_type_are_refused_with_a_readable_error(
    client: httpclient.InferenceServerClient,
) -> None:
    feeds, _ = _tensors("breast-cancer")
    tensor = httpclient.InferInput("features", list(feeds["features"].shape), "FP32")
    tensor.set_data_from_numpy(feeds["features"])  # tritonclient's default: binary, and it sends no Content-Type
    with pytest.raises(InferenceServerException) as exc:
        client.infer("breast-cancer", [tensor])
    assert exc.value.status() == "415" and "application/octet-stream" in exc.value.message()


def test_binary_outputs_without_accept_come_back_as_json_data(client: httpclient.InferenceServerClient) -> None:
    feeds, _ = _tensors("breast-cancer")
    tensor = httpclient.InferInput("features", list(feeds["features"].shape), "FP32")
    tensor.set_data_from_numpy(feeds["features"], binary_data=False)
    result = client.infer("breast-cancer", [tensor], outputs=[httpclient.InferRequestedOutput("probability")])
    (out,) = result.get_response()["outputs"]
    assert "data" in out and result.as_numpy("probability").shape == (len(feeds["features"]), 1)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_invalid_tensors_are_protocol_errors(client: httpclient.InferenceServerClient, binary: bool) -> None:
    feeds, _ = _tensors("breast-cancer")
    x = feeds["features"].copy()
    x[0, 0] = np.nan
    tensor = httpclient.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    with pytest.raises(InferenceServerException) as exc:
        client.infer("breast-cancer", [tensor], headers=BINARY_HEADERS if binary else None)
    assert exc.value.status() == "422" and "finite" in exc.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.get_model_metadata("no-such-model")
    assert missing.value.status() == "404"
