"""Clinical outputs through the handlers: DICOM SR on Accept, AIAST + Provenance, one AuditEvent per request."""

from __future__ import annotations

import email
import io
import json
import logging
from pathlib import Path
from typing import Any

import pydicom
import pytest

from medserve import audit
from medserve.api import lambda_entry, task_app
from medserve.distribution import DEFAULT_WINDOW, Windows, band_window
from tests.builders import PHI, make_dicom, phi_parts, png_bytes, ramp
from tests.conftest import FakeContext, invoke, live_folder, load_event, load_handler
from tests.unit.test_imaging_handler import raw_event

AIAST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST"}


def _invoke_raw(event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    from tests.conftest import FakeContext, load_handler

    out = load_handler("imaging").lambda_handler(event, FakeContext())
    import base64

    headers = {k.lower(): v for k, v in (out.get("headers") or {}).items()}
    for k, values in (out.get("multiValueHeaders") or {}).items():
        headers.setdefault(k.lower(), values[-1])
    body = out.get("body") or ""
    data = base64.b64decode(body) if out.get("isBase64Encoded") else body.encode()
    return out["statusCode"], headers, data


def test_a_dicom_with_accept_dicom_answers_an_sr_in_the_source_study(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a DX with a canary patient name
    source_bytes = make_dicom()
    source = pydicom.dcmread(io.BytesIO(source_bytes))
    caplog.set_level(logging.DEBUG)
    # When it is posted with Accept: application/dicom
    status, headers, data = _invoke_raw(raw_event(source_bytes, "application/dicom", Accept="application/dicom"))
    # Then the answer is a DICOM SR in the source's study, naming the model, and the canary is only in it
    assert status == 200, data[:300]
    assert headers["content-type"] == "application/dicom"
    sr = pydicom.dcmread(io.BytesIO(data))
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID and sr.SOPInstanceUID != source.SOPInstanceUID
    assert str(sr.PatientName) == PHI["PatientName"]
    refs = json.dumps(sr.to_json_dict())
    assert source.SOPInstanceUID in refs
    logs = "\n".join(r.getMessage() for r in caplog.records) + capsys.readouterr().out
    assert not [p for p in phi_parts() if p in logs]


def test_explain_with_accept_dicom_answers_sr_and_heatmap_as_multipart() -> None:
    status, headers, data = _invoke_raw(
        raw_event(make_dicom(), "application/dicom", {"explain": "true"}, Accept="application/dicom")
    )
    assert status == 200
    assert headers["content-type"].startswith('multipart/related; type="application/dicom"')
    message = email.message_from_bytes(b"Content-Type: " + headers["content-type"].encode() + b"\r\n\r\n" + data)
    parts = [pydicom.dcmread(io.BytesIO(p.get_payload(decode=True))) for p in message.get_payload()]
    assert [p.Modality for p in parts][0] == "SR"
    assert len(parts) == 2 and parts[1].SOPClassUID != parts[0].SOPClassUID


def test_a_png_with_accept_dicom_is_406_naming_the_reason() -> None:
    status, headers, body = invoke(
        "imaging", raw_event(png_bytes(ramp().astype("uint8")), "image/png", Accept="application/dicom")
    )
    assert status == 406
    assert headers["content-type"] == "application/problem+json"
    assert "DICOM" in body["detail"]


@pytest.mark.parametrize("task_event", ["risk_breast_cancer", "vitals_predict"])
def test_an_accept_the_route_cannot_produce_is_406(task_event: str) -> None:
    event = load_event(task_event)
    event["headers"]["Accept"] = "application/dicom"
    status, _, body = invoke(task_event.split("_")[0], event)
    assert status == 406 and body["errors"][0]["field"] == "header.accept"


def test_q_values_are_honoured() -> None:
    event = load_event("risk_breast_cancer_fhir")
    event["headers"]["Accept"] = "application/fhir+json;q=0, application/json"
    status, headers, _ = invoke("risk", event)
    assert status == 200 and headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("event_name", "task"), [("risk_breast_cancer_fhir", "risk"), ("vitals_predict_fhir", "vitals")]
)
def test_every_fhir_resource_is_ai_labelled_and_the_bundle_has_provenance(event_name: str, task: str) -> None:
    status, _, bundle = invoke(task, load_event(event_name))
    assert status == 200
    resources = [e["resource"] for e in bundle["entry"]]
    assert all(any(AIAST.items() <= s.items() for s in r["meta"]["security"]) for r in resources)
    assert any(AIAST.items() <= s.items() for s in bundle["meta"]["security"])
    (prov,) = [r for r in resources if r["resourceType"] == "Provenance"]
    targets = {t["reference"] for t in prov["target"]}
    results = {f"urn:uuid:{r['id']}" for r in resources if r["resourceType"] not in ("Device", "Provenance")}
    assert targets == results
    assert prov["entity"][0]["what"]["identifier"]["value"].startswith("sha256:")


MARKER = "ZZMARKER-Doe-4471"


def _audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(
    ("task", "event_name", "mutate", "status"),
    [
        ("risk", "risk_breast_cancer", None, 200),
        ("risk", "risk_breast_cancer", lambda e: e.update(body=json.dumps({"instances": [{MARKER: 1}]})), 422),
        ("risk", "risk_breast_cancer", lambda e: e.update(body="{" + MARKER), 400),
        ("risk", "risk_breast_cancer", lambda e: e["pathParameters"].update(model_id="no-such-model"), 404),
        ("vitals", "vitals_predict", None, 200),
        ("imaging", "imaging_png", None, 200),
        ("models", "models_health", None, 200),
        ("models", "models_get", None, 200),
    ],
)
def test_one_audit_record_per_request_without_caller_strings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str, event_name: str, mutate: Any, status: int
) -> None:
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv(audit.AUDIT_FILE_ENV, str(log))
    event = load_event(event_name)
    event["headers"]["User-Agent"] = MARKER
    if mutate is not None:
        mutate(event)
        if event.get("pathParameters", {}).get("model_id") == "no-such-model":
            event["path"] = "/v1/risk/no-such-model/predict"
    got, _, _ = invoke(task, event)
    assert got == status
    records = _audit_lines(log)
    assert len(records) == 1
    record = records[0]
    assert record["resourceType"] == "AuditEvent"
    assert record["outcome"] == audit.outcome(status)[0]
    assert MARKER not in json.dumps(record)


