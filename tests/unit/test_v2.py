"""Open Inference Protocol v2 (``functions/inference`` + ``medserve.v2``): routes, tensors, validation.

Given the InferenceFunction and real-shaped API Gateway events, when protocol requests
(JSON or with binary tensor data, valid or hostile) arrive, then the answers are the
models' own outputs, or 4xx problems carrying the protocol's ``error`` string; never a 5xx.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import numpy as np
import pytest

from local.apigw import build_event, is_binary
from local.routing import RouteTable
from local.template import parse_template
from medserve import v2
from medserve.registry import Registry
from tests.conftest import MODELS, ROOT, load_event, load_handler

INFER = load_event("v2_infer_breast_cancer")
BODY = json.loads(INFER["body"])
OCTET = "application/octet-stream"
REGISTRY = Registry.load(MODELS)


def event(
    method: str,
    path: str,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    b64: bool | None = None,
) -> dict[str, Any]:
    """A v2 event like the committed ones, for another method, path, body or headers."""
    e = copy.deepcopy(INFER)
    e.update(httpMethod=method, path=path, multiValueHeaders=None)
    e["headers"] = {"Host": "abcdef1234.execute-api.eu-west-1.amazonaws.com", **(headers or {})}
    if isinstance(body, bytes):
        e["body"], e["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        e["body"], e["isBase64Encoded"] = body, bool(b64)
    return e


def call(e: dict[str, Any]) -> tuple[int, dict[str, str], Any, dict[str, Any]]:
    """Invoke the handler: status, lower-cased headers, parsed JSON body (or raw bytes), raw response."""
    from tests.conftest import FakeContext

    r = load_handler("inference").lambda_handler(e, FakeContext())
    headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
    for k, vs in (r.get("multiValueHeaders") or {}).items():
        headers[k.lower()] = vs[-1]
    raw = base64.b64decode(r["body"]) if r.get("isBase64Encoded") else (r.get("body") or "").encode()
    body: Any = raw
    if "json" in headers.get("content-type", ""):
        body = json.loads(raw)
    return r["statusCode"], headers, body, r


def post(model: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    text = body if isinstance(body, str | bytes) else json.dumps(body)
    status, headers_, parsed, _ = call(
        event("POST", f"/v2/models/{model}/infer", text, {"Content-Type": "application/json", **(headers or {})})
    )
    return status, headers_, parsed


def binary_request(
    feeds: dict[str, np.ndarray], outputs: list[dict[str, Any]] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body (JSON header, then the tensors' little-endian bytes) and its headers."""
    inputs, chunks = [], []
    for name, x in feeds.items():
        data = x.astype("<f4").tobytes()
        inputs.append(
            {"name": name, "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": len(data)}}
        )
        chunks.append(data)
    head = json.dumps({"inputs": inputs, **({"outputs": outputs} if outputs else {})}).encode()
    return head + b"".join(chunks), {"Content-Type": OCTET, "Inference-Header-Content-Length": str(len(head))}


def risk_x() -> np.ndarray:
    return np.array(BODY["inputs"][0]["data"], dtype=np.float32).reshape(BODY["inputs"][0]["shape"])


def vitals_x(t: int = 3) -> np.ndarray:
    row = [80.0, 16.0, 97.0, 37.0, 125.0, 0.0, 0.0, 1.0]
    x = np.array([row] * t, dtype=np.float32)
    x[0, 7] = 0.0
    x[:, 0] += np.arange(t) * 10
    return x[None]


def tensor(name: str, x: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.reshape(-1).tolist()}


def assert_problem(status: int, headers: dict[str, str], body: Any, expected: int) -> dict[str, Any]:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    assert isinstance(body["error"], str) and body["error"]
    assert body["status"] == expected
    return body


# --- server and model metadata --------------------------------------------------------
def test_server_metadata_health_and_readiness() -> None:
    status, _, body, _ = call(event("GET", "/v2"))
    assert status == 200 and body == {
        "name": "medserve",
        "version": v2.__version__,
        "extensions": ["binary_tensor_data"],
    }
    assert call(event("GET", "/v2/health/live"))[2] == {"live": True}
    assert call(event("GET", "/v2/health/ready"))[2] == {"ready": True}


