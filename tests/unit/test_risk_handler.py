"""RiskFunction fed real-shaped API Gateway events (Given/When/Then)."""

from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import MODELS, invoke, live_folder, load_event, with_body, without_timings

BC = load_event("risk_breast_cancer")
DB = load_event("risk_diabetes")


def manifest(model_id: str) -> dict:
    return json.loads((live_folder(model_id) / "manifest.json").read_text())


def instances(event: dict) -> list[dict]:
    return json.loads(event["body"])["instances"]


def test_breast_cancer_predicts_label_and_calibrated_probability() -> None:
    status, headers, body = invoke("risk", BC)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    m = manifest("breast-cancer")
    assert body["model"] == {
        "id": "breast-cancer",
        "version": m["version"],
        "task": "risk",
        "sha256": m["onnx"]["sha256"],
        "synthetic": False,
        "intended_use": m["intended_use"],
    }
    assert body["request_id"] == BC["requestContext"]["requestId"]
    preds = body["predictions"]
    assert len(preds) == 2
    # row 0 of WDBC is a textbook malignant case, row 19 a benign one
    assert [p["label"] for p in preds] == ["malignant", "benign"]
    for p in preds:
        assert set(p) == {"label", "probability", "probabilities"}
        assert 0.0 <= p["probability"] <= 1.0
        assert p["probabilities"]["malignant"] == p["probability"]
        assert math.isclose(sum(p["probabilities"].values()), 1.0, abs_tol=1e-5)
        threshold = m["outputs"]["threshold"]
        assert (p["label"] == "malignant") == (p["probability"] >= threshold)


def test_probabilities_equal_raw_onnx_runtime() -> None:
    m = manifest("breast-cancer")
    folder = live_folder("breast-cancer")
    session = ort.InferenceSession(str(folder / m["onnx"]["file"]), providers=["CPUExecutionProvider"])
    names = [i["name"] for i in m["inputs"]]
    x = np.array([[row[n] for n in names] for row in instances(BC)], dtype=np.float32)
    expected = session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1)
    _, _, body = invoke("risk", BC)
    got = [p["probability"] for p in body["predictions"]]
    assert np.allclose(got, expected, atol=1e-6)


def test_explain_returns_ablation_contributions_per_feature() -> None:
    event = load_event("risk_breast_cancer_explain")
    status, _, body = invoke("risk", event)
    assert status == 200, body
    m = manifest("breast-cancer")
    names = [i["name"] for i in m["inputs"]]
    contrib = body["predictions"][0]["contributions"]
    assert list(contrib) == names
    # Recompute one ablation by hand: the feature set to its training mean.
    row = dict(instances(event)[0])
    k = int(np.argmax(np.abs(list(contrib.values()))))
    row[names[k]] = m["inputs"][k]["train_mean"]
    ablated = with_body(event, {"instances": [row]})
    _, _, other = invoke("risk", ablated)
    expected = body["predictions"][0]["probability"] - other["predictions"][0]["probability"]
    assert contrib[names[k]] == pytest.approx(expected, abs=1e-4)
    assert abs(contrib[names[k]]) > 0


def test_diabetes_regression_value_unit_and_contributions() -> None:
    status, _, body = invoke("risk", DB)
    assert status == 200, body
    p = body["predictions"][0]
    m = manifest("diabetes-progression")
    assert p["unit"] == m["outputs"]["unit"]
    assert 0 < p["value"] < 400  # the target spans 25..346 in the data
    assert list(p["contributions"]) == [i["name"] for i in m["inputs"]]


