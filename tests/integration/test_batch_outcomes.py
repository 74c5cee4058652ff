"""Every object gets exactly one outcome, and no outcome or log line echoes input values.

Given/When/Then, through moto's S3 -> SQS notification and the real batch handler.
Regression tests for: values from the file that cannot be written as JSON (lone
surrogates, ``NaN`` ids), failures that retrying cannot fix (500 document on the last
receive; infrastructure failures still dead-lettered), PHI in header problems, in the
404 detail and in logs, and the vectorised vitals path (one ``session.run`` per chunk,
the API's results).
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import numpy as np
import pytest
from botocore.exceptions import ClientError

from medserve.batch import storage, worker
from medserve.batch.readers import NOT_A_HEADER, read_table
from medserve.batch.worker import INTERNAL_DETAIL, Settings
from medserve.problems import Problem
from medserve.registry import Registry
from medserve.tasks.risk import service as risk
from medserve.tasks.vitals import batch as vitals_batch
from medserve.tasks.vitals import service as vitals_service
from tests.conftest import MODELS, load_event
from tests.integration.conftest import MAX_RECEIVE, BatchStack

REGISTRY = Registry.load(MODELS)
BC = REGISTRY.get("breast-cancer")
VITALS = REGISTRY.get("vitals-deterioration")
BC_NAMES = [i["name"] for i in BC.manifest["inputs"]]
BC_X = np.load(BC.path / "parity.npz")["in:features"].astype(np.float64)
VITALS_OBS: list[dict[str, Any]] = json.loads(load_event("vitals_predict")["body"])["observations"]
FRAME = re.compile(r"^[^:\s]+\.py:\d+:[\w<>]+$")


def bc_rows(n: int) -> list[dict[str, float]]:
    """``n`` real held-out WDBC rows (cycled), as feature dicts."""
    return [dict(zip(BC_NAMES, (float(v) for v in BC_X[i % len(BC_X)]), strict=True)) for i in range(n)]


def bc_csv(n: int) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BC_NAMES)
    writer.writerows([[row[c] for c in BC_NAMES] for row in bc_rows(n)])
    return buf.getvalue()


def dead_letters(stack: BatchStack) -> list[dict[str, Any]]:
    out = stack.sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, AttributeNames=["All"])
    return list(out.get("Messages") or [])


def handler_entry(model_id: str) -> Any:
    """The batch function's own (separately loaded) model entry."""
    return load_app().REGISTRY.get(model_id)


def load_app() -> Any:
    from tests.conftest import load_handler

    return load_handler("batch")


# --- 1. values that cannot be written as JSON -----------------------------------------------
def test_ids_that_are_not_writable_json_become_row_errors_and_the_result_is_written(stack: BatchStack) -> None:
    # Given JSON Lines whose ids are a lone surrogate, NaN, Infinity, an object and a boolean,
    # beside good rows (one with a non-ASCII id) and a row with a lone-surrogate unknown key
    good = bc_rows(3)
    lines = [
        '{"id":"\\ud800",' + json.dumps(good[0])[1:],
        '{"id": NaN, ' + json.dumps(good[0])[1:],
        '{"id": -Infinity, ' + json.dumps(good[0])[1:],
        json.dumps({"id": {"name": "x"}, **good[0]}),
        json.dumps({"id": True, **good[0]}),
        json.dumps({"id": "Zoë-7", **good[1]}),
        json.dumps({"id": 12.5, **good[2]}),
        '{"\\udfff": 1, ' + json.dumps(good[2])[1:],
    ]
    stack.put("incoming/breast-cancer/ids.jsonl", "\n".join(lines))
    # When the queue is drained
    stack.drain()
    # Then the one outcome is a result: bad ids are row errors (422 on id) and are not echoed
    assert stack.keys() == ["results/breast-cancer/ids.jsonl.json"]
    assert stack.queue_depth(stack.dlq_url) == 0
    res = stack.doc("results/breast-cancer/ids.jsonl.json")["results"]
    for r in res[:5]:
        assert r["id"] is None
        assert r["error"]["status"] == 422
        assert r["error"]["errors"] == [{"field": "id", "message": "must be a string or a finite number"}]
    assert res[5]["id"] == "Zoë-7" and res[6]["id"] == 12.5
    want = bc_predictions(good[1:])
    assert [res[5]["prediction"], res[6]["prediction"]] == want
    assert res[7]["error"]["status"] == 422  # the unknown key is refused, and its name not repeated


