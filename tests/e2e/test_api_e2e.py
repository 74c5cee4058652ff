"""The risk and models routes over HTTP, against the real local runner (`make run`)."""

from __future__ import annotations

import json

import requests

from tests.conftest import load_event

BODY = json.loads(load_event("risk_breast_cancer")["body"])


def test_health_is_open_and_lists_models(server: str, http: requests.Session) -> None:
    r = http.get(f"{server}/v1/health", timeout=10)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert {"breast-cancer", "diabetes-progression"} <= set(r.json()["models"])


def test_wrong_methods_on_health_get_the_gateways_405_without_a_function(server: str, http: requests.Session) -> None:
    # On AWS a MOCK integration answers these (no Lambda invocation); the runner reads it from the template.
    r = http.post(f"{server}/v1/health", data=b"x" * 4096, headers={"Content-Type": "text/plain"}, timeout=10)

    assert r.status_code == 405
    assert r.headers["Allow"] == "GET"
    assert r.headers["Content-Type"] == "application/problem+json"
    problem = r.json()
    assert (problem["status"], problem["title"]) == (405, "Method Not Allowed")
    assert problem["request_id"] == r.headers["x-amzn-RequestId"]


def test_risk_predict_over_http(server: str, http: requests.Session) -> None:
    r = http.post(f"{server}/v1/risk/breast-cancer/predict", json=BODY, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["id"] == "breast-cancer"
    assert len(body["model"]["sha256"]) == 64
    assert body["request_id"]
    assert [p["label"] for p in body["predictions"]] == ["malignant", "benign"]


def test_fhir_over_http(server: str, http: requests.Session) -> None:
    r = http.post(
        f"{server}/v1/risk/diabetes-progression/predict",
        json=json.loads(load_event("risk_diabetes")["body"]),
        headers={"Accept": "application/fhir+json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    kinds = [e["resource"]["resourceType"] for e in r.json()["entry"]]
    assert "Device" in kinds and "RiskAssessment" in kinds


def test_bad_inputs_are_problems_never_5xx(server: str, http: requests.Session) -> None:
    url = f"{server}/v1/risk/breast-cancer/predict"
    cases = [
        (http.post(url, data="{oops", headers={"content-type": "application/json"}, timeout=10), 400),
        (http.post(url, json={"instances": []}, timeout=10), 422),
        (http.post(url, json={"instances": [{"mean_radius": 1}]}, timeout=10), 422),
        (http.post(f"{server}/v1/risk/nope/predict", json=BODY, timeout=10), 404),
        (http.get(url, timeout=10), 405),
        (http.get(f"{server}/v1/nothing-here", timeout=10), 404),
        (http.post(url, data="a,b\n1,2", headers={"content-type": "text/csv"}, timeout=10), 415),
    ]
    for response, expected in cases:
        assert response.status_code == expected, (expected, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == expected
        assert {"type", "title", "detail", "request_id"} <= set(problem)


def test_request_over_6mb_is_413(server: str, http: requests.Session) -> None:
    big = b'{"instances": [' + b" " * (6 * 1024 * 1024 + 10) + b"]}"
    r = http.post(
        f"{server}/v1/risk/breast-cancer/predict", data=big, headers={"content-type": "application/json"}, timeout=30
    )
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")


def test_openapi_and_model_card(server: str, http: requests.Session) -> None:
    doc = http.get(f"{server}/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    card = http.get(f"{server}/v1/models/breast-cancer", timeout=10).json()["card"]
    assert "not for clinical use" in card.lower()