def test_fhir_bundle_with_risk_assessment_and_device() -> None:
    event = load_event("risk_breast_cancer_fhir")
    status, headers, bundle = invoke("risk", event)
    assert status == 200
    assert headers["content-type"] == "application/fhir+json"
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    resources = [e["resource"] for e in bundle["entry"]]
    device = next(r for r in resources if r["resourceType"] == "Device")
    ra = next(r for r in resources if r["resourceType"] == "RiskAssessment")
    m = manifest("breast-cancer")
    assert any(m["onnx"]["sha256"] in i["value"] for i in device["identifier"])
    assert device["version"][0]["value"] == m["version"]
    assert ra["performer"]["reference"] == f"urn:uuid:{device['id']}"
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in bundle["entry"])
    _, _, plain = invoke("risk", with_body(event, json.loads(event["body"]), Accept="application/json"))
    assert ra["prediction"][0]["probabilityDecimal"] == plain["predictions"][0]["probability"]


def _bad(event: dict, body: object, **headers: str) -> tuple[int, dict, dict]:
    return invoke("risk", with_body(event, body, **headers))


def _fields(problem: dict) -> set[str]:
    return {e["field"] for e in problem.get("errors", [])}


def assert_problem(status: int, headers: dict, body: dict, expected: int) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    assert {"type", "title", "status", "detail", "request_id"} <= set(body)
    assert body["status"] == expected
    assert body["request_id"] == BC["requestContext"]["requestId"]


@pytest.mark.parametrize("raw", ["{not json", '{"instances": [', "\x00\x01"])
def test_unreadable_body_is_400(raw: str) -> None:
    assert_problem(*_bad(BC, raw), 400)


def test_empty_body_is_a_4xx_problem() -> None:
    event = with_body(BC, "")
    event["body"] = None
    status, headers, body = invoke("risk", event)
    assert status in (400, 422)
    assert headers["content-type"] == "application/problem+json"


GOOD = instances(BC)[0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({}, "instances"),
        ({"instances": []}, "instances"),
        ({"instances": [GOOD] * 1001}, "instances"),
        ({"instances": [GOOD], "explain": "yes"}, "explain"),
        ({"instances": [GOOD], "explain": 1}, "explain"),
        ({"instances": [GOOD], "extra": 1}, "extra"),
        ({"instances": "all"}, "instances"),
        ({"instances": [{k: v for k, v in GOOD.items() if k != "mean_radius"}]}, "instances[0].mean_radius"),
        ({"instances": [{**GOOD, "shoe_size": 42}]}, "instances[0].shoe_size"),
        ({"instances": [{**GOOD, "mean_radius": "14.2"}]}, "instances[0].mean_radius"),
        ({"instances": [{**GOOD, "mean_radius": True}]}, "instances[0].mean_radius"),
        ({"instances": [{**GOOD, "mean_radius": None}]}, "instances[0].mean_radius"),
        ({"instances": [{**GOOD, "mean_radius": 1e6}]}, "instances[0].mean_radius"),
        ({"instances": [{**GOOD, "mean_area": -5}]}, "instances[0].mean_area"),
        ({"instances": [GOOD, {**GOOD, "worst_symmetry": 99}]}, "instances[1].worst_symmetry"),
    ],
)
def test_invalid_input_is_422_naming_the_field(body: object, field: str) -> None:
    status, headers, problem = _bad(BC, body)
    assert_problem(status, headers, problem, 422)
    assert field in _fields(problem), problem


def test_nan_and_infinity_are_422() -> None:
    raw = json.dumps({"instances": [GOOD]}).replace(str(GOOD["mean_radius"]), "NaN", 1)
    status, headers, problem = _bad(BC, raw)
    assert status in (400, 422)
    assert headers["content-type"] == "application/problem+json"
    raw = json.dumps({"instances": [{**GOOD, "mean_texture": 1e400}]})
    status, _, problem = _bad(BC, raw)
    assert status in (400, 422)


def test_an_integer_too_large_for_a_float_is_422() -> None:
    raw = json.dumps({"instances": [GOOD]}).replace(str(GOOD["mean_radius"]), "1" + "0" * 400, 1)
    status, headers, problem = _bad(BC, raw)
    assert_problem(status, headers, problem, 422)
    assert "instances[0].mean_radius" in _fields(problem)


