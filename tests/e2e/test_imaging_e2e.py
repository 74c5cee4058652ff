"""The imaging route over HTTP, against the real local runner (`make run`): raw bytes and JSON."""

from __future__ import annotations

import base64
import json
from io import BytesIO

import requests
from PIL import Image

from tests.builders import bundled, make_dicom, phi_parts
from tests.conftest import load_event

PNG = base64.b64decode(load_event("imaging_png")["body"])
DICOM = base64.b64decode(load_event("imaging_dicom")["body"])
JSON_BODY = json.loads(load_event("imaging_json")["body"])


def url(server: str, model_id: str = "chest-xray") -> str:
    return f"{server}/v1/imaging/{model_id}/predict"


def test_raw_png_with_explain(server: str, http: requests.Session) -> None:
    r = http.post(url(server), params={"explain": "true"}, data=PNG, headers={"Content-Type": "image/png"}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"model", "request_id", "prediction", "heatmap", "warnings"}
    assert body["model"]["id"] == "chest-xray" and body["model"]["task"] == "imaging"
    assert set(body["prediction"]["probabilities"]) == {"normal", "pneumonia"}
    im = Image.open(BytesIO(base64.b64decode(body["heatmap"]["png"])))
    assert im.format == "PNG" and im.size == (body["heatmap"]["width"], body["heatmap"]["height"])
    if body["model"]["synthetic"]:
        assert any("SYNTHETIC" in w for w in body["warnings"])


def test_json_and_raw_png_agree(server: str, http: requests.Session) -> None:
    raw = http.post(url(server), data=PNG, headers={"Content-Type": "image/png"}, timeout=30).json()
    js = http.post(url(server), json={"image": base64.b64encode(PNG).decode()}, timeout=30).json()
    assert raw["prediction"] == js["prediction"]
    assert raw["heatmap"] is None and js["heatmap"] is None
    assert http.post(url(server), json=JSON_BODY, timeout=30).status_code == 200


def test_raw_dicom_leaks_no_identifiers(server: str, http: requests.Session) -> None:
    for accept in ("application/json", "application/fhir+json"):
        r = http.post(
            url(server),
            data=DICOM,
            params={"explain": "true"},
            headers={"Content-Type": "application/dicom", "Accept": accept},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(accept)
        for part in phi_parts():
            assert part not in r.text


def test_fhir_bundle_over_http(server: str, http: requests.Session) -> None:
    r = http.post(
        url(server), data=PNG, headers={"Content-Type": "image/png", "Accept": "application/fhir+json"}, timeout=30
    )
    assert r.status_code == 200, r.text
    kinds = sorted({e["resource"]["resourceType"] for e in r.json()["entry"]})
    assert kinds == ["Device", "DiagnosticReport", "Observation", "Provenance"]


def test_bad_inputs_are_problems_never_5xx(server: str, http: requests.Session) -> None:
    cases = [
        (dict(data=b"GIF89a" + bytes(64), headers={"Content-Type": "image/png"}), 415),
        (dict(data=PNG, headers={"Content-Type": "text/plain"}), 415),
        (dict(data=bundled("CT_small.dcm"), headers={"Content-Type": "application/dicom"}), 422),
        (dict(data=make_dicom(frames=2), headers={"Content-Type": "application/dicom"}), 422),
        (dict(data=PNG, params={"explain": "maybe"}, headers={"Content-Type": "image/png"}), 422),
        (dict(json={"image": "@@@"}), 422),
        (dict(json={"explain": False}), 422),
        (dict(data="{nope", headers={"Content-Type": "application/json"}), 400),
    ]
    for kwargs, status in cases:
        r = http.post(url(server), timeout=30, **kwargs)  # type: ignore[arg-type]
        assert r.status_code == status, (kwargs.get("headers"), r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = http.post(url(server, "no-such-model"), data=PNG, headers={"Content-Type": "image/png"}, timeout=30)
    assert r.status_code == 404
    r = http.post(url(server, "breast-cancer"), data=PNG, headers={"Content-Type": "image/png"}, timeout=30)
    assert r.status_code == 404
