"""Issue 9 regressions (batch side), against moto with versioned buckets.

- Every object gets exactly one outcome reflecting its LATEST version, also when several
  workers handle deliveries of different versions of one key at once (finding 4).
- A key whose outcome key would pass S3's 1,024-byte limit gets a stable hashed name.
- A DICOM with invalid display attributes or a patient-like Modality is a 422 document
  naming ``dicom.<Keyword>``, never a 500 after three receives, never echoing the value.
"""

from __future__ import annotations

import csv
import io
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from medserve.batch import storage, worker
from medserve.batch.keys import MAX_KEY_BYTES, parse_key
from medserve.batch.worker import BatchWorker, RetryMessage, Settings
from medserve.registry import Registry
from tests.builders import make_dicom, ramp
from tests.conftest import MODELS
from tests.integration.conftest import INPUT, OUTPUT, BatchStack
from tests.unit.test_hostile_input import MARKER, replace_value, resave

REGISTRY = Registry.load(MODELS)
BC = REGISTRY.get("breast-cancer")
BC_NAMES = [i["name"] for i in BC.manifest["inputs"]]
BC_X = np.load(BC.path / "parity.npz")["in:features"].astype(np.float64)
INVALID = b"a,b,c\n1,2,3\n"  # a header of unknown columns: a 422 document


def valid_csv(seed: int = 0) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BC_NAMES)
    writer.writerow([float(v) for v in BC_X[seed % len(BC_X)]])
    return buf.getvalue().encode()


def make_worker() -> BatchWorker:
    return BatchWorker(REGISTRY, Settings(output_bucket=OUTPUT))


def deliver(w: BatchWorker, key: str, message_id: str) -> Any:
    """One delivery, redelivered (as SQS would) while it asks to be retried (e.g. the object changed under it)."""
    for _ in range(10):
        try:
            return w.handle_object(INPUT, key, message_id=message_id)
        except RetryMessage:
            continue
    raise AssertionError("the delivery never settled")


def outcomes(stack: BatchStack, key: str) -> list[str]:
    where = parse_key(key)
    return [k for k in (where.result_key, where.error_key) if k in stack.keys()]


def latest_version(stack: BatchStack, key: str) -> str:
    return str(stack.s3.head_object(Bucket=INPUT, Key=key)["VersionId"])


def assert_one_outcome_of_the_latest_version(stack: BatchStack, key: str, valid: bool) -> None:
    found = outcomes(stack, key)
    assert len(found) == 1, (key, found)
    where = parse_key(key)
    assert found == [where.result_key if valid else where.error_key]
    doc = stack.doc(found[0])
    assert doc["source"]["version_id"] == latest_version(stack, key)