def test_vectorised_fast_path_agrees_with_field_by_field_checks() -> None:
    from medserve.registry import Registry
    from medserve.tasks.risk import service as risk

    entry = Registry.load(MODELS, task="risk").get("breast-cancer")
    spec = entry.spec
    rng = np.random.default_rng(7)
    lo = np.array([i["train_min"] for i in spec.inputs])
    hi = np.array([i["train_max"] for i in spec.inputs])
    rows = [dict(zip(spec.names, map(float, lo + rng.random(len(lo)) * (hi - lo)), strict=True)) for _ in range(300)]
    rows[5]["mean_radius"] = int(round(rows[5]["mean_radius"]))  # ints are numbers too
    fast = risk._pack_valid(spec, rows)
    assert fast is not None
    errors: list[tuple[str, str]] = []
    spec.body.get("instances").check(rows, "instances", errors)  # the field-by-field rules
    assert errors == []
    slow = np.array([[row[n] for n in spec.names] for row in rows], dtype=np.float32)
    np.testing.assert_array_equal(fast, slow)
    # Any rule broken anywhere sends the whole batch to the slow path, which names it
    for broken in ({"mean_radius": True}, {"mean_radius": 1e9}, {"mean_radius": float("nan")}, {"x": 1}):
        bad = [*rows[:10], {**rows[10], **broken}]
        assert risk._pack_valid(spec, bad) is None


def test_every_error_in_every_row_is_reported() -> None:
    rows = [{**GOOD, "mean_radius": -1}, {**GOOD, "mean_texture": "x", "bogus": 1}]
    _, _, problem = _bad(BC, {"instances": rows})
    assert {"instances[0].mean_radius", "instances[1].mean_texture", "instances[1].bogus"} <= _fields(problem)


def test_diabetes_sex_must_be_1_or_2() -> None:
    row = {**instances(DB)[0], "sex": 3}
    status, headers, problem = invoke("risk", with_body(DB, {"instances": [row]}))
    assert_problem(status, headers, problem, 422)
    assert "instances[0].sex" in _fields(problem)


def test_unknown_model_is_404() -> None:
    event = with_body(BC, {"instances": [GOOD]})
    event["path"] = "/v1/risk/no-such-model/predict"
    event["pathParameters"] = {"model_id": "no-such-model"}
    assert_problem(*invoke("risk", event), 404)


def test_wrong_method_is_405_with_allow() -> None:
    event = with_body(BC, {"instances": [GOOD]})
    event["httpMethod"] = "GET"
    event["body"] = None
    status, headers, problem = invoke("risk", event)
    assert_problem(status, headers, problem, 405)
    assert headers["allow"] == "POST"


def test_unknown_route_is_404() -> None:
    event = with_body(BC, {"instances": [GOOD]})
    event["path"] = "/v1/risk/breast-cancer/predictt"
    assert_problem(*invoke("risk", event), 404)


def test_non_json_content_type_is_415() -> None:
    status, headers, problem = _bad(BC, {"instances": [GOOD]}, **{"Content-Type": "text/csv"})
    assert_problem(status, headers, problem, 415)


def test_logs_hold_no_feature_values(caplog: pytest.LogCaptureFixture) -> None:
    from medserve.api import logger

    caplog.set_level("INFO")
    invoke("risk", BC)
    invoke("risk", with_body(BC, {"instances": [{**GOOD, "mean_radius": 987654.321}]}))
    # Render each record exactly as the Lambda log line would be written.
    text = without_timings("\n".join(logger.registered_formatter.format(r) for r in caplog.records))
    assert '"message":"request"' in text  # the handler does log each request...
    assert '"status":422' in text  # ...and its outcome
    for value in list(GOOD.values())[:10] + [987654.321]:
        assert repr(value) not in text and str(value) not in text