@pytest.mark.parametrize(
    ("task", "event_name", "metric"),
    [
        ("risk", "risk_breast_cancer", "PositiveShare"),
        ("risk", "risk_diabetes", "MeanScore"),
        ("vitals", "vitals_predict", "PositiveShare"),
    ],
)
def test_one_distribution_datapoint_per_window_of_live_predictions_apart_from_other_metrics(
    capsys: pytest.CaptureFixture[str], task: str, event_name: str, metric: str
) -> None:
    # Given a fresh function (its own running sums) and the window recorded for the live version
    app = task_app(task, load_handler(task).REGISTRY)
    handler = lambda_entry(app)
    event = load_event(event_name)
    model_id = event["pathParameters"]["model_id"]
    live = load_handler(task).REGISTRY.get(model_id)
    window = band_window(live_folder(model_id).parent, live.version)
    assert window == json.loads((live_folder(model_id).parent / "live.json").read_text())["band"]["window"]
    seen: list[float] = []
    datapoints: list[dict[str, Any]] = []
    # When live answers arrive until one window is full
    while len(seen) < window:
        capsys.readouterr()
        response = handler(event, FakeContext())
        assert response["statusCode"] == 200
        body = json.loads(response["body"])
        answers = body["predictions"] if "predictions" in body else [body["prediction"]]
        for p in answers:
            seen.append(p["value"] if metric == "MeanScore" else float(p["label"] == live.spec.positive))
        blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
        assert all("ModelId" not in b for b in blobs if "Predictions" in b)  # other metrics keep their dimensions
        datapoints += [b for b in blobs if metric in b]
        # Then nothing is emitted before the window is full ...
        assert bool(datapoints) == (len(seen) >= window), (len(seen), datapoints)
    # ... and then one datapoint: the average over exactly those predictions, per ModelId, nothing else
    (dist,) = datapoints
    assert dist["ModelId"] == model_id
    assert dist[metric][0] == pytest.approx(sum(seen) / len(seen))
    assert any("ModelId" in dims for dims in dist["_aws"]["CloudWatchMetrics"][0]["Dimensions"])
    assert set(dist) <= {"_aws", "ModelId", "service", metric, "function_name"}  # no input value travels
    assert app.distribution.pending(model_id, metric) == 0


