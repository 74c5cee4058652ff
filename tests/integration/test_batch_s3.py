"""The batch pipeline end to end inside moto: S3 put -> S3 notification -> SQS -> BatchFunction -> S3.

Given/When/Then. Every object must end with exactly one outcome document:
``results/<model_id>/<name>.json`` or ``errors/<model_id>/<name>.json``.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from unittest import mock
from urllib.parse import unquote_plus

import numpy as np
import pytest
from botocore.exceptions import ClientError

from medserve.api import SYNTHETIC_WARNING
from medserve.batch import storage
from medserve.batch.keys import key_hash
from medserve.batch.worker import Settings
from medserve.registry import Registry
from medserve.tasks.risk import service as risk
from medserve.tasks.vitals import service as vitals_service
from tests.conftest import MODELS, load_event
from tests.integration.conftest import INPUT, OUTPUT, BatchStack

REGISTRY = Registry.load(MODELS)
BC = REGISTRY.get("breast-cancer")
DIAB = REGISTRY.get("diabetes-progression")
VITALS = REGISTRY.get("vitals-deterioration")
BC_NAMES = [i["name"] for i in BC.manifest["inputs"]]
DIAB_NAMES = [i["name"] for i in DIAB.manifest["inputs"]]
BC_X = np.load(BC.path / "parity.npz")["in:features"].astype(np.float64)
DIAB_X = np.load(DIAB.path / "parity.npz")["in:features"].astype(np.float64)
VITALS_OBS = json.loads(load_event("vitals_predict")["body"])["observations"]


def bc_rows(n: int) -> list[dict[str, float]]:
    """``n`` real held-out WDBC rows (cycled), as feature dicts."""
    return [dict(zip(BC_NAMES, (float(v) for v in BC_X[i % len(BC_X)]), strict=True)) for i in range(n)]


def to_csv(rows: list[dict[str, Any]], ids: list[str] | None = None, columns: list[str] | None = None) -> str:
    columns = columns or list(rows[0])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow((["id"] if ids is not None else []) + columns)
    for k, row in enumerate(rows):
        writer.writerow(([ids[k]] if ids is not None else []) + [row.get(c, "") for c in columns])
    return buf.getvalue()


def expected_predictions(entry: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return risk.predict(entry, rows)["predictions"]


def without_time(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "processed_at"}


def all_keys(stack: BatchStack) -> list[str]:
    return stack.keys()


# --- good files ---------------------------------------------------------------------------
def test_good_csv_gets_one_result_with_every_row_predicted_in_order(stack: BatchStack) -> None:
    # Given a CSV of three real WDBC cases with ids
    rows = bc_rows(3)
    stack.put("incoming/breast-cancer/clinic.csv", to_csv(rows, ids=["a-1", "a-2", "a-3"]))
    # When the queue is drained through the batch function
    stack.drain()
    # Then exactly one result document exists, with every row predicted as the API would
    assert all_keys(stack) == ["results/breast-cancer/clinic.csv.json"]
    doc = stack.doc("results/breast-cancer/clinic.csv.json")
    assert doc["model"] == BC.info()
    head = stack.s3.head_object(Bucket=INPUT, Key="incoming/breast-cancer/clinic.csv")
    assert doc["source"]["bucket"] == INPUT and doc["source"]["key"] == "incoming/breast-cancer/clinic.csv"
    assert doc["source"]["etag"] == head["ETag"].strip('"') and doc["source"]["size"] == head["ContentLength"]
    assert doc["summary"] == {"rows": 3, "ok": 3, "failed": 0}
    assert [r["row"] for r in doc["results"]] == [0, 1, 2]
    assert [r["id"] for r in doc["results"]] == ["a-1", "a-2", "a-3"]
    want = expected_predictions(BC, rows)
    assert [r["prediction"] for r in doc["results"]] == want
    assert doc["warnings"] == []  # real data: no synthetic warning
    assert stack.content_type("results/breast-cancer/clinic.csv.json") == "application/json"
    assert stack.queue_depth(stack.queue_url) == 0


def test_good_jsonl_regression_rows_carry_value_and_unit(stack: BatchStack) -> None:
    rows = [dict(zip(DIAB_NAMES, (float(v) for v in DIAB_X[i]), strict=True)) for i in range(4)]
    lines = [json.dumps({"id": 100 + k, **row}) for k, row in enumerate(rows)]
    stack.put("incoming/diabetes-progression/batch.jsonl", "\n".join(lines) + "\n\n")
    stack.drain()
    doc = stack.doc("results/diabetes-progression/batch.jsonl.json")
    assert doc["format"] == "jsonl"
    assert [r["id"] for r in doc["results"]] == [100, 101, 102, 103]
    want = expected_predictions(DIAB, rows)
    assert [r["prediction"]["value"] for r in doc["results"]] == pytest.approx([p["value"] for p in want])
    assert all(r["prediction"]["unit"] == want[0]["unit"] for r in doc["results"])


def test_large_csv_every_row_predicted_in_order_ids_kept_across_chunks(stack: BatchStack) -> None:
    # Given 2,500 rows (three chunks of at most 1,000), two bad rows on chunk boundaries
    rows: list[dict[str, Any]] = bc_rows(2500)
    rows[999] = {**rows[999], "mean_radius": -5.0}
    rows[1000] = {**rows[1000], "worst_texture": "abc"}
    ids = [f"p{k:05d}" for k in range(2500)]
    stack.put("incoming/breast-cancer/big.csv", to_csv(rows, ids=ids))
    stack.drain()
    doc = stack.doc("results/breast-cancer/big.csv.json")
    assert doc["summary"] == {"rows": 2500, "ok": 2498, "failed": 2}
    assert [r["row"] for r in doc["results"]] == list(range(2500))
    assert [r["id"] for r in doc["results"]] == ids
    assert [r["line"] for r in doc["results"]] == list(range(2, 2502))
    good = [k for k in range(2500) if k not in (999, 1000)]
    # one direct session.run over all good rows agrees with the chunked batch
    x = np.array([[rows[k][n] for n in BC_NAMES] for k in good], dtype=np.float32)
    raw = BC.run({BC.manifest["onnx"]["inputs"][0]["name"]: x})
    # (rounded in float64 like the service: float32 rounding can land 1 ulp away, e.g. 0.99882 vs 0.998819)
    probs = np.asarray(next(iter(raw.values())), dtype=np.float64).reshape(-1)
    got = [doc["results"][k]["prediction"]["probability"] for k in good]
    assert got == pytest.approx(np.clip(probs, 0, 1).round(6).tolist(), abs=1e-6)
    assert [e["field"] for e in doc["results"][999]["error"]["errors"]] == ["mean_radius"]
    assert doc["results"][999]["error"]["errors"][0]["message"].startswith("must be between")
    assert doc["results"][1000]["error"]["errors"] == [{"field": "worst_texture", "message": "must be a number"}]


# --- bad rows -----------------------------------------------------------------------------
def test_bad_rows_are_reported_in_their_own_row_and_good_rows_predicted(stack: BatchStack) -> None:
    rows: list[dict[str, Any]] = bc_rows(5)
    rows[1] = {**rows[1], "mean_area": 1e9}  # out of range
    rows[2] = {k: v for k, v in rows[2].items() if k != "mean_texture"}  # empty cell
    rows[3] = {**rows[3], "mean_smoothness": "nan"}
    text = to_csv(rows, ids=["g0", "b1", "b2", "b3", "g4"], columns=BC_NAMES)
    text += "g5,1,2\n"  # wrong number of cells
    stack.put("incoming/breast-cancer/mixed.csv", text)
    stack.drain()
    assert all_keys(stack) == ["results/breast-cancer/mixed.csv.json"]
    doc = stack.doc("results/breast-cancer/mixed.csv.json")
    assert doc["summary"] == {"rows": 6, "ok": 2, "failed": 4}
    res = doc["results"]
    assert [r["id"] for r in res] == ["g0", "b1", "b2", "b3", "g4", "g5"]
    assert [("prediction" in r) for r in res] == [True, False, False, False, True, False]
    assert res[0]["prediction"] == expected_predictions(BC, [rows[0]])[0]
    assert res[4]["prediction"] == expected_predictions(BC, [rows[4]])[0]
    for r in res[1:4] + res[5:]:
        assert r["error"]["status"] == 422 and r["error"]["type"].endswith("unprocessable-content")
        assert r["error"]["request_id"] == doc["request_id"]  # a whole problem, with the document's request id
    assert [e["field"] for e in res[1]["error"]["errors"]] == ["mean_area"]
    assert res[2]["error"]["errors"] == [{"field": "mean_texture", "message": "required feature is missing"}]
    assert res[3]["error"]["errors"] == [{"field": "mean_smoothness", "message": "must be a finite number"}]
    assert res[5]["error"]["errors"][0]["field"] == "row"
    # no row value is echoed in any message
    assert "1000000000" not in json.dumps(res) and "1e+09" not in json.dumps(res)


def test_jsonl_bad_lines_are_bad_rows(stack: BatchStack) -> None:
    good = bc_rows(2)
    lines = [
        json.dumps(good[0]),
        "{not json",
        "[1, 2]",
        json.dumps({**good[1], "extra": 1}),
        json.dumps(good[1]),
        "[" * 5000 + "]" * 5000,
    ]
    stack.put("incoming/breast-cancer/rows.ndjson", "\n".join(lines))
    stack.drain()
    doc = stack.doc("results/breast-cancer/rows.ndjson.json")
    res = doc["results"]
    assert doc["summary"] == {"rows": 6, "ok": 2, "failed": 4}
    assert res[5]["error"]["status"] == 400  # nested too deeply to parse: a bad row, not a retry
    assert res[1]["error"]["status"] == 400 and res[1]["error"]["errors"] == [
        {"field": "line", "message": "the line is not valid JSON"}
    ]
    assert res[2]["error"]["status"] == 422
    assert res[3]["error"]["errors"] == [{"field": "extra", "message": "unknown feature for this model"}]
    assert [r["line"] for r in res] == [1, 2, 3, 4, 5, 6]


# --- poison files -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "body", "status", "field"),
    [
        ("garbage.csv", bytes(range(256)) * 4, 415, "object"),
        ("empty.csv", b"", 422, "object"),
        ("blank.csv", b"  \n\n", 422, "object"),
        ("latin1.csv", "mean_radius\nd\xe9j\xe0\n".encode("latin-1"), 400, "object"),
        ("header-only.csv", ",".join(BC_NAMES).encode(), 422, "object"),
        ("wrong-header.csv", b"a,b,c\n1,2,3\n", 422, "header.a"),
        ("scan.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 415, "object"),
    ],
)
def test_unreadable_objects_get_an_error_document_only(
    stack: BatchStack, name: str, body: bytes, status: int, field: str
) -> None:
    stack.put(f"incoming/breast-cancer/{name}", body)
    stack.drain()
    assert all_keys(stack) == [f"errors/breast-cancer/{name}.json"]
    doc = stack.doc(f"errors/breast-cancer/{name}.json")
    assert doc["status"] == status
    assert {"type", "title", "detail", "request_id", "processed_at", "source", "model"} <= set(doc)
    assert doc["source"]["key"] == f"incoming/breast-cancer/{name}"
    assert doc["model"] == BC.info()
    assert field in [e["field"] for e in doc.get("errors", [])]
    assert stack.content_type(f"errors/breast-cancer/{name}.json") == "application/problem+json"
    assert stack.queue_depth(stack.queue_url) == 0 and stack.queue_depth(stack.dlq_url) == 0


def test_unknown_columns_refuse_the_file_naming_every_column(stack: BatchStack) -> None:
    rows = [{**r, "patient_name": "x", "mean_radius": r["mean_radius"]} for r in bc_rows(2)]
    cols = [*BC_NAMES[1:], "patient_name", "patient_name"]
    stack.put("incoming/breast-cancer/cols.csv", to_csv(rows, columns=cols))
    stack.drain()
    doc = stack.doc("errors/breast-cancer/cols.csv.json")
    assert doc["status"] == 422
    assert {(e["field"], e["message"]) for e in doc["errors"]} == {
        ("header.patient_name", "unknown column for this model"),
        ("header.patient_name", "duplicate column"),
        ("header.mean_radius", "required column is missing"),
    }
    assert all_keys(stack) == ["errors/breast-cancer/cols.csv.json"]


def test_unknown_model_and_misplaced_keys_are_error_documents_not_retries(stack: BatchStack) -> None:
    stack.put("incoming/no-such-model/x.csv", to_csv(bc_rows(1)))
    stack.put("incoming/loose.csv", to_csv(bc_rows(1)))
    stack.drain()
    assert all_keys(stack) == ["errors/loose.csv.json", "errors/no-such-model/x.csv.json"]
    unknown = stack.doc("errors/no-such-model/x.csv.json")
    assert unknown["status"] == 404 and unknown["model"] is None
    assert "breast-cancer" in unknown["detail"]
    loose = stack.doc("errors/loose.csv.json")
    assert loose["status"] == 422 and loose["errors"] == [
        {"field": "key", "message": "must be incoming/<model_id>/<name>"}
    ]
    assert stack.queue_depth(stack.dlq_url) == 0


def test_too_large_object_is_refused_before_download(stack: BatchStack, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = stack.app.WORKER
    monkeypatch.setattr(worker, "settings", Settings(output_bucket=OUTPUT, max_bytes=1000, max_rows=100_000))
    stack.put("incoming/breast-cancer/huge.csv", to_csv(bc_rows(20)))
    calls: list[str] = []
    real_get = storage.get

    def spy(*args: Any, **kwargs: Any) -> bytes:
        calls.append("get")
        return real_get(*args, **kwargs)

    monkeypatch.setattr(storage, "get", spy)
    stack.drain()
    doc = stack.doc("errors/breast-cancer/huge.csv.json")
    assert doc["status"] == 413 and "MEDSERVE_BATCH_MAX_BYTES" in doc["detail"]
    assert calls == []


def test_too_many_rows_is_refused(stack: BatchStack, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = stack.app.WORKER
    monkeypatch.setattr(worker, "settings", Settings(output_bucket=OUTPUT, max_bytes=10**8, max_rows=5))
    stack.put("incoming/breast-cancer/five.csv", to_csv(bc_rows(5)))
    stack.put("incoming/breast-cancer/six.csv", to_csv(bc_rows(6)))
    stack.drain()
    assert all_keys(stack) == ["errors/breast-cancer/six.csv.json", "results/breast-cancer/five.csv.json"]
    doc = stack.doc("errors/breast-cancer/six.csv.json")
    assert doc["status"] == 413 and "MEDSERVE_BATCH_MAX_ROWS" in doc["detail"]


# --- delivery semantics -------------------------------------------------------------------
def test_test_event_is_acknowledged_and_skipped(stack: BatchStack) -> None:
    messages = stack.receive()
    assert [json.loads(m["Body"]).get("Event") for m in messages] == ["s3:TestEvent"]
    response = stack.invoke(stack.event_for(messages))
    assert response == {"batchItemFailures": []}
    assert all_keys(stack) == []


def test_duplicate_delivery_rewrites_the_same_single_document(stack: BatchStack) -> None:
    stack.drain()  # the s3:TestEvent
    stack.put("incoming/breast-cancer/dup.csv", to_csv(bc_rows(3), ids=["1", "2", "3"]))
    messages = stack.receive()
    assert len(messages) == 1
    event = stack.event_for(messages)
    assert stack.invoke(event) == {"batchItemFailures": []}
    first = stack.doc("results/breast-cancer/dup.csv.json")
    assert stack.invoke(event) == {"batchItemFailures": []}
    assert all_keys(stack) == ["results/breast-cancer/dup.csv.json"]
    second = stack.doc("results/breast-cancer/dup.csv.json")
    assert without_time(first) == without_time(second)
    assert first["request_id"] == messages[0]["MessageId"]


@pytest.mark.parametrize(
    "name", ["my scan 1.csv", "a+b=c.csv", "Ünïcødé 患者.csv", "sub dir/nested+name.csv", "100% sure?.csv"]
)
def test_url_encoded_keys_are_decoded(stack: BatchStack, name: str) -> None:
    stack.put(f"incoming/breast-cancer/{name}", to_csv(bc_rows(1)))
    raw = [json.loads(m["Body"]) for m in stack.receive()]
    keys = [r["Records"][0]["s3"]["object"]["key"] for r in raw if "Records" in r]
    assert keys and keys[0] != f"incoming/breast-cancer/{name}"  # S3 sends it URL-encoded
    stack.drain()
    assert all_keys(stack) == [f"results/breast-cancer/{name}.json"]
    assert stack.doc(f"results/breast-cancer/{name}.json")["source"]["key"] == f"incoming/breast-cancer/{name}"


def test_exactly_one_outcome_when_a_file_is_fixed_or_broken_again(stack: BatchStack) -> None:
    key = "incoming/breast-cancer/fixme.csv"
    stack.put(key, b"wrong,header\n1,2\n")
    stack.drain()
    assert all_keys(stack) == ["errors/breast-cancer/fixme.csv.json"]
    stack.put(key, to_csv(bc_rows(2)))
    stack.drain()
    assert all_keys(stack) == ["results/breast-cancer/fixme.csv.json"]
    stack.put(key, b"")
    stack.drain()
    assert all_keys(stack) == ["errors/breast-cancer/fixme.csv.json"]


def test_folder_markers_are_skipped(stack: BatchStack) -> None:
    stack.put("incoming/breast-cancer/", b"")
    stack.drain()
    assert all_keys(stack) == []
    assert stack.queue_depth(stack.queue_url) == 0


def test_object_deleted_before_reading_gets_404_unless_it_already_has_an_outcome(stack: BatchStack) -> None:
    stack.drain()
    stack.put("incoming/breast-cancer/gone.csv", to_csv(bc_rows(1)))
    messages = stack.receive()
    stack.s3.delete_object(Bucket=INPUT, Key="incoming/breast-cancer/gone.csv")
    assert stack.invoke(stack.event_for(messages)) == {"batchItemFailures": []}
    assert stack.doc("errors/breast-cancer/gone.csv.json")["status"] == 404
    # a processed object deleted afterwards keeps its result when a late duplicate arrives
    stack.put("incoming/breast-cancer/kept.csv", to_csv(bc_rows(1)))
    messages = stack.receive()
    event = stack.event_for(messages)
    stack.invoke(event)
    stack.s3.delete_object(Bucket=INPUT, Key="incoming/breast-cancer/kept.csv")
    stack.invoke(event)
    assert "results/breast-cancer/kept.csv.json" in all_keys(stack)
    assert "errors/breast-cancer/kept.csv.json" not in all_keys(stack)


def _throttle_key(key: str) -> Any:
    """Patch the batch function's S3 client so GetObject of ``key`` answers SlowDown (503)."""
    client = storage.client()
    real = client.get_object

    def get_object(**kwargs: Any) -> Any:
        if kwargs["Key"] == key:
            raise ClientError(
                {
                    "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "GetObject",
            )
        return real(**kwargs)

    return mock.patch.object(client, "get_object", side_effect=get_object)


def test_partial_batch_reports_only_the_failed_message(stack: BatchStack) -> None:
    stack.drain()
    stack.put("incoming/breast-cancer/ok.csv", to_csv(bc_rows(1)))
    stack.put("incoming/breast-cancer/throttled.csv", to_csv(bc_rows(1)))
    messages = stack.receive()
    assert len(messages) == 2
    by_key = {
        unquote_plus(json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"]): m["MessageId"] for m in messages
    }
    with _throttle_key("incoming/breast-cancer/throttled.csv"):
        response = stack.invoke(stack.event_for(messages))
    assert response == {"batchItemFailures": [{"itemIdentifier": by_key["incoming/breast-cancer/throttled.csv"]}]}
    assert all_keys(stack) == ["results/breast-cancer/ok.csv.json"]
    # the failed message is redelivered and, the throttling over, processed
    poller = stack.poller()
    # the ok message was not deleted by this manual invoke; delete it as Lambda would
    ok_msg = next(m for m in messages if m["MessageId"] == by_key["incoming/breast-cancer/ok.csv"])
    stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=ok_msg["ReceiptHandle"])
    poller.poll_once()
    assert all_keys(stack) == ["results/breast-cancer/ok.csv.json", "results/breast-cancer/throttled.csv.json"]


def test_a_persistently_failing_object_ends_in_the_dlq_not_lost(stack: BatchStack) -> None:
    stack.drain()
    stack.put("incoming/breast-cancer/stuck.csv", to_csv(bc_rows(1)))
    with _throttle_key("incoming/breast-cancer/stuck.csv"):
        stack.drain()
    assert all_keys(stack) == []
    assert stack.queue_depth(stack.queue_url) == 0
    dead = stack.sqs.receive_message(QueueUrl=stack.dlq_url, AttributeNames=["All"])["Messages"]
    assert len(dead) == 1
    assert unquote_plus(json.loads(dead[0]["Body"])["Records"][0]["s3"]["object"]["key"]) == (
        "incoming/breast-cancer/stuck.csv"
    )
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= 3


def test_a_body_that_is_not_an_s3_notification_is_failed_not_dropped(stack: BatchStack) -> None:
    stack.drain()
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="hello")
    stack.put("incoming/breast-cancer/fine.csv", to_csv(bc_rows(1)))
    messages = stack.receive()
    bad = next(m for m in messages if m["Body"] == "hello")
    response = stack.invoke(stack.event_for(messages))
    assert response == {"batchItemFailures": [{"itemIdentifier": bad["MessageId"]}]}


