"""End to end: ``python -m local`` with its S3 endpoint; upload with boto3, poll the output bucket.

Starts its own runner (free API and S3 ports, ``MEDSERVE_LOCAL_EXTRAS=local.s3``) so it
never collides with a ``make run`` on 4566, and stops it afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import live_folder
from tests.e2e.conftest import REPO_ROOT, _free_port, _tail, local_runner

WAIT_S = 60.0
BC_MANIFEST = json.loads((live_folder("breast-cancer") / "manifest.json").read_text())
BC_NAMES = [i["name"] for i in BC_MANIFEST["inputs"]]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The runner's S3 endpoint URL, once its buckets exist."""
    endpoint = f"http://127.0.0.1:{_free_port()}"
    env = {
        "PORT": str(_free_port()),
        "S3_PORT": endpoint.rsplit(":", 1)[1],
        "MEDSERVE_LOCAL_EXTRAS": "local.s3",
    }
    s3 = client(endpoint)

    def buckets_ready(log_path: Path) -> bool:
        try:
            s3.head_bucket(Bucket="medserve-input")
            s3.head_bucket(Bucket="medserve-output")
        except Exception:  # noqa: BLE001 - not up yet
            return False
        return "Ctrl-C to stop" in _tail(log_path, 100_000)

    with local_runner(tmp_path_factory.mktemp("batch-runner"), env, buckets_ready, "S3 endpoint"):
        yield endpoint


def client(endpoint: str) -> Any:
    """Any credentials work against the local endpoint."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-central-1",
        aws_access_key_id="anything",
        aws_secret_access_key="at-all",  # noqa: S106 - the local endpoint takes any credentials
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def wait_for(s3: Any, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            return json.loads(s3.get_object(Bucket="medserve-output", Key=key)["Body"].read())
        except ClientError:
            time.sleep(0.5)
    raise AssertionError(f"no s3://medserve-output/{key} within {WAIT_S:.0f} s")


def test_csv_upload_gets_a_result_document(s3_endpoint: str) -> None:
    s3 = client(s3_endpoint)
    x = np.load(next((REPO_ROOT / "layers/models/breast-cancer").glob("*/parity.npz")))["in:features"][:3]
    lines = ["id," + ",".join(BC_NAMES)] + [f"r{k}," + ",".join(repr(float(v)) for v in row) for k, row in enumerate(x)]
    lines.append("bad," + ",".join(["-1"] * len(BC_NAMES)))
    s3.put_object(Bucket="medserve-input", Key="incoming/breast-cancer/e2e ward+1.csv", Body="\n".join(lines).encode())
    doc = wait_for(s3, "results/breast-cancer/e2e ward+1.csv.json")
    assert doc["model"]["id"] == "breast-cancer"
    assert doc["summary"] == {"rows": 4, "ok": 3, "failed": 1}
    assert [r["id"] for r in doc["results"]] == ["r0", "r1", "r2", "bad"]
    assert doc["results"][3]["error"]["status"] == 422
    assert doc["source"]["key"] == "incoming/breast-cancer/e2e ward+1.csv"


def test_unknown_model_upload_gets_an_error_document(s3_endpoint: str) -> None:
    s3 = client(s3_endpoint)
    s3.put_object(Bucket="medserve-input", Key="incoming/not-a-model/x.csv", Body=b"a\n1\n")
    doc = wait_for(s3, "errors/not-a-model/x.csv.json")
    assert doc["status"] == 404 and doc["source"]["key"] == "incoming/not-a-model/x.csv"
    with pytest.raises(ClientError):
        s3.head_object(Bucket="medserve-output", Key="results/not-a-model/x.csv.json")