def bc_predictions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:

    return list(risk.predict(BC, rows)["predictions"])


def test_documents_are_written_as_ascii_json() -> None:
    # Given a document holding a lone surrogate and a non-ASCII character, put_json writes ASCII JSON
    client = mock.Mock()
    with mock.patch.object(storage, "client", return_value=client):
        storage.put_json("b", "k", {"a": "\ud800", "b": "ü"}, content_type="application/json")
    body = client.put_object.call_args.kwargs["Body"]
    assert body.isascii() and json.loads(body) == {"a": "\ud800", "b": "ü"}
    with pytest.raises(ValueError, match="JSON compliant"), mock.patch.object(storage, "client", return_value=client):
        storage.put_json("b", "k", {"a": float("nan")}, content_type="application/json")


# --- 2. failures retrying cannot fix: a 500 document on the last receive ---------------------
def _nan_model(entry: Any) -> Any:
    """Patch ``entry.run`` so the model answers NaN (the risk library then raises ValueError)."""

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        return {name: np.full((n, 1), np.nan, dtype=np.float32) for name in entry.output_names}

    return mock.patch.object(entry, "run", side_effect=run)


def test_a_failure_that_never_succeeds_gets_a_500_document_on_the_last_receive(
    stack: BatchStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a model that answers NaN (a non-finite output is MedServe's bug, not the file's)
    stack.drain()  # moto's s3:TestEvent
    stack.responses.clear()
    stack.put("incoming/breast-cancer/nan.csv", bc_csv(2))
    with _nan_model(handler_entry("breast-cancer")), caplog.at_level("INFO"):
        # When the queue is drained (every failed receive comes straight back)
        stack.drain()
    # Then it was retried, and on the last receive got a 500 problem document, not the DLQ
    assert len(stack.responses) == MAX_RECEIVE
    for response in stack.responses[:-1]:
        assert len(response["batchItemFailures"]) == 1
    assert stack.responses[-1] == {"batchItemFailures": []}
    assert stack.keys() == ["errors/breast-cancer/nan.csv.json"]
    doc = stack.doc("errors/breast-cancer/nan.csv.json")
    assert doc["status"] == 500 and doc["detail"] == INTERNAL_DETAIL
    assert doc["type"].endswith("/internal-error") and doc["model"] == BC.info()
    assert doc["source"]["key"] == "incoming/breast-cancer/nan.csv"
    assert stack.content_type("errors/breast-cancer/nan.csv.json") == "application/problem+json"
    assert stack.queue_depth(stack.queue_url) == 0 and dead_letters(stack) == []
    # and every failure was logged as its type and frames, never its message
    failures = [r.__dict__ for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == MAX_RECEIVE
    assert all(f["error_type"] == "ValueError" for f in failures)
    assert all(f["frames"] and all(FRAME.match(x) for x in f["frames"]) for f in failures)
    assert "non-finite" not in json.dumps([r.__dict__ for r in caplog.records], default=str)


def test_a_failure_that_clears_on_retry_still_gets_its_result(stack: BatchStack) -> None:
    # Given a bug that strikes only the first receive
    stack.drain()  # moto's s3:TestEvent
    stack.responses.clear()
    stack.put("incoming/breast-cancer/flaky.csv", bc_csv(2))
    entry = handler_entry("breast-cancer")
    real = entry.run
    calls = {"n": 0}

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real(feeds)

    with mock.patch.object(entry, "run", side_effect=run):
        stack.drain()
    # Then no 500 was written early: the retry produced the result
    assert stack.keys() == ["results/breast-cancer/flaky.csv.json"]
    assert len(stack.responses) == 2


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDenied", 403), ("SlowDown", 503), ("InternalError", 500)],
)
def test_infrastructure_failures_raise_on_every_receive_and_end_in_the_dlq(
    stack: BatchStack, code: str, status: int
) -> None:
    # Given GetObject always failing with an infrastructure error
    stack.drain()  # moto's s3:TestEvent
    stack.responses.clear()
    stack.put("incoming/breast-cancer/denied.csv", bc_csv(1))
    client = storage.client()
    error = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
    with mock.patch.object(client, "get_object", side_effect=error):
        stack.drain()
    # Then no document is written, even on the last receive: the message is in the (alarmed) DLQ
    assert stack.keys() == []
    assert len(stack.responses) == MAX_RECEIVE
    assert all(len(r["batchItemFailures"]) == 1 for r in stack.responses)
    dead = dead_letters(stack)
    assert len(dead) == 1 and int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= MAX_RECEIVE


def test_a_result_that_cannot_be_written_gets_a_500_document_on_the_last_receive(stack: BatchStack) -> None:
    # Given a result document that cannot be serialised (a bug: a non-finite number in it)
    stack.drain()  # moto's s3:TestEvent
    stack.responses.clear()
    stack.put("incoming/breast-cancer/unwritable.csv", bc_csv(1))
    real = worker.process

    def process(*args: Any, **kwargs: Any) -> dict[str, Any]:
        body = real(*args, **kwargs)
        body["results"][0]["prediction"]["probability"] = float("nan")
        return body

    with mock.patch("medserve.batch.worker.process", side_effect=process):
        stack.drain()
    # Then the failed write is handled: retried, then a 500 problem document
    assert stack.keys() == ["errors/breast-cancer/unwritable.csv.json"]
    assert stack.doc("errors/breast-cancer/unwritable.csv.json")["status"] == 500
    assert dead_letters(stack) == []


def test_max_receives_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSERVE_OUTPUT_BUCKET", "out")
    monkeypatch.delenv("MEDSERVE_BATCH_MAX_RECEIVES", raising=False)
    assert Settings.from_env().max_receives == 3
    monkeypatch.setenv("MEDSERVE_BATCH_MAX_RECEIVES", "5")
    assert Settings.from_env().max_receives == 5


# --- 5. no exception text leaves the function ------------------------------------------------
def test_an_entire_batch_failing_is_answered_not_raised_and_logs_no_message(
    stack: BatchStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given one message whose processing fails with an exception quoting a value
    stack.drain()  # moto's s3:TestEvent
    stack.responses.clear()
    stack.put("incoming/breast-cancer/one.csv", bc_csv(1))
    messages = stack.receive()
    entry = handler_entry("breast-cancer")
    with (
        mock.patch.object(entry, "run", side_effect=RuntimeError("Doe Janet 123456.789")),
        caplog.at_level("DEBUG"),
    ):
        # When the function is invoked with it (every record of the batch fails)
        response = stack.invoke(stack.event_for(messages))
    # Then the handler answers the failure (no BatchProcessingError carrying the text)
    assert response == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    text = json.dumps([r.__dict__ for r in caplog.records], default=str) + caplog.text
    assert "Doe" not in text and "123456.789" not in text
    logged = [r.__dict__ for r in caplog.records if r.__dict__.get("error_type") == "RuntimeError"]
    assert len(logged) == 1 and all(FRAME.match(f) for f in logged[0]["frames"])


def test_a_message_that_is_not_a_notification_is_logged_by_type_only(
    stack: BatchStack, caplog: pytest.LogCaptureFixture
) -> None:
    stack.drain()
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody='{"Records": [{"eventSource": "Doe Janet"}]}')
    with caplog.at_level("INFO"):
        response = stack.invoke(stack.event_for(stack.receive()))
    assert len(response["batchItemFailures"]) == 1
    assert "Doe" not in json.dumps([r.__dict__ for r in caplog.records], default=str)
    assert [r.__dict__["error_type"] for r in caplog.records if "error_type" in r.__dict__] == ["NotAnS3Notification"]


# --- 4. no input values in problem documents -------------------------------------------------
def test_a_csv_without_a_header_row_echoes_none_of_its_first_row(stack: BatchStack) -> None:
    # Given a CSV whose first row is data (a name and numbers), not a header
    rows = bc_rows(2)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows([["Smith John", *(r[c] for c in BC_NAMES)] for r in rows])
    stack.put("incoming/breast-cancer/noheader.csv", buf.getvalue())
    stack.drain()
    # Then the error says the first row is not a header and names cells by position only
    doc = stack.doc("errors/breast-cancer/noheader.csv.json")
    assert doc["status"] == 422 and doc["detail"].startswith(NOT_A_HEADER)
    assert doc["errors"][0] == {"field": "header", "message": NOT_A_HEADER}
    text = json.dumps(doc)
    assert "Smith" not in text and str(rows[0]["mean_radius"]) not in text
    unknown = [e["field"] for e in doc["errors"] if e["message"] == "unknown column for this model"]
    assert unknown == [f"header[{k}]" for k in range(len(BC_NAMES) + 1)]


def test_header_cells_are_named_only_when_plain_identifiers() -> None:
    header = ["id", *BC_NAMES[:-1], "Jane Doe", "mean radius ", "patient_name"]
    with pytest.raises(Problem) as caught:
        read_table((",".join(header) + "\n" + "1," * (len(header) - 1) + "1\n").encode(), "x.csv",
                   required=BC_NAMES, max_rows=10)  # fmt: skip
    problem = caught.value
    fields = {e["field"]: e["message"] for e in problem.errors}
    n = len(BC_NAMES)
    assert fields[f"header[{n}]"] == "unknown column for this model"  # "Jane Doe"
    assert fields[f"header[{n + 1}]"] == "unknown column for this model"  # "mean radius" (stripped) has a space
    assert fields["header.patient_name"] == "unknown column for this model"
    assert fields[f"header.{BC_NAMES[-1]}"] == "required column is missing"
    assert "Jane" not in json.dumps(problem.to_dict()) and NOT_A_HEADER not in problem.detail


def test_an_odd_model_segment_is_not_echoed_in_the_404_document(stack: BatchStack) -> None:
    stack.put("incoming/Doe, Janet 1961/scan.csv", bc_csv(1))
    stack.put("incoming/no-such-model/scan.csv", bc_csv(1))
    stack.drain()
    odd = stack.doc("errors/Doe, Janet 1961/scan.csv.json")
    assert odd["status"] == 404 and "Doe" not in odd["detail"] and "breast-cancer" in odd["detail"]
    plain = stack.doc("errors/no-such-model/scan.csv.json")
    assert plain["status"] == 404 and "no-such-model" in plain["detail"]


# --- 3. vitals: one session.run per chunk, the API's results ---------------------------------
def _sequence(n: int, shift: float = 0.0) -> list[dict[str, Any]]:
    """``n`` observations: the committed event's readings (cycled), hourly from a fixed time."""
    start = datetime(2026, 11, 20, 6, tzinfo=UTC)
    out = []
    for k in range(n):
        o = dict(VITALS_OBS[k % len(VITALS_OBS)])
        o["time"] = (start + timedelta(hours=k, minutes=7 * (k % 3))).isoformat().replace("+00:00", "Z")
        o["heart_rate"] = float(o["heart_rate"]) + shift
        out.append(o)
    return out


SEQUENCES = [_sequence(1), _sequence(2, 5), _sequence(12, -3), _sequence(5, 20), _sequence(40, 2), VITALS_OBS]


def _api(observations: list[dict[str, Any]], explain: bool = False) -> dict[str, Any]:
    return vitals_service.predict(VITALS, vitals_service.parse(VITALS, {"observations": observations,
                                                                         "explain": explain}))  # fmt: skip


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["prediction"]["probability"] == pytest.approx(want["prediction"]["probability"], abs=1e-6)
    assert {k: v for k, v in got["prediction"].items() if k != "probability"} == {
        k: v for k, v in want["prediction"].items() if k != "probability"
    }
    assert got["news2"] == want["news2"]
    assert got.get("warnings") == want.get("warnings")
    if "contributions" in want:
        assert [(c["start"], c["end"]) for c in got["contributions"]] == [
            (c["start"], c["end"]) for c in want["contributions"]
        ]
        assert [c["weight"] for c in got["contributions"]] == pytest.approx(
            [c["weight"] for c in want["contributions"]], abs=2e-6
        )


@pytest.mark.parametrize("chunk", [vitals_batch.VITALS_CHUNK, 2])
def test_vitals_sequences_of_different_lengths_match_the_api_in_one_run_per_chunk(chunk: int) -> None:
    # Given sequences of 1 to 40 observations (padded together), a bad one among them
    lines = [json.dumps({"id": f"s{k}", "observations": obs}) for k, obs in enumerate(SEQUENCES)]
    lines.insert(2, json.dumps({"id": "bad", "observations": [{**VITALS_OBS[0], "spo2": 101}]}))
    table = read_table("\n".join(lines).encode(), "seq.jsonl", required=[], max_rows=100)
    real = VITALS.run
    with mock.patch.object(VITALS, "run", side_effect=real) as run:
        # When the batch predicts them
        results = vitals_batch.vitals_rows(VITALS, table, chunk=chunk)
    # Then each valid sequence went through ceil(6 / chunk) batched runs ...
    assert run.call_count == -(-len(SEQUENCES) // chunk)
    assert all(call.args[0][VITALS.spec.input_names[1]].ndim == 2 for call in run.call_args_list)
    # ... and got exactly the API's answer; the bad one its own error
    assert results[2]["id"] == "bad" and results[2]["error"]["errors"][0]["field"] == "observations[0].spo2"
    good = [r for r in results if "prediction" in r]
    assert [r["id"] for r in good] == [f"s{k}" for k in range(len(SEQUENCES))]
    for r, obs in zip(good, SEQUENCES, strict=True):
        _assert_same(r, _api(obs))


def test_vitals_explain_lines_carry_the_apis_contributions() -> None:
    lines = [json.dumps({"observations": obs, "explain": True}) for obs in (SEQUENCES[2], SEQUENCES[4])]
    table = read_table("\n".join(lines).encode(), "seq.jsonl", required=[], max_rows=10)
    results = vitals_batch.vitals_rows(VITALS, table)
    for r, obs in zip(results, (SEQUENCES[2], SEQUENCES[4]), strict=True):
        _assert_same(r, _api(obs, explain=True))


def test_vitals_csv_through_s3_matches_the_api(stack: BatchStack) -> None:
    # Given a CSV of three sequences of different lengths, ids interleaved
    cols = ["id", "time", "heart_rate", "respiratory_rate", "spo2", "temperature", "systolic_bp",
            "consciousness", "supplemental_oxygen"]  # fmt: skip
    rows = []
    for seq_id, obs in (("a", SEQUENCES[1]), ("b", SEQUENCES[4]), ("c", SEQUENCES[0])):
        rows += [[seq_id, o["time"], *(o[c] for c in cols[2:8]), str(o["supplemental_oxygen"]).lower()] for o in obs]
    rows = rows[::2] + rows[1::2]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows(rows)
    stack.put("incoming/vitals-deterioration/ward.csv", buf.getvalue())
    stack.drain()
    doc = stack.doc("results/vitals-deterioration/ward.csv.json")
    by_id = {r["id"]: r for r in doc["results"]}
    for seq_id, obs in (("a", SEQUENCES[1]), ("b", SEQUENCES[4]), ("c", SEQUENCES[0])):
        _assert_same(by_id[seq_id], _api(obs))