@pytest.mark.parametrize("entry", REGISTRY.entries(), ids=lambda e: e.id)
def test_model_metadata_is_the_onnx_session_signature(entry: Any) -> None:
    status, _, meta, _ = call(event("GET", f"/v2/models/{entry.id}"))
    assert status == 200
    served = [e.version for e in REGISTRY.model(entry.id).served()]  # live and candidates
    assert meta["name"] == entry.id and meta["versions"] == served and meta["platform"] == "onnxruntime_onnx"
    assert entry.version in served
    declared = entry.manifest["onnx"]
    for ours, onnx in ((meta["inputs"], declared["inputs"]), (meta["outputs"], declared["outputs"])):
        assert [t["name"] for t in ours] == [t["name"] for t in onnx]
        assert all(t["datatype"] == "FP32" for t in ours)
        assert [t["shape"] for t in ours] == [[-1 if d is None else d for d in t["shape"]] for t in onnx]
    assert call(event("GET", f"/v2/models/{entry.id}/versions/{entry.version}"))[2] == meta
    assert call(event("GET", f"/v2/models/{entry.id}/ready"))[2] == {"name": entry.id, "ready": True}
    assert call(event("GET", f"/v2/models/{entry.id}/versions/{entry.version}/ready"))[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/no-such-model",
        "/v2/models/no-such-model/ready",
        "/v2/models/breast-cancer/versions/9.9.9",
        "/v2/models/breast-cancer/versions/9.9.9/ready",
        "/v2/models/Jane%20Doe%201970",
        "/v2/models/breast-cancer/versions/Jane%20Doe",
        "/v2/models/breast-cancer/config",
        "/v2/nothing/Jane%20Doe",
        "/v2/models/breast-cancer/Jane%20Doe/infer",
    ],
)
def test_unknown_model_version_or_route_is_404_without_echo(path: str) -> None:
    status, headers, body, _ = call(event("GET", path))
    assert_problem(status, headers, body, 404)
    assert "Jane" not in json.dumps(body) and "config" not in json.dumps(body)


def test_unknown_version_on_infer_is_404() -> None:
    status, headers, body, _ = call(
        event(
            "POST", "/v2/models/breast-cancer/versions/0.0.1/infer", INFER["body"], {"Content-Type": "application/json"}
        )
    )
    assert_problem(status, headers, body, 404)


def test_wrong_method_is_405_with_allow() -> None:
    status, headers, body, _ = call(event("GET", "/v2/models/breast-cancer/infer"))
    assert_problem(status, headers, body, 405)
    assert headers["allow"] == "POST"
    status, headers, body, _ = call(event("DELETE", "/v2/models/breast-cancer"))
    assert_problem(status, headers, body, 405)


# --- inference: the models' own answers -----------------------------------------------
def test_committed_event_answers_the_models_own_output() -> None:
    status, headers, body, _ = call(INFER)
    assert status == 200 and headers["content-type"] == "application/json"
    assert body["model_name"] == "breast-cancer" and body["model_version"] == "1.0.0" and body["id"] == "example-1"
    entry = REGISTRY.get("breast-cancer")
    assert body["parameters"]["sha256"] == entry.sha256 and body["parameters"]["synthetic"] is False
    assert "warning" not in body["parameters"]
    (out,) = body["outputs"]
    expected = entry.run({"features": risk_x()})["probability"]
    assert out["name"] == "probability" and out["datatype"] == "FP32" and out["shape"] == list(expected.shape)
    assert np.array(out["data"], dtype=np.float32).tolist() == expected.reshape(-1).tolist()


def test_json_and_binary_inputs_and_outputs_agree_bit_for_bit() -> None:
    x = risk_x()
    _, _, js = post("breast-cancer", {"inputs": [tensor("features", x)]})
    body, headers = binary_request({"features": x}, [{"name": "probability", "parameters": {"binary_data": True}}])
    status, rheaders, raw, r = call(event("POST", "/v2/models/breast-cancer/infer", body, {**headers, "Accept": OCTET}))
    assert status == 200 and r["isBase64Encoded"] is True
    assert rheaders["content-type"] == OCTET
    n = int(rheaders["inference-header-content-length"])
    head = json.loads(raw[:n])
    (out,) = head["outputs"]
    assert out["parameters"]["binary_data_size"] == len(raw) - n == 4 * x.shape[0]
    binary_values = np.frombuffer(raw[n:], dtype="<f4")
    assert binary_values.tolist() == np.array(js["outputs"][0]["data"], dtype=np.float32).tolist()