@pytest.mark.parametrize(
    ("query", "request_id"),
    [
        ({"version": "2.0.0"}, None),  # a candidate answers: not the version the band describes
        (None, "deploy-hook-1234"),  # the deployment hooks' golden requests
        (None, "snapstart-warmup-7"),  # the SnapStart warm-up
    ],
)
def test_candidates_and_golden_requests_never_count_toward_the_band(
    capsys: pytest.CaptureFixture[str], query: dict[str, str] | None, request_id: str | None
) -> None:
    app = task_app("vitals", load_handler("vitals").REGISTRY)
    handler = lambda_entry(app)
    event = {**load_event("vitals_predict"), "queryStringParameters": query}
    if request_id:
        event["requestContext"] = {**event["requestContext"], "requestId": request_id}
    for _ in range(app.distribution.windows["vitals-deterioration"] + 1):
        assert handler(event, FakeContext())["statusCode"] == 200
    assert app.distribution.pending("vitals-deterioration", "PositiveShare") == 0
    assert "PositiveShare" not in capsys.readouterr().out
    # while the live version pinned by name counts like any live answer
    pinned = {**load_event("vitals_predict"), "queryStringParameters": {"version": "1.0.0"}}
    assert handler(pinned, FakeContext())["statusCode"] == 200
    assert app.distribution.pending("vitals-deterioration", "PositiveShare") == 1


def test_windows_average_every_prediction_of_a_window() -> None:
    windows = Windows({"m": 5})
    assert windows.add("m", [("p", 0.9), ("n", 0.1)], "p") == {}
    assert windows.add("m", [("p", 0.9), ("p", 0.8)], "p") == {}
    # the answer that fills the window closes it, all its predictions included
    assert windows.add("m", [("n", 0.2), ("n", 0.3)], "p") == {"PositiveShare": pytest.approx(3 / 6)}
    assert windows.pending("m", "PositiveShare") == 0
    assert windows.add("m", [], "p") == {} and windows.pending("m", "PositiveShare") == 0
    assert Windows({}).add("other", [(None, 2.0)] * DEFAULT_WINDOW, None) == {"MeanScore": 2.0}


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "application/dicom"])
@pytest.mark.parametrize("event_name", ["models_list", "models_get", "models_health"])
def test_a_get_whose_accept_allows_no_json_is_406(event_name: str, accept: str) -> None:
    event = load_event(event_name)
    event["headers"]["Accept"] = accept
    status, headers, body = invoke("models", event)
    assert status == 406 and headers["content-type"] == "application/problem+json"
    assert body["errors"][0]["field"] == "header.accept"
    event["headers"]["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"  # what a browser sends
    assert invoke("models", event)[0] == 200


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/fhir+json, application/json", "application/fhir+json"),
        ("application/json, application/fhir+json", "application/fhir+json"),
        ("application/fhir+json;q=0.5, application/json", "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("application/fhir+json, */*;q=0.1", "application/fhir+json"),
    ],
)
def test_naming_fhir_asks_for_fhir(accept: str, expected: str) -> None:
    event = load_event("risk_breast_cancer")
    event["headers"]["Accept"] = accept
    status, headers, _ = invoke("risk", event)
    assert status == 200 and headers["content-type"] == expected
