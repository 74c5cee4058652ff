"""``medserve batch`` offline (moto S3) and the client's input parsing.

The batch function is played by the ``sleep`` hook of :class:`BatchRun`: between polls it
writes the outcome documents the real function would.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from medserve_client.batch import BatchRun, Progress, collect_files
from medserve_client.errors import InputFileError
from medserve_client.inputs import read_rows

IN, OUT = "medserve-input", "medserve-output"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=IN)
        client.create_bucket(Bucket=OUT)
        yield client


def outcome(s3: Any, name: str, *, etag: str, kind: str = "results", rows: int = 1) -> None:
    """Write what the batch function writes for ``incoming/m/<name>``."""
    source = {"bucket": IN, "key": f"incoming/m/{name}", "etag": etag, "size": 1}
    doc: dict[str, Any] = {"source": source}
    if kind == "results":
        doc["summary"] = {"rows": rows, "ok": rows, "failed": 0}
    else:
        doc.update(title="Unprocessable Content", status=422, detail="bad file")
    s3.put_object(Bucket=OUT, Key=f"{kind}/m/{name}.json", Body=json.dumps(doc).encode())


def worker(s3: Any, after_polls: int = 1) -> Callable[[float], None]:
    """A ``sleep`` that processes every object in ``incoming/m/`` after ``after_polls`` polls."""
    calls = {"n": 0}

    def sleep(_: float) -> None:
        calls["n"] += 1
        if calls["n"] < after_polls:
            return
        for obj in s3.list_objects_v2(Bucket=IN, Prefix="incoming/m/").get("Contents", []):
            name = obj["Key"].split("/", 2)[2]
            outcome(s3, name, etag=obj["ETag"].strip('"'), kind="errors" if name.endswith(".txt") else "results")

    return sleep


def files(tmp_path: Path, **contents: str) -> list[Path]:
    paths = []
    for name, text in contents.items():
        path = tmp_path / name.replace("_", ".")
        path.write_text(text)
        paths.append(path)
    return paths


def test_outcomes_are_downloaded_and_counted(s3: Any, tmp_path: Path) -> None:
    stream = io.StringIO()
    run = BatchRun(s3, IN, OUT, "m", tmp_path / "out", sleep=worker(s3), progress=Progress(2, stream))
    report = run.run(files(tmp_path, a_csv="x\n1\n", b_txt="?"))
    assert report.exit_code == 1  # one error document
    assert json.loads((tmp_path / "out/results/a.csv.json").read_text())["summary"]["ok"] == 1
    assert json.loads((tmp_path / "out/errors/b.txt.json").read_text())["status"] == 422
    assert "2 uploaded, 1 result(s) (1 row(s) ok, 0 failed), 1 error(s), 0 pending" in report.summary()
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("outcomes") and "2/2 ok 1 errors 1" in lines[-1]
    assert any(ln.startswith("uploading") and ln.endswith("2/2") for ln in lines)


def test_an_earlier_outcome_of_the_same_name_is_not_taken(s3: Any, tmp_path: Path) -> None:
    outcome(s3, "a.csv", etag="0123456789abcdef", rows=7)  # from an earlier run
    quiet = Progress(1, io.StringIO())
    run = BatchRun(s3, IN, OUT, "m", tmp_path / "out", sleep=worker(s3, after_polls=3), progress=quiet)
    report = run.run(files(tmp_path, a_csv="x\n1\n"))
    assert report.exit_code == 0
    assert json.loads((tmp_path / "out/results/a.csv.json").read_text())["summary"]["rows"] == 1


def test_ctrl_c_while_waiting_leaves_uploads_to_be_processed(s3: Any, tmp_path: Path) -> None:
    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    run = BatchRun(s3, IN, OUT, "m", tmp_path / "out", sleep=interrupt, progress=Progress(2, io.StringIO()))
    report = run.run(files(tmp_path, a_csv="1", b_csv="2"))
    assert report.interrupted and report.exit_code == 130
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=IN)["Contents"])
    assert keys == ["incoming/m/a.csv", "incoming/m/b.csv"]
    summary = report.summary()
    assert "2 pending" in summary and "will still be processed" in summary
    assert "s3://medserve-output/results/m/" in summary
    assert not (tmp_path / "out").exists()


def test_giving_up_waiting_is_exit_2(s3: Any, tmp_path: Path) -> None:
    quiet = Progress(1, io.StringIO())
    run = BatchRun(s3, IN, OUT, "m", tmp_path / "out", wait_s=0, sleep=lambda _: None, progress=quiet)
    report = run.run(files(tmp_path, a_csv="1"))
    assert report.timed_out and report.exit_code == 2 and report.pending == ["a.csv"]


def test_versioned_runs_use_the_versioned_prefix(s3: Any, tmp_path: Path) -> None:
    run = BatchRun(s3, IN, OUT, "m", tmp_path / "out", version="1.2.0", wait_s=0, progress=Progress(1, io.StringIO()))
    run.run(files(tmp_path, a_csv="1"))
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=IN)["Contents"]] == ["incoming/m@1.2.0/a.csv"]


def test_collect_files_refuses_clashing_names_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x/a.csv").write_text("1")
    (tmp_path / "y/a.csv").write_text("2")
    (tmp_path / "x/.hidden").write_text("3")
    assert [p.name for p in collect_files([tmp_path / "x"])] == ["a.csv"]
    with pytest.raises(InputFileError, match="two files are named"):
        collect_files([tmp_path / "x", tmp_path / "y"])
    with pytest.raises(InputFileError, match="no such file"):
        collect_files([tmp_path / "z"])


def test_csv_rows_keep_ids_types_and_missing_cells(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    path.write_text(
        "id,time,heart_rate,temperature,consciousness,supplemental_oxygen\n"
        "p1,2026-01-01T00:00:00Z,80,37.5,A,false\n"
        "p2,2026-01-01T01:00:00Z,,37,V,True\n"
    )
    rows, ids = read_rows(path, "observations")
    assert ids == ["p1", "p2"]
    assert rows[0] == {
        "time": "2026-01-01T00:00:00Z",
        "heart_rate": 80,
        "temperature": 37.5,
        "consciousness": "A",
        "supplemental_oxygen": False,
    }
    assert "heart_rate" not in rows[1] and rows[1]["supplemental_oxygen"] is True  # the API names what is missing


@pytest.mark.parametrize(
    "text",
    ['{"instances": [{"a": 1}, {"a": 2}]}', '[{"a": 1}, {"a": 2}]', '{"a": 1}\n{"a": 2}\n'],
    ids=["wrapped", "list", "json-lines"],
)
def test_json_rows_in_three_shapes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rows.json"
    path.write_text(text)
    rows, ids = read_rows(path, "instances")
    assert rows == [{"a": 1}, {"a": 2}] and ids == ["0", "1"]