def test_binary_output_falls_back_to_json_unless_accept_is_octet_stream() -> None:
    request = {**BODY, "parameters": {"binary_data_output": True}}
    status, headers, body = post("breast-cancer", request)
    assert status == 200 and headers["content-type"] == "application/json"
    assert "data" in body["outputs"][0]
    status, headers, raw = post("breast-cancer", request, {"Accept": OCTET})
    assert status == 200 and headers["content-type"] == OCTET
    assert len(raw) - int(headers["inference-header-content-length"]) == 4 * risk_x().shape[0]


def test_nested_data_is_read_row_major() -> None:
    x = risk_x()
    flat = post("breast-cancer", {"inputs": [tensor("features", x)]})[2]
    nested = post("breast-cancer", {"inputs": [{**tensor("features", x), "data": x.tolist()}]})[2]
    assert flat["outputs"] == nested["outputs"]


def test_vitals_padding_with_mask_zero_gives_the_unpadded_answer() -> None:
    short, long_ = vitals_x(3), vitals_x(5)
    padded = np.zeros_like(long_)
    padded[:, :3] = short
    x = np.concatenate([long_, padded])
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=np.float32)
    status, _, body = post("vitals-deterioration", {"inputs": [tensor("observations", x), tensor("mask", mask)]})
    assert status == 200, body
    alone = post("vitals-deterioration", {"inputs": [tensor("observations", short), tensor("mask", np.ones((1, 3)))]})
    assert alone[0] == 200
    assert body["outputs"][0]["data"][1] == pytest.approx(alone[2]["outputs"][0]["data"][0], abs=1e-6)


def test_imaging_returns_both_outputs_and_only_those_asked_for() -> None:
    x = np.full((1, 128, 128, 1), 0.5, dtype=np.float32)
    status, _, body = post("chest-xray", {"inputs": [tensor("image", x)]})
    assert status == 200
    assert body["parameters"]["synthetic"] is True and "SYNTHETIC" in body["parameters"]["warning"]
    assert [o["name"] for o in body["outputs"]] == ["probabilities", "cam"]
    assert sum(body["outputs"][0]["data"]) == pytest.approx(1.0, abs=1e-5)
    only = post("chest-xray", {"inputs": [tensor("image", x)], "outputs": [{"name": "cam"}]})[2]
    assert [o["name"] for o in only["outputs"]] == ["cam"] and only["outputs"][0]["shape"][0] == 1


# --- validation -----------------------------------------------------------------------
def _invalid(model: str, request: Any, expected: int = 422, headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, headers_, body = post(model, request, headers)
    return assert_problem(status, headers_, body, expected)


def _fields(problem: dict[str, Any]) -> set[str]:
    return {e["field"] for e in problem["errors"]}


def test_wrong_name_is_422_echoing_only_the_models_own_names() -> None:
    x = risk_x()
    problem = _invalid("breast-cancer", {"inputs": [{**tensor("features", x), "name": "Jane Doe 1970-01-01"}]})
    assert "inputs[0].name" in _fields(problem) and "features" in problem["error"] + json.dumps(problem)
    assert "Jane" not in json.dumps(problem)
    problem = _invalid("breast-cancer", {"inputs": [tensor("features", x)], "outputs": [{"name": "Jane Doe"}]})
    assert _fields(problem) == {"outputs[0].name"} and "Jane" not in json.dumps(problem)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"datatype": "FP64"}, "inputs[0].datatype"),
        ({"datatype": "BYTES"}, "inputs[0].datatype"),
        ({"shape": [2, 15]}, "inputs[0].shape"),
        ({"shape": [2, 30, 1]}, "inputs[0].shape"),
        ({"shape": [0, 30]}, "inputs[0].shape"),
        ({"shape": [1001, 30]}, "inputs[0].shape"),
        ({"shape": [True, 30]}, "inputs[0].shape"),
        ({"shape": [10**30, 30]}, "inputs[0].shape"),
        ({"shape": "2x30"}, "inputs[0].shape"),
        ({"shape": [3, 30]}, "inputs[0].data"),  # element count
        ({"data": "abc"}, "inputs[0].data"),
        ({"data": [[1, 2], "x"]}, "inputs[0].data"),
        ({"data": [True] * 60}, "inputs[0].data"),
        ({"data": [None] * 60}, "inputs[0].data"),
        ({"data": [10**400] * 60}, "inputs[0].data"),
        ({"parameters": {"binary_data_size": 240}}, "inputs[0].data"),
        ({"parameters": {"shared_memory_region": "x"}}, "inputs[0].parameters.shared_memory_region"),
        ({"extra": 1}, "inputs[0].extra"),
    ],
)
def test_wrong_tensor_is_422_naming_the_field(change: dict[str, Any], field: str) -> None:
    problem = _invalid("breast-cancer", {"inputs": [{**tensor("features", risk_x()), **change}]})
    assert field in _fields(problem), problem


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e39"])
def test_non_finite_values_are_422(literal: str) -> None:
    values = risk_x().reshape(-1).tolist()
    values[0] = 12345.5
    data = json.dumps(values).replace("12345.5", literal, 1)
    request = '{"inputs": [{"name": "features", "shape": [2, 30], "datatype": "FP32", "data": ' + data + "}]}"
    problem = _invalid("breast-cancer", request)
    assert problem["errors"][0] == {"field": "inputs[0].data[0]", "message": "must be a finite number"}