def test_transient_errors_are_classified() -> None:
    from botocore.exceptions import EndpointConnectionError

    def err(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    assert storage.is_transient(err("SlowDown", 503))
    assert storage.is_transient(err("InternalError", 500))
    assert storage.is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert not storage.is_transient(err("AccessDenied", 403))


# --- logs ---------------------------------------------------------------------------------
def test_logs_name_no_key_and_no_row_values(stack: BatchStack, caplog: pytest.LogCaptureFixture) -> None:
    key = "incoming/breast-cancer/Doe Janet 1961-03-15.csv"
    rows = bc_rows(2)
    rows[1] = {**rows[1], "mean_area": 123456.789}
    stack.put(key, to_csv(rows))
    with caplog.at_level("INFO"):  # what Lambda emits (POWERTOOLS_LOG_LEVEL=INFO); botocore DEBUG is off
        stack.drain()
    records = [r.__dict__ for r in caplog.records]
    text = json.dumps(records, default=str)
    assert "Doe" not in text and "Janet" not in text and "123456.789" not in text
    mine = [r for r in records if r.get("key_sha256") == key_hash(key)]
    assert len(mine) == 1
    assert mine[0]["model_id"] == "breast-cancer" and mine[0]["outcome"] == "result"
    assert mine[0]["rows_rows"] == 2 and mine[0]["rows_failed"] == 1


# --- vitals -------------------------------------------------------------------------------
VITALS_COLS = ["id", "time", "heart_rate", "respiratory_rate", "spo2", "temperature", "systolic_bp",
               "consciousness", "supplemental_oxygen"]  # fmt: skip


def _vitals_csv_lines(seq_id: str, observations: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [seq_id, o["time"], *(str(o[c]) for c in VITALS_COLS[2:8]), "true" if o["supplemental_oxygen"] else "false"]
        for o in observations
    ]


def test_vitals_csv_rows_grouped_by_id_and_time_ordered(stack: BatchStack) -> None:
    obs_a = VITALS_OBS
    obs_b = [{**o, "spo2": 90, "heart_rate": 120} for o in VITALS_OBS[:3]]
    obs_c = [{**VITALS_OBS[0], "spo2": 150}]
    lines = _vitals_csv_lines("A", obs_a) + _vitals_csv_lines("B", obs_b) + _vitals_csv_lines("C", obs_c)
    order = [3, 0, 5, 1, 2, 4] + list(range(6, len(lines)))  # interleaved and not in time order
    lines = [lines[k] for k in order if k < len(lines)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(VITALS_COLS)
    writer.writerows(lines)
    stack.put("incoming/vitals-deterioration/ward.csv", buf.getvalue())
    stack.drain()
    doc = stack.doc("results/vitals-deterioration/ward.csv.json")
    by_id = {r["id"]: r for r in doc["results"]}
    assert set(by_id) == {"A", "B", "C"}
    assert doc["summary"] == {"rows": 3, "ok": 2, "failed": 1}
    for seq_id, obs in (("A", obs_a), ("B", obs_b)):
        want = vitals_service.predict(VITALS, vitals_service.parse(VITALS, {"observations": obs}))
        assert by_id[seq_id]["prediction"] == want["prediction"]
        assert by_id[seq_id]["news2"] == want["news2"]
        assert len(by_id[seq_id]["rows"]) == len(obs)
    assert by_id["C"]["error"]["errors"][0]["field"] == "observations[0].spo2"
    assert doc["warnings"] == ([SYNTHETIC_WARNING] if VITALS.synthetic else [])


def test_vitals_jsonl_one_sequence_per_line(stack: BatchStack) -> None:
    lines = [
        json.dumps({"id": "s1", "observations": VITALS_OBS}),
        json.dumps({"id": "s2", "observations": []}),
        json.dumps({"observations": VITALS_OBS[:2], "explain": True}),
    ]
    stack.put("incoming/vitals-deterioration/seq.jsonl", "\n".join(lines))
    stack.drain()
    res = stack.doc("results/vitals-deterioration/seq.jsonl.json")["results"]
    want = vitals_service.predict(VITALS, vitals_service.parse(VITALS, {"observations": VITALS_OBS}))
    assert res[0]["id"] == "s1" and res[0]["prediction"] == want["prediction"]
    assert res[1]["error"]["errors"] == [{"field": "observations", "message": "must hold 1 to 500 observations"}]
    assert res[2]["id"] is None and len(res[2]["contributions"]) >= 1


# --- imaging ------------------------------------------------------------------------------
def _imaging_expected(data: bytes) -> dict[str, Any]:
    from medserve.tasks.imaging import service as imaging_service
    from medserve.tasks.imaging.decode import decode_image

    entry = REGISTRY.get("chest-xray")
    spec = entry.spec
    return imaging_service.predict_decoded(entry, decode_image(data, spec=spec.image, field="object"))


def test_imaging_png_and_dicom_each_get_the_single_prediction(
    stack: BatchStack, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.builders import PHI, make_dicom, png_bytes, ramp

    xray = REGISTRY.get("chest-xray")
    png = png_bytes(ramp(height=128, width=128).astype(np.uint8))
    dcm = make_dicom(modality="DX", pixels=ramp(height=128, width=128, top=4095), bits=12)
    stack.put("incoming/chest-xray/scan one.png", png)
    stack.put("incoming/chest-xray/scan.dcm", dcm)
    with caplog.at_level("INFO"):
        stack.drain()
    assert all_keys(stack) == ["results/chest-xray/scan one.png.json", "results/chest-xray/scan.dcm.json"]
    for name, data, fmt in (("scan one.png", png, "png"), ("scan.dcm", dcm, "dicom")):
        doc = stack.doc(f"results/chest-xray/{name}.json")
        want = _imaging_expected(data)
        assert doc["model"] == xray.info() and doc["format"] == fmt
        assert doc["prediction"] == want["prediction"]
        assert doc["summary"] == {"rows": 1, "ok": 1, "failed": 0}
        assert doc["results"] == [{"row": 0, "line": None, "id": None, "prediction": want["prediction"]}]
        if xray.synthetic:
            assert doc["warnings"][0] == SYNTHETIC_WARNING
    outputs = json.dumps([stack.doc(k) for k in all_keys(stack)])
    logs = json.dumps([r.__dict__ for r in caplog.records], default=str)
    for value in PHI.values():
        assert value not in outputs and value not in logs


def test_imaging_bad_objects_get_the_decoders_problem(stack: BatchStack) -> None:
    from tests.builders import make_dicom, ramp

    stack.put("incoming/chest-xray/ct.dcm", make_dicom(modality="CT", pixels=ramp(height=128, width=128)))
    stack.put("incoming/chest-xray/notes.txt", b"not an image at all")
    stack.put("incoming/chest-xray/cut.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    stack.drain()
    assert all_keys(stack) == [
        "errors/chest-xray/ct.dcm.json",
        "errors/chest-xray/cut.png.json",
        "errors/chest-xray/notes.txt.json",
    ]
    assert stack.doc("errors/chest-xray/ct.dcm.json")["status"] == 422
    assert stack.doc("errors/chest-xray/notes.txt.json")["status"] == 415
    assert stack.doc("errors/chest-xray/cut.png.json")["status"] == 422
    assert stack.doc("errors/chest-xray/ct.dcm.json")["errors"][0]["field"] == "dicom.Modality"


# --- committed events (``sam local invoke BatchFunction -e events/sqs_s3_put.json``) -------------
def test_committed_sqs_events_run_against_the_handler(stack: BatchStack) -> None:
    put = load_event("sqs_s3_put")
    inner = json.loads(put["Records"][0]["body"])
    assert inner == load_event("s3_put_breast_cancer")
    stack.put("incoming/breast-cancer/ward 3 ü.csv", to_csv(bc_rows(2)))
    stack.drain()
    stack.s3.delete_object(Bucket=OUTPUT, Key="results/breast-cancer/ward 3 ü.csv.json")
    assert stack.invoke(put) == {"batchItemFailures": []}
    doc = stack.doc("results/breast-cancer/ward 3 ü.csv.json")
    assert doc["request_id"] == put["Records"][0]["messageId"] and doc["summary"]["ok"] == 2
    assert stack.invoke(load_event("sqs_s3_test_event")) == {"batchItemFailures": []}
    assert all_keys(stack) == ["results/breast-cancer/ward 3 ü.csv.json"]


def test_csv_number_cells_are_strict_decimals() -> None:
    from medserve.batch.rows import bool_cell, number_cell

    assert number_cell("1.5e3") == 1500.0 and number_cell("-.5") == -0.5
    assert number_cell("1_000") == "1_000" and number_cell("١٢") == "١٢" and number_cell("12 mm") == "12 mm"
    assert number_cell("nan") != number_cell("nan")  # NaN kept for validation to refuse
    assert bool_cell("TRUE") is True and bool_cell("0") is False and bool_cell("maybe") == "maybe"


def test_local_runner_wiring_is_read_from_the_template() -> None:
    from local.s3 import read_wiring
    from local.template import parse_template
    from tests.conftest import ROOT

    template = parse_template(ROOT / "template.yaml")
    w = read_wiring(template)
    fn = template.functions["BatchFunction"]
    assert (w.function_id, w.input_bucket, w.output_bucket) == ("BatchFunction", "medserve-input", "medserve-output")
    assert 1 <= w.batch_size <= 10 and w.report_failures is True
    # Lambda's advice for SQS sources: visibility >= 6 x the function timeout
    assert w.queue.visibility_timeout >= 6 * fn.timeout
    # the worker's "last receive" (500 document instead of a silent DLQ) is the redrive's maxReceiveCount
    assert w.dlq is not None and w.queue.max_receive_count == int(fn.environment.get("MEDSERVE_BATCH_MAX_RECEIVES", 3))
    assert w.notifications == [
        {
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
        }
    ]
