"""Batch logic on the in-memory object store: one outcome per object, latest version wins, under threads."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from medserve.batch import storage
from medserve.batch.worker import BatchWorker, Settings
from medserve.registry import Registry
from tests.conftest import MODELS, live_folder
from tests.fakes import MemoryS3

IN, OUT = "in", "out"
REGISTRY = Registry.load(MODELS, task="risk")
NAMES = [i["name"] for i in json.loads((live_folder("breast-cancer") / "manifest.json").read_text())["inputs"]]
X = np.load(live_folder("breast-cancer") / "parity.npz")["in:features"].astype(np.float32)


def good_csv(n: int = 5) -> bytes:
    return (
        "id," + ",".join(NAMES) + "\n" + "".join(f"r{i}," + ",".join(map(str, X[i])) + "\n" for i in range(n))
    ).encode()


BAD_CSV = b"id,not_a_feature\nr0,1\n"


@pytest.fixture
def s3() -> Iterator[MemoryS3]:
    fake = MemoryS3()
    storage.use_client(fake)
    yield fake
    storage.use_client(None)


def worker() -> BatchWorker:
    return BatchWorker(REGISTRY, Settings(output_bucket=OUT))


def test_a_csv_gets_its_result_and_a_bad_one_its_error(s3: MemoryS3) -> None:
    s3.put_object(Bucket=IN, Key="incoming/breast-cancer/a.csv", Body=good_csv())
    s3.put_object(Bucket=IN, Key="incoming/breast-cancer/b.csv", Body=BAD_CSV)
    w = worker()
    assert w.handle_object(IN, "incoming/breast-cancer/a.csv", message_id="m1").kind == "result"
    assert w.handle_object(IN, "incoming/breast-cancer/b.csv", message_id="m2").kind == "error"
    assert s3.keys(OUT) == ["errors/breast-cancer/b.csv.json", "results/breast-cancer/a.csv.json"]
    doc = json.loads(s3.get_object(Bucket=OUT, Key="results/breast-cancer/a.csv.json")["Body"].read())
    assert doc["summary"] == {"rows": 5, "ok": 5, "failed": 0}


def test_a_corrected_upload_replaces_the_error_with_a_result(s3: MemoryS3) -> None:
    key = "incoming/breast-cancer/rows.csv"
    w = worker()
    s3.put_object(Bucket=IN, Key=key, Body=BAD_CSV)
    w.handle_object(IN, key, message_id="m1")
    s3.put_object(Bucket=IN, Key=key, Body=good_csv())
    w.handle_object(IN, key, message_id="m2")
    assert s3.keys(OUT) == ["results/breast-cancer/rows.csv.json"]


def test_a_stale_delivery_leaves_the_latest_versions_outcome(s3: MemoryS3) -> None:
    key = "incoming/breast-cancer/rows.csv"
    w = worker()
    s3.put_object(Bucket=IN, Key=key, Body=good_csv())
    s3.put_object(Bucket=IN, Key=key, Body=BAD_CSV)  # version 2 lands before version 1's delivery runs
    w.handle_object(IN, key, message_id="latest")
    w.handle_object(IN, key, message_id="redelivered")  # both deliveries now read version 2
    assert s3.keys(OUT) == ["errors/breast-cancer/rows.csv.json"]


@pytest.mark.parametrize("rounds", [20])
def test_concurrent_deliveries_end_with_exactly_one_outcome_of_the_latest_version(s3: MemoryS3, rounds: int) -> None:
    key = "incoming/breast-cancer/race.csv"
    w = worker()
    for r in range(rounds):
        bodies = [good_csv(), BAD_CSV, good_csv(3), BAD_CSV]
        last = bodies[r % len(bodies)]
        for body in bodies[: r % len(bodies)] + [last]:
            s3.put_object(Bucket=IN, Key=key, Body=body)
        threads = [
            threading.Thread(target=w.handle_object, args=(IN, key), kwargs={"message_id": f"m{i}"}) for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes = [k for k in s3.keys(OUT) if k.endswith("race.csv.json")]
        expected = "errors/breast-cancer/race.csv.json" if last == BAD_CSV else "results/breast-cancer/race.csv.json"
        assert outcomes == [expected], (r, outcomes)


@pytest.mark.parametrize("key", ["incoming/no-such-model/a.csv", "incoming/breast-cancer@9.9.9/a.csv"])
def test_an_unknown_model_or_version_document_still_names_its_source(s3: MemoryS3, key: str) -> None:
    s3.put_object(Bucket=IN, Key=key, Body=good_csv())
    assert worker().handle_object(IN, key, message_id="m").status == 404
    (out,) = s3.keys(OUT)
    source = json.loads(s3.get_object(Bucket=OUT, Key=out)["Body"].read())["source"]
    assert source["etag"] and source["size"] == len(good_csv()) and source["version_id"]


def test_vitals_csv_sequences_say_the_line_they_start_on(s3: MemoryS3) -> None:
    from medserve.tasks.vitals.features import OBSERVATION_FIELDS
    from tests.builders import observation

    rows = [("p2", observation(9)), ("p1", observation(8)), ("p1", observation(10)), ("p2", observation(11))]
    lines = ["id," + ",".join(OBSERVATION_FIELDS)]
    lines += [
        f"{pid}," + ",".join(str(o[f]).lower() if isinstance(o[f], bool) else str(o[f]) for f in OBSERVATION_FIELDS)
        for pid, o in rows
    ]
    key = "incoming/vitals-deterioration/v.csv"
    s3.put_object(Bucket=IN, Key=key, Body=("\n".join(lines) + "\n").encode())
    w = BatchWorker(Registry.load(MODELS, task="vitals"), Settings(output_bucket=OUT))
    assert w.handle_object(IN, key, message_id="m").kind == "result"
    doc = json.loads(s3.get_object(Bucket=OUT, Key="results/vitals-deterioration/v.csv.json")["Body"].read())
    assert [(r["id"], r["line"], r["lines"]) for r in doc["results"]] == [("p2", 2, [2, 5]), ("p1", 3, [3, 4])]


def test_a_json_lines_row_with_a_key_given_twice_is_that_rows_422(s3: MemoryS3) -> None:
    good = dict(zip(NAMES, map(float, X[0]), strict=True))
    line = json.dumps(good)[:-1] + f', "{NAMES[0]}": 1.0}}'  # the first feature twice
    key = "incoming/breast-cancer/rows.jsonl"
    s3.put_object(Bucket=IN, Key=key, Body=(json.dumps(good) + "\n" + line + "\n").encode())
    worker().handle_object(IN, key, message_id="m")
    results = json.loads(s3.get_object(Bucket=OUT, Key="results/breast-cancer/rows.jsonl.json")["Body"].read())[
        "results"
    ]
    assert "prediction" in results[0]
    assert results[1]["error"]["status"] == 422 and results[1]["error"]["errors"][0]["field"] == NAMES[0]