def test_values_outside_the_manifests_ranges_are_422_naming_the_feature() -> None:
    x = risk_x()
    x[1, 0] = 1e6  # mean_radius, max 38.68
    problem = _invalid("breast-cancer", {"inputs": [tensor("features", x)]})
    assert problem["errors"] == [
        {
            "field": "inputs[0].data[30]",
            "message": "mean_radius must be between 0 and 38.68 image length units (the source gives no physical unit)",
        }
    ]
    d = np.array([[50, 3, 25, 90, 180, 100, 50, 4, 4.5, 90]], dtype=np.float32)  # sex must be 1 or 2
    problem = _invalid("diabetes-progression", {"inputs": [tensor("features", d)]})
    assert problem["errors"] == [{"field": "inputs[0].data[1]", "message": "sex must be one of 1, 2"}]
    image = np.full((1, 128, 128, 1), 0.5, dtype=np.float32)
    image[0, 0, 1, 0] = 255.0  # not normalised to [0, 1]
    problem = _invalid("chest-xray", {"inputs": [tensor("image", image)]})
    assert _fields(problem) == {"inputs[0].data[1]"}


def test_vitals_ranges_codes_and_mask() -> None:
    x = vitals_x(3)
    ones = np.ones((1, 3), dtype=np.float32)
    bad = x.copy()
    bad[0, 1, 3] = 60.0  # temperature, max 45
    bad[0, 2, 5] = 0.5  # consciousness is an ACVPU code 0..4
    problem = _invalid("vitals-deterioration", {"inputs": [tensor("observations", bad), tensor("mask", ones)]})
    assert problem["errors"] == [
        {"field": "inputs[0].data[11]", "message": "temperature must be between 25 and 45 °C"},
        {"field": "inputs[0].data[21]", "message": "consciousness must be one of 0, 1, 2, 3, 4"},
    ]
    holes = np.array([[1, 0, 1]], dtype=np.float32)
    problem = _invalid("vitals-deterioration", {"inputs": [tensor("observations", x), tensor("mask", holes)]})
    assert _fields(problem) == {"inputs[1].data"}
    problem = _invalid("vitals-deterioration", {"inputs": [tensor("observations", x), tensor("mask", ones * 0.5)]})
    assert "inputs[1].data[0]" in _fields(problem)
    problem = _invalid("vitals-deterioration", {"inputs": [tensor("observations", x), tensor("mask", np.ones((1, 4)))]})
    assert "inputs[1].data" in _fields(problem)
    problem = _invalid("vitals-deterioration", {"inputs": [tensor("observations", x)]})
    assert problem["errors"] == [{"field": "inputs", "message": "input mask is missing"}]
    long_ = np.repeat(vitals_x(1), 501, axis=1)
    problem = _invalid(
        "vitals-deterioration", {"inputs": [tensor("observations", long_), tensor("mask", np.ones((1, 501)))]}
    )
    assert "inputs[0].shape" in _fields(problem)


