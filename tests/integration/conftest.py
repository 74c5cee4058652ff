"""moto-backed AWS for the batch function: input/output buckets, queue + DLQ, S3 -> SQS notifications.

Objects put into the input bucket are delivered by moto's own S3 -> SQS notification
(the same message shape S3 sends); :class:`BatchStack.drain` then plays Lambda's
event source mapping with :class:`local.batch_poller.SqsPoller` against the real
``functions/batch/app.py`` handler.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.batch_poller import SqsPoller, sqs_event
from medserve.batch import storage
from tests.conftest import FakeContext, load_handler

INPUT, OUTPUT = "medserve-input", "medserve-output"
REGION = os.environ.get("AWS_DEFAULT_REGION", "eu-west-1")
MAX_RECEIVE = 3

# What the template gives BatchFunction (read at its init).
os.environ.setdefault("MEDSERVE_OUTPUT_BUCKET", OUTPUT)
os.environ.setdefault("MEDSERVE_BATCH_MAX_BYTES", "52428800")
os.environ.setdefault("MEDSERVE_BATCH_MAX_ROWS", "100000")
os.environ.setdefault("MEDSERVE_BATCH_MAX_RECEIVES", str(MAX_RECEIVE))


@dataclass
class BatchStack:
    """The batch pipeline inside one moto mock."""

    s3: Any
    sqs: Any
    queue_url: str
    queue_arn: str
    dlq_url: str
    responses: list[Any]

    @property
    def app(self) -> Any:
        return load_handler("batch")

    def invoke(self, event: dict[str, Any]) -> Any:
        response = self.app.lambda_handler(event, FakeContext())
        self.responses.append(response)
        return response

    def put(self, key: str, body: bytes | str) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.s3.put_object(Bucket=INPUT, Key=key, Body=data)

    def receive(self, n: int = 10) -> list[dict[str, Any]]:
        out = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=n, AttributeNames=["All"], WaitTimeSeconds=0
        )
        return list(out.get("Messages") or [])

    def event_for(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return sqs_event(messages, queue_arn=self.queue_arn, region=REGION)

    def poller(self) -> SqsPoller:
        return SqsPoller(
            self.sqs, queue_url=self.queue_url, queue_arn=self.queue_arn, region=REGION, invoke=self.invoke, wait_s=0
        )

    def drain(self, max_polls: int = 20) -> None:
        """Poll until the queue is empty (failed messages come straight back: visibility 0)."""
        poller = self.poller()
        for _ in range(max_polls):
            if poller.poll_once().received == 0:
                return
        raise AssertionError("the queue did not drain")

    def keys(self, prefix: str = "") -> list[str]:
        out = self.s3.list_objects_v2(Bucket=OUTPUT, Prefix=prefix)
        return sorted(o["Key"] for o in out.get("Contents", []))

    def doc(self, key: str) -> dict[str, Any]:
        return json.loads(self.s3.get_object(Bucket=OUTPUT, Key=key)["Body"].read())

    def content_type(self, key: str) -> str:
        return str(self.s3.head_object(Bucket=OUTPUT, Key=key)["ContentType"])

    def queue_depth(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[BatchStack]:
    """Buckets, queue (+ DLQ, maxReceiveCount 3, visibility 0) and the notification, in moto."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        storage.reset_client()
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        for bucket in (INPUT, OUTPUT):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        dlq_url = sqs.create_queue(QueueName="batch-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName="batch",
            Attributes={
                "VisibilityTimeout": "0",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE}),
            },
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=INPUT,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
                    }
                ]
            },
        )
        yield BatchStack(s3, sqs, queue_url, queue_arn, dlq_url, [])
    storage.reset_client()
