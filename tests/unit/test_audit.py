"""medserve.audit: AuditEvent shape (validated by fhir.resources), no caller strings, outcomes, sinks."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from medserve import audit
from medserve.registry import Registry
from tests.conftest import MODELS, load_event

AuditEventModel = pytest.importorskip("fhir.resources.R4B.auditevent").AuditEvent
MARKER = "QQMARKER7731"
ENTRY = Registry.load(MODELS, task="imaging", sessions=False).get("chest-xray", task="imaging")
INPUT_SHA = "ab" * 32


@pytest.fixture
def api_event() -> dict[str, Any]:
    """A real-shaped imaging request with a marker planted in everything the caller controls."""
    event = copy.deepcopy(load_event("imaging_dicom"))
    event["path"] = f"/v1/imaging/{MARKER}/predict"
    event["pathParameters"] = {"model_id": MARKER}
    event["queryStringParameters"] = {"explain": MARKER}
    event["multiValueQueryStringParameters"] = {"explain": [MARKER]}
    event["headers"] = {"User-Agent": MARKER, "X-Note": MARKER, "Content-Type": "application/dicom"}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    event["body"] = MARKER
    event["requestContext"]["path"] = f"/Prod/v1/imaging/{MARKER}/predict"
    event["requestContext"]["identity"]["userAgent"] = MARKER
    event["requestContext"]["identity"]["sourceIp"] = "198.51.100.77"
    return event


@pytest.fixture
def s3_record() -> dict[str, Any]:
    """The S3 record inside the real-shaped SQS event, with the marker in its object key."""
    body = json.loads(load_event("sqs_s3_put")["Records"][0]["body"])
    rec: dict[str, Any] = body["Records"][0]
    rec["s3"]["object"]["key"] = f"incoming/chest-xray/{MARKER}.dcm"
    return rec


def _details(rec: dict[str, Any], name: str) -> dict[str, str]:
    entity = next(e for e in rec["entity"] if e["name"] == name)
    return {d["type"]: d["valueString"] for d in entity["detail"]}


def test_api_record_validates_and_says_who_what_when(api_event: dict[str, Any]) -> None:
    rec = audit.api_record(api_event, 200, ENTRY, INPUT_SHA, 1234, 12.3456)
    AuditEventModel.model_validate(rec)
    assert rec["outcome"] == "0" and rec["outcomeDesc"] == "HTTP 200 OK"
    assert rec["type"]["code"] == "rest" and rec["action"] == "E" and rec["recorded"].endswith("Z")
    caller, model = rec["agent"]
    identity = api_event["requestContext"]["identity"]
    assert caller["requestor"] is True and caller["who"]["identifier"]["value"] == identity["userArn"]
    assert caller["altId"] == identity["caller"] and identity["accountId"] in caller["name"]
    assert model["requestor"] is False and model["who"]["identifier"]["value"] == ENTRY.id
    request = next(e for e in rec["entity"] if e["name"] == "api")
    assert request["what"]["identifier"]["value"] == api_event["requestContext"]["requestId"]
    assert _details(rec, "api") == {
        "method": "POST",
        "route": "/v1/imaging/{model_id}/predict",
        "status": "200",
        "latency_ms": "12.346",
    }
    assert _details(rec, "model") == {"version": ENTRY.version, "sha256": ENTRY.sha256}
    inp = next(e for e in rec["entity"] if e["name"] == "input")
    assert inp["what"]["identifier"]["value"] == f"sha256:{INPUT_SHA}" and _details(rec, "input") == {
        "size_bytes": "1234"
    }


def test_no_caller_string_reaches_the_record(api_event: dict[str, Any]) -> None:
    text = json.dumps(audit.api_record(api_event, 422, None, INPUT_SHA, 12, 1.0))
    assert MARKER not in text
    assert "198.51.100.77" not in text  # no network address either


def test_a_raw_path_in_place_of_the_resource_template_is_not_recorded(api_event: dict[str, Any]) -> None:
    api_event["resource"] = f"/v1/imaging/{MARKER} x/predict"
    rec = audit.api_record(api_event, 404, None, None, None, 0.5)
    assert _details(rec, "api")["route"] == "unmatched" and MARKER not in json.dumps(rec)


def test_refused_request_without_model_or_body_still_validates(api_event: dict[str, Any]) -> None:
    api_event["requestContext"]["identity"] = {"userArn": None, "caller": None, "accountId": None}
    rec = audit.api_record(api_event, 404, None, None, None, 0.2)
    AuditEventModel.model_validate(rec)
    assert [e["name"] for e in rec["entity"]] == ["api"]
    (caller,) = rec["agent"]
    assert "identifier" not in caller["who"] and caller["requestor"] is True


@pytest.mark.parametrize(
    ("status", "code"),
    [(200, "0"), (204, "0"), (400, "4"), (404, "4"), (406, "4"), (413, "4"), (415, "4"), (422, "4")]
    + [(500, "12"), (502, "8"), (503, "8"), (504, "8")],
)
def test_outcome_codes(api_event: dict[str, Any], status: int, code: str) -> None:
    rec = audit.api_record(api_event, status, ENTRY, INPUT_SHA, 1, 1.0)
    assert rec["outcome"] == code
    assert rec["outcomeDesc"].startswith(f"HTTP {status} ") and MARKER not in rec["outcomeDesc"]
    AuditEventModel.model_validate(rec)


def test_batch_row_record_hashes_the_key_and_names_the_s3_principal(s3_record: dict[str, Any]) -> None:
    source = audit.s3_source(s3_record)
    rec = audit.batch_record(source, 422, ENTRY, INPUT_SHA, 88, 3.0, request_id="batch-rid", row=4)
    AuditEventModel.model_validate(rec)
    assert MARKER not in json.dumps(rec)
    assert rec["type"]["code"] == "110100" and rec["outcome"] == "4"
    assert rec["agent"][0]["who"]["identifier"]["value"] == s3_record["userIdentity"]["principalId"]
    details = _details(rec, "batch")
    assert details["object_key_sha256"] == audit.sha256_hex(s3_record["s3"]["object"]["key"])
    assert details["row"] == "4" and details["status"] == "422"


def test_a_plain_key_is_hashed_never_kept() -> None:
    rec = audit.batch_record({"key": f"incoming/x/{MARKER}"}, 200, None, None, None, 1.0, request_id="r")
    assert MARKER not in json.dumps(rec)
    assert _details(rec, "batch")["object_key_sha256"] == audit.sha256_hex(f"incoming/x/{MARKER}")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_emit_writes_one_marked_json_line_to_stdout_and_nothing_through_the_root(
    api_event: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    collect = _Collect()
    root.addHandler(collect)
    try:
        rec = audit.api_record(api_event, 415, ENTRY, INPUT_SHA, 3, 0.7)
        audit.emit(rec)
    finally:
        root.removeHandler(collect)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {"audit": True, "resource": rec}
    assert collect.records == []  # no second, differently formatted copy (Powertools, Lambda's root handler)


def test_local_file_sink_appends_one_line_per_record(
    api_event: dict[str, Any], s3_record: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".local" / "audit.jsonl"
    monkeypatch.setenv(audit.AUDIT_FILE_ENV, str(path))
    first = audit.api_record(api_event, 200, ENTRY, INPUT_SHA, 3, 0.7)
    audit.emit(first)
    second = audit.batch_record(audit.s3_source(s3_record), 200, ENTRY, INPUT_SHA, 9, 1.1, request_id="b", row=0)
    audit.emit(second)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [first, second]
    assert MARKER not in path.read_text(encoding="utf-8")


def test_no_file_without_the_environment_variable(
    api_event: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(audit.AUDIT_FILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    audit.emit(audit.api_record(api_event, 200, ENTRY, INPUT_SHA, 3, 0.7))
    assert list(tmp_path.iterdir()) == []
