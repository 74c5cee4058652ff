"""Batch throughput: rows/second through the batch handler vs raw ``session.run`` on the same rows.

``bench_batch(rows)`` puts one CSV of ``rows`` real held-out WDBC cases (cycled) into a
moto S3, then times, on the same rows:

- ``handler``: ``functions/batch/app.py`` ``lambda_handler`` on a real-shaped SQS event
  (HEAD + GET from S3, CSV parsing, per-row validation, chunked ``session.run``, result
  JSON written back to S3; moto is in-process, so S3 costs are local);
- ``process``: :func:`medserve.batch.worker.process` alone (parse + validate + predict);
- ``raw``: one ``session.run`` on the pre-packed float32 matrix, and the same in chunks
  of :data:`medserve.tasks.risk.CHUNK_ROWS` (what the handler does).

``vitals`` (``bench_batch(vitals_sequences=...)``): sequences/second of
:func:`medserve.batch.worker.process` on a JSON Lines object of 12-observation
sequences (the committed ``events/vitals_predict.json`` readings, jittered): parse,
the API's validation per sequence, then one padded, masked ``session.run`` per
:data:`medserve.tasks.vitals.batch.VITALS_CHUNK` sequences.

``make bench`` runs in the export venv, which has no moto: there the measurement runs
in the runtime venv (``.venv``) as ``python -m bench.batch``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT

RUNTIME_PY = ROOT / ".venv" / "bin" / "python"
MODEL_ID = "breast-cancer"
VITALS_MODEL_ID = "vitals-deterioration"
REPEATS = 3


def _median_s(fn: Any, repeats: int = REPEATS) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _measure(rows: int) -> dict[str, Any]:
    import boto3
    import numpy as np
    import pandas as pd
    from moto import mock_aws

    sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]
    os.environ.setdefault("MEDSERVE_MODELS_DIR", str(ROOT / "layers" / "models"))
    os.environ.update(
        {
            "MEDSERVE_OUTPUT_BUCKET": "bench-output",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
    )
    from local.batch_poller import sqs_event
    from medserve.batch import storage, worker
    from medserve.tasks.risk import CHUNK_ROWS
    from tests.conftest import FakeContext, load_handler

    with mock_aws():
        storage.reset_client()
        s3 = boto3.client("s3", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        for bucket in ("bench-input", "bench-output"):
            s3.create_bucket(Bucket=bucket)
        url = sqs.create_queue(QueueName="bench")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket="bench-input",
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
        )
        app = load_handler("batch")
        entry = app.REGISTRY.get(MODEL_ID)
        names = [i["name"] for i in entry.manifest["inputs"]]
        parity = np.load(entry.path / "parity.npz")["in:features"].astype(np.float32)
        x = parity[np.arange(rows) % len(parity)]
        lines = ["id," + ",".join(names)] + [f"r{k}," + ",".join(map(str, row)) for k, row in enumerate(x)]
        data = ("\n".join(lines) + "\n").encode()
        key = f"incoming/{MODEL_ID}/bench.csv"
        s3.put_object(Bucket="bench-input", Key=key, Body=data)
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        event = sqs_event([m for m in messages if "Records" in m["Body"]], queue_arn=arn, region="us-east-1")

        def handler() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                response = app.lambda_handler(event, FakeContext())
            assert response == {"batchItemFailures": []}, response

        handler()  # warm-up (and correctness)
        doc = json.loads(s3.get_object(Bucket="bench-output", Key=f"results/{MODEL_ID}/bench.csv.json")["Body"].read())
        assert doc["summary"] == {"rows": rows, "ok": rows, "failed": 0}, doc["summary"]
        handler_s = _median_s(handler)
        process_s = _median_s(lambda: worker.process(entry, data, "bench.csv", max_rows=10**7))
        input_name = entry.manifest["onnx"]["inputs"][0]["name"]
        raw_s = _median_s(lambda: entry.session.run(None, {input_name: x}))
        chunk = CHUNK_ROWS

        def chunked() -> None:
            for start in range(0, rows, chunk):
                entry.session.run(None, {input_name: x[start : start + chunk]})

        raw_chunked_s = _median_s(chunked)

        def pandas_anchor() -> None:
            # What a user would write instead: pandas' C CSV reader + one session.run (bench venv only).
            frame = pd.read_csv(io.BytesIO(data))
            entry.session.run(None, {input_name: frame[names].to_numpy(dtype=np.float32)})

        pandas_s = _median_s(pandas_anchor)
        storage.reset_client()

    def rate(seconds: float) -> float:
        return round(rows / seconds, 1)

    return {
        "model": MODEL_ID,
        "rows": rows,
        "csv_bytes": len(data),
        "result_bytes": len(json.dumps(doc)),
        "chunk_rows": chunk,
        "repeats": REPEATS,
        "handler": {"seconds": round(handler_s, 4), "rows_per_s": rate(handler_s)},
        "process": {"seconds": round(process_s, 4), "rows_per_s": rate(process_s)},
        "raw_session_run": {"seconds": round(raw_s, 5), "rows_per_s": rate(raw_s)},
        "raw_session_run_chunked": {"seconds": round(raw_chunked_s, 5), "rows_per_s": rate(raw_chunked_s)},
        "handler_vs_raw_chunked": round(handler_s / raw_chunked_s, 1),
        "pandas_read_csv_and_session_run": {"seconds": round(pandas_s, 4), "rows_per_s": rate(pandas_s)},
        "handler_share_of_pandas": round(pandas_s / handler_s, 3),
    }


def _measure_vitals(sequences: int) -> dict[str, Any]:
    """Sequences/second of :func:`medserve.batch.worker.process` on a vitals JSON Lines object."""
    import numpy as np

    sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]
    os.environ.setdefault("MEDSERVE_MODELS_DIR", str(ROOT / "layers" / "models"))
    from medserve.batch import worker
    from medserve.registry import Registry

    entry = Registry.from_env().get(VITALS_MODEL_ID)
    observations = json.loads(json.loads((ROOT / "events" / "vitals_predict.json").read_text())["body"])["observations"]
    rng = np.random.default_rng(0)
    lines = []
    for k in range(sequences):  # the event's 12 observations, heart rate and SpO2 jittered per sequence
        obs = [
            {**o, "heart_rate": float(o["heart_rate"]) + int(rng.integers(-10, 11)), "spo2": min(100, o["spo2"] + 1)}
            if k % 2
            else o
            for o in observations
        ]
        lines.append(json.dumps({"id": f"s{k}", "observations": obs}))
    data = ("\n".join(lines) + "\n").encode()
    worker.process(entry, data, "bench.jsonl", max_rows=10**7)  # warm-up
    seconds = _median_s(lambda: worker.process(entry, data, "bench.jsonl", max_rows=10**7))
    return {
        "model": VITALS_MODEL_ID,
        "sequences": sequences,
        "observations_per_sequence": len(observations),
        "repeats": REPEATS,
        "process": {"seconds": round(seconds, 4), "sequences_per_s": round(sequences / seconds, 1)},
    }


def bench_batch(rows: int = 10000, vitals_sequences: int = 5000) -> dict[str, Any]:
    """Rows/second of the batch handler and of raw ``session.run`` on the same ``rows`` rows.

    With ``vitals_sequences`` > 0, ``"vitals"`` holds sequences/second of the batch
    task library on that many 12-observation sequences (JSON Lines).
    """
    if importlib.util.find_spec("moto") is not None:
        result = _measure(rows)
        if vitals_sequences > 0:
            result["vitals"] = _measure_vitals(vitals_sequences)
        return result
    out = subprocess.run(
        [str(RUNTIME_PY), "-m", "bench.batch", "--rows", str(rows), "--vitals-sequences", str(vitals_sequences)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--vitals-sequences", type=int, default=5000)
    args = parser.parse_args()
    print(json.dumps(bench_batch(args.rows, args.vitals_sequences)))


if __name__ == "__main__":
    main()
