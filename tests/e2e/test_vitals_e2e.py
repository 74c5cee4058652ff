"""The vitals route over HTTP, against the real local runner (`make run`)."""

from __future__ import annotations

import json

import requests

from tests.conftest import load_event

BODY = json.loads(load_event("vitals_predict")["body"])
INVALID = json.loads(load_event("vitals_predict_invalid")["body"])


def url(server: str, model_id: str = "vitals-deterioration") -> str:
    return f"{server}/v1/vitals/{model_id}/predict"


def test_vitals_model_is_listed(server: str, http: requests.Session) -> None:
    r = http.get(f"{server}/v1/models/vitals-deterioration", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "vitals"
    assert body["synthetic"] is True
    assert body["vitals"]["horizon_hours"] == 24


def test_predict_with_explain_over_http(server: str, http: requests.Session) -> None:
    r = http.post(url(server), json={**BODY, "explain": True}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"model", "request_id", "prediction", "news2", "warnings", "contributions"}
    assert body["model"]["id"] == "vitals-deterioration"
    assert len(body["model"]["sha256"]) == 64
    assert body["request_id"]
    assert body["prediction"]["horizon_hours"] == 24
    assert body["news2"]["risk"] == "high"
    times = [o["time"] for o in BODY["observations"]]
    assert [c["start"] for c in body["contributions"]] == times
    assert any("SYNTHETIC" in w for w in body["warnings"])


def test_fhir_over_http(server: str, http: requests.Session) -> None:
    r = http.post(url(server), json=BODY, headers={"Accept": "application/fhir+json"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    kinds = sorted(e["resource"]["resourceType"] for e in r.json()["entry"])
    assert kinds == ["Device", "Observation", "Provenance", "RiskAssessment"]


def test_bad_inputs_are_problems_never_5xx(server: str, http: requests.Session) -> None:
    one = BODY["observations"][:1]
    cases = [
        (http.post(url(server), data="{oops", headers={"content-type": "application/json"}, timeout=10), 400, "body"),
        (http.post(url(server), json={"observations": []}, timeout=10), 422, "observations"),
        (http.post(url(server), json={"observations": one * 501}, timeout=10), 422, "observations"),
        (http.post(url(server), json={"observations": one, "explain": "yes"}, timeout=10), 422, "explain"),
        (http.post(url(server), json=INVALID, timeout=10), 422, "observations[1].spo2"),
        (http.post(url(server, "nope"), json=BODY, timeout=10), 404, None),
        (http.post(url(server, "breast-cancer"), json=BODY, timeout=10), 404, None),
        (http.get(url(server), timeout=10), 405, None),
    ]
    for response, expected, field in cases:
        assert response.status_code == expected, (expected, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == expected
        assert {"type", "title", "detail", "request_id"} <= set(problem)
        if field:
            assert field in [e["field"] for e in problem["errors"]]