def test_errors_are_capped_at_100_with_a_count_of_the_rest() -> None:
    image = np.full((1, 128, 128, 1), 2.0, dtype=np.float32)
    problem = _invalid("chest-xray", {"inputs": [tensor("image", image)]})
    assert len(problem["errors"]) == 100 and problem["errors_omitted"] == 128 * 128 - 100


@pytest.mark.parametrize(
    "request_",
    [
        {"inputs": []},
        {"inputs": None},
        {"inputs": [5]},
        {"inputs": [tensor("features", risk_x()), tensor("features", risk_x())]},
        {**BODY, "id": "Jane Doe, born 1970"},
        {**BODY, "id": 5},
        {**BODY, "parameters": {"binary_data_output": "yes"}},
        {**BODY, "parameters": {"sequence_id": 1}},
        {**BODY, "parameters": []},
        {**BODY, "outputs": {}},
        {**BODY, "outputs": [{"name": "probability"}, {"name": "probability"}]},
        {**BODY, "outputs": [{"name": "probability", "parameters": {"classification": 2}}]},
        {**BODY, "Jane Doe": 1},
    ],
)
def test_malformed_requests_are_422_and_never_echo(request_: dict[str, Any]) -> None:
    problem = _invalid("breast-cancer", request_)
    assert "Jane" not in json.dumps(problem)


# --- the binary extension -------------------------------------------------------------
def test_header_length_larger_than_the_body_is_400() -> None:
    body, headers = binary_request({"features": risk_x()})
    problem = _invalid("breast-cancer", body, 400, {**headers, "Inference-Header-Content-Length": str(len(body) + 1)})
    assert _fields(problem) == {"header.inference-header-content-length"}
    for bad in ("0", "-5", "abc", "1e3", "9" * 40):
        _invalid("breast-cancer", body, 400, {**headers, "Inference-Header-Content-Length": bad})


def test_header_length_that_cuts_the_json_is_400() -> None:
    body, headers = binary_request({"features": risk_x()})
    _invalid("breast-cancer", body, 400, {**headers, "Inference-Header-Content-Length": "10"})


def test_binary_data_size_mismatch_is_422() -> None:
    x = risk_x()
    body, headers = binary_request({"features": x})
    problem = _invalid("breast-cancer", body + b"\x00\x00\x00\x00", 422, headers)
    assert "parameters.binary_data_size" in _fields(problem)
    problem = _invalid("breast-cancer", body[:-4], 422, headers)
    assert "parameters.binary_data_size" in _fields(problem)
    head = json.loads(body[: int(headers["Inference-Header-Content-Length"])])
    head["inputs"][0]["parameters"]["binary_data_size"] = 4 * x.size - 4
    new_head = json.dumps(head).encode()
    problem = _invalid(
        "breast-cancer",
        new_head + x.astype("<f4").tobytes()[:-4],
        422,
        {**headers, "Inference-Header-Content-Length": str(len(new_head))},
    )
    assert "inputs[0].parameters.binary_data_size" in _fields(problem)


def test_binary_nan_is_422() -> None:
    x = risk_x()
    x[0, 3] = np.nan
    body, headers = binary_request({"features": x})
    problem = _invalid("breast-cancer", body, 422, headers)
    assert problem["errors"][0]["field"] == "inputs[0].data[3]"


def test_binary_tensor_data_without_octet_stream_content_type_is_415() -> None:
    body, headers = binary_request({"features": risk_x()})
    for ctype in ("application/json", ""):
        problem = _invalid("breast-cancer", body, 415, {**headers, "Content-Type": ctype})
        assert OCTET in problem["detail"]


def test_binary_vitals_equals_json() -> None:
    x, mask = vitals_x(4), np.ones((1, 4), dtype=np.float32)
    js = post("vitals-deterioration", {"inputs": [tensor("observations", x), tensor("mask", mask)]})[2]
    body, headers = binary_request({"observations": x, "mask": mask})
    status, _, binary = post("vitals-deterioration", body, headers)
    assert status == 200 and binary["outputs"] == js["outputs"]