class _SyncedWrites:
    """An S3 client proxy: every PutObject into the output bucket waits (briefly) for the other worker's."""

    def __init__(self, real: Any, parties: int) -> None:
        self.real = real
        self.barrier = threading.Barrier(parties, timeout=1.0)

    def put_object(self, **kwargs: Any) -> Any:
        out = self.real.put_object(**kwargs)
        if kwargs.get("Bucket") == OUTPUT:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                pass
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_two_workers_on_two_versions_of_one_key_leave_the_latest_ones_outcome(
    stack: BatchStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given version 1 (valid) read by worker A, which is held until version 2 (invalid) is read by B
    key = "incoming/breast-cancer/race.csv"
    stack.s3.put_object(Bucket=INPUT, Key=key, Body=valid_csv())
    real_process = worker.process
    a_read, b_read = threading.Event(), threading.Event()

    def process(entry: Any, data: bytes, name: str, **kwargs: Any) -> Any:
        if data != INVALID:
            a_read.set()
            assert b_read.wait(10)
        else:
            b_read.set()
        return real_process(entry, data, name, **kwargs)

    monkeypatch.setattr(worker, "process", process)
    proxy = _SyncedWrites(storage.client(), parties=2)
    monkeypatch.setattr(storage, "client", lambda: proxy)
    w = make_worker()
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(w.handle_object, INPUT, key, message_id="a")
        assert a_read.wait(10)
        stack.s3.put_object(Bucket=INPUT, Key=key, Body=INVALID)
        b = pool.submit(w.handle_object, INPUT, key, message_id="b")
        a.result(30), b.result(30)
    # Then exactly one outcome exists: version 2's error document
    assert_one_outcome_of_the_latest_version(stack, key, valid=False)


def test_many_workers_and_repeated_deliveries_of_interleaved_versions(stack: BatchStack) -> None:
    rng = random.Random(9)
    keys = [f"incoming/breast-cancer/k{i}.csv" for i in range(4)]
    w = make_worker()
    last_valid: dict[str, bool] = {}
    with ThreadPoolExecutor(8) as pool:
        futures = []
        for round_ in range(5):
            for key in keys:
                valid = rng.random() < 0.5
                stack.s3.put_object(Bucket=INPUT, Key=key, Body=valid_csv(round_) if valid else INVALID)
                last_valid[key] = valid
                # every version delivered twice, by workers that run concurrently with later uploads
                futures += [pool.submit(deliver, w, key, f"{key}-{round_}-{n}") for n in (0, 1)]
        for f in futures:
            f.result(60)
        # a last delivery of each key (as S3 would send for the final version) settles nothing new
        for key in keys:
            deliver(w, key, f"{key}-final")
    for key in keys:
        assert_one_outcome_of_the_latest_version(stack, key, valid=last_valid[key])


def test_a_stale_delivery_neither_overwrites_nor_deletes_the_newer_outcome(
    stack: BatchStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a delivery of version 1 that is held after reading it
    key = "incoming/breast-cancer/stale.csv"
    stack.s3.put_object(Bucket=INPUT, Key=key, Body=valid_csv())
    real_process = worker.process
    read, release = threading.Event(), threading.Event()

    def process(entry: Any, data: bytes, name: str, **kwargs: Any) -> Any:
        if data != INVALID:
            read.set()
            assert release.wait(10)
        return real_process(entry, data, name, **kwargs)

    monkeypatch.setattr(worker, "process", process)
    w = make_worker()
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(w.handle_object, INPUT, key, message_id="v1")
        assert read.wait(10)
        # When version 2 is uploaded and fully handled first, and version 1's delivery ends after it
        stack.s3.put_object(Bucket=INPUT, Key=key, Body=INVALID)
        w.handle_object(INPUT, key, message_id="v2")
        before = stack.doc(parse_key(key).error_key)
        release.set()
        assert late.result(30).kind == "superseded"
    # Then version 2's outcome is untouched and alone
    assert outcomes(stack, key) == [parse_key(key).error_key]
    assert stack.doc(parse_key(key).error_key) == before
    assert before["request_id"] == "v2"


@pytest.mark.parametrize("kind", ["valid", "invalid"])
def test_a_key_whose_outcome_key_is_too_long_gets_a_stable_hashed_name(stack: BatchStack, kind: str) -> None:
    name = "n" * (1024 - len("incoming/breast-cancer/") - 4) + ".csv"
    key = f"incoming/breast-cancer/{name}"
    assert len(key.encode()) == 1024
    stack.put(key, valid_csv() if kind == "valid" else INVALID)
    stack.drain()
    keys = stack.keys()
    assert len(keys) == 1, keys
    out = keys[0]
    assert len(out.encode()) <= MAX_KEY_BYTES
    assert out.startswith("results/breast-cancer/" if kind == "valid" else "errors/breast-cancer/")
    assert out == (parse_key(key).result_key if kind == "valid" else parse_key(key).error_key)
    doc = stack.doc(out)
    assert doc["source"]["key"] == key
    assert any("sha256" in w for w in doc["warnings"]), doc["warnings"]


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: make_dicom(pixels=ramp(top=4095), bits=12, window=(2000, 0)), "dicom.WindowWidth"),
        (
            lambda: replace_value(make_dicom(pixels=ramp(top=4095), bits=12, window=(2345, 5678)), b"5678", b"abcd"),
            "dicom.WindowWidth",
        ),
        (lambda: resave(make_dicom(), Modality=MARKER), "dicom.Modality"),
    ],
)
def test_hostile_dicoms_get_a_422_document_naming_the_element(stack: BatchStack, make: Any, field: str) -> None:
    stack.put("incoming/chest-xray/scan.dcm", make())
    stack.drain()
    assert stack.keys() == ["errors/chest-xray/scan.dcm.json"]
    doc = stack.doc("errors/chest-xray/scan.dcm.json")
    assert doc["status"] == 422
    assert field in [e["field"] for e in doc["errors"]]
    assert MARKER not in json.dumps(doc)


def test_more_bad_rows_than_a_problem_lists_each_get_their_own_error() -> None:
    # A problem lists at most 100 errors: the rows past them must still get theirs, not a prediction.
    from medserve.batch.readers import read_table
    from medserve.tasks.risk.batch import rows as risk_rows

    good = [float(v) for v in BC_X[0]]
    bad = [-1.0 for _ in BC_NAMES]  # below every feature's minimum: one error per feature
    rows = [bad] * 150 + [good]
    text = ",".join(BC_NAMES) + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n"
    table = read_table(text.encode(), "x.csv", required=BC_NAMES, max_rows=1000)
    results = risk_rows(BC, table)
    assert [("error" in r) for r in results] == [True] * 150 + [False]
    assert all(r["error"]["status"] == 422 for r in results[:150])
    assert "prediction" in results[150]