# --- never a 5xx ----------------------------------------------------------------------
HOSTILE: list[Any] = [
    "",
    " ",
    "null",
    "[]",
    "{",
    "\ufeff{}",
    '{"inputs": 5}',
    '{"inputs": [{"name": "features", "shape": [1e999, 30], "datatype": "FP32", "data": []}]}',
    '{"inputs": [{"name": "features", "shape": [-1, 30], "datatype": "FP32", "data": []}]}',
    '{"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "data": {"a": 1}}]}',
    '{"inputs": [{"name": ["features"], "shape": [1, 30], "datatype": null}]}',
    '{"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": -4}}]}',
    '{"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": 1e9}}]}',
    json.dumps({"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "data": [[[[1]]]] * 30}]}),
    json.dumps({"inputs": [{"name": "k" * 10_000, "shape": [1], "datatype": "FP32", "data": [1]}]}),
    "[" * 5000 + "]" * 5000,
    '{"inputs": ' + "[" * 3000 + "]" * 3000 + "}",
    '{"a":' * 2000 + "1" + "}" * 2000,
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("model", ["breast-cancer", "vitals-deterioration", "chest-xray"])
def test_hostile_bodies_are_4xx_problems(model: str, body: str) -> None:
    status, headers, problem = post(model, body)
    assert 400 <= status < 500, problem
    assert_problem(status, headers, problem, status)


@pytest.mark.parametrize(
    ("body", "headers", "b64"),
    [
        ("not base64!", {}, True),
        (b"\xff\xfe\x00garbage", {"Content-Type": OCTET, "Inference-Header-Content-Length": "3"}, None),
        (b"\xff\xfe\x00garbage", {"Content-Type": OCTET}, None),
        ("{}", {"Content-Type": "text/plain"}, False),
        ("{}", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, False),
        (None, {"Content-Type": "application/json"}, False),
    ],
)
def test_unreadable_transport_is_4xx(body: Any, headers: dict[str, str], b64: bool | None) -> None:
    status, headers_, problem, _ = call(event("POST", "/v2/models/breast-cancer/infer", body, headers, b64=b64))
    assert 400 <= status < 500
    assert_problem(status, headers_, problem, status)


def test_add_error_member_caps_any_problem_and_leaves_other_answers_alone() -> None:
    body = {"title": "Unprocessable Content", "detail": "x", "errors": [{"field": "f", "message": "m"}] * 150}
    response = {"statusCode": 422, "headers": {"Content-Type": "application/problem+json"}, "body": json.dumps(body)}
    out = json.loads(v2.add_error_member(response)["body"])
    assert len(out["errors"]) == 100 and out["errors_omitted"] == 50
    assert out["error"] == "Unprocessable Content: x (f: m)"
    ok = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}
    assert v2.add_error_member(ok) is ok


# --- template and local runner --------------------------------------------------------
def test_local_runner_routes_v2_to_the_inference_function_and_passes_octet_stream_as_base64() -> None:
    template = parse_template(ROOT / "template.yaml")
    table = RouteTable(template.routes)
    for method, path in (
        ("GET", "/v2"),
        ("GET", "/v2/health/live"),
        ("GET", "/v2/models/chest-xray/versions/1.0.0"),
        ("POST", "/v2/models/chest-xray/infer"),
    ):
        match = table.match(method, path)
        assert match is not None and match.route.function_id == "InferenceFunction", path
    assert is_binary(OCTET, template.binary_media_types())
    match = table.match("POST", "/v2/models/breast-cancer/infer")
    assert match is not None
    raw = b"{}\x00\x00\x80?"
    e = build_event(
        method="POST",
        raw_path="/v2/models/breast-cancer/infer",
        query="",
        headers=[("Content-Type", OCTET)],
        body=raw,
        match=match,
        binary_media_types=template.binary_media_types(),
    )
    assert e["isBase64Encoded"] is True and base64.b64decode(e["body"]) == raw


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "image/png", "application/x-www-form-urlencoded"])
def test_infer_with_a_content_type_it_does_not_read_is_415(ctype: str) -> None:
    body = {"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
    ev = event("POST", "/v2/models/diabetes-progression/infer", json.dumps(body), {"Content-Type": ctype})
    status, headers, problem, _ = call(ev)
    assert status == 415 and problem["error"] and _fields(problem) == {"header.content-type"}


def test_infer_whose_accept_allows_neither_json_nor_binary_is_406() -> None:
    body = {"inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
    ev = event("POST", "/v2/models/diabetes-progression/infer", json.dumps(body), {"Accept": "text/html"})
    status, _, problem, _ = call(ev)
    assert status == 406 and problem["error"] and _fields(problem) == {"header.accept"}
