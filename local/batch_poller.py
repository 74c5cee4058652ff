"""A Lambda SQS event source mapping, locally: long-poll a queue, invoke, delete what succeeded.

What it copies from Lambda's poller:

- up to ``batch_size`` messages per invocation, waiting up to ``window_s`` (the
  ``MaximumBatchingWindowInSeconds``) to fill a batch once one message has arrived;
- the event is Lambda's SQS shape (``Records[].messageId/receiptHandle/body/
  attributes/messageAttributes/md5OfBody/eventSource/eventSourceARN/awsRegion``);
- with ``ReportBatchItemFailures`` the messages named in ``batchItemFailures`` are left
  on the queue and the rest deleted; without it, or when the handler raises or
  answers malformed failures, the whole batch is left on the queue;
- messages left on the queue come back after the queue's visibility timeout, and the
  queue's redrive policy moves them to the DLQ after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("local")

Invoke = Callable[[dict[str, Any]], Any]


def _message_attributes(attrs: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in (attrs or {}).items():
        out[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": list(value.get("StringListValues") or []),
            "binaryListValues": list(value.get("BinaryListValues") or []),
            "dataType": value.get("DataType"),
        }
    return out


def sqs_record(message: dict[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One ``ReceiveMessage`` message as a record of Lambda's SQS event."""
    attrs = message.get("Attributes") or {}
    keep = ("ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp")
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: str(attrs[k]) for k in keep if k in attrs},
        "messageAttributes": _message_attributes(message.get("MessageAttributes")),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def sqs_event(messages: Sequence[dict[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """Lambda's SQS event for a batch of received messages."""
    return {"Records": [sqs_record(m, queue_arn=queue_arn, region=region) for m in messages]}


def failed_ids(response: Any, message_ids: Sequence[str]) -> set[str] | None:
    """The ids Lambda would retry from a ``ReportBatchItemFailures`` answer (``None``: all of them)."""
    if response is None:
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    ids: set[str] = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident not in message_ids:
            return None  # Lambda treats an invalid identifier as a failure of the whole batch
        ids.add(ident)
    return ids


@dataclass
class PollResult:
    """What one poll did."""

    received: int = 0
    deleted: int = 0
    failed: int = 0
    error: BaseException | None = None


class SqsPoller:
    """Poll ``queue_url`` and feed batches to ``invoke`` (see the module docstring).

    Parameters
    ----------
    sqs
        A boto3 SQS client.
    queue_url, queue_arn, region
        The queue, and the ARN/region written into each record.
    invoke
        Calls the function with an event; returns its answer or raises.
    batch_size
        ``BatchSize`` of the event source mapping (at most 10 per receive; more are gathered).
    window_s
        ``MaximumBatchingWindowInSeconds``.
    report_failures
        Whether ``FunctionResponseTypes`` holds ``ReportBatchItemFailures``.
    wait_s
        Long-poll wait of each ``ReceiveMessage`` (short, so stopping is quick).
    """

    def __init__(
        self,
        sqs: Any,
        *,
        queue_url: str,
        queue_arn: str,
        region: str,
        invoke: Invoke,
        batch_size: int = 10,
        window_s: float = 0.0,
        report_failures: bool = True,
        wait_s: int = 1,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self.invoke = invoke
        self.batch_size = max(1, batch_size)
        self.window_s = max(0.0, window_s)
        self.report_failures = report_failures
        self.wait_s = wait_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _receive(self, count: int, wait_s: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def gather(self) -> list[dict[str, Any]]:
        """One batch: the first receive long-polls; then fill up until full or the window ends."""
        batch = self._receive(self.batch_size, self.wait_s)
        if not batch:
            return batch
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.batch_size and time.monotonic() < deadline and not self._stop.is_set():
            more = self._receive(self.batch_size - len(batch), 0)
            if more:
                batch.extend(more)
            else:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return batch

    def poll_once(self) -> PollResult:
        """Receive one batch, invoke, and delete the messages that succeeded."""
        messages = self.gather()
        result = PollResult(received=len(messages))
        if not messages:
            return result
        ids = [m["MessageId"] for m in messages]
        event = sqs_event(messages, queue_arn=self.queue_arn, region=self.region)
        try:
            response = self.invoke(event)
        except Exception as exc:  # the whole batch failed: every message comes back
            log.warning(
                "batch function failed on %d message(s) (%s); they will be retried", len(ids), type(exc).__name__
            )
            result.failed, result.error = len(ids), exc
            return result
        failed = failed_ids(response, ids) if self.report_failures else set()
        if failed is None:
            failed = set(ids)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(chunk)],
            )
        result.deleted, result.failed = len(done), len(failed)
        if failed:
            log.info(
                "%d of %d message(s) failed; they will be retried after the visibility timeout", len(failed), len(ids)
            )
        return result

    # -- background thread ------------------------------------------------------------
    def run(self) -> None:
        """Poll until :meth:`stop`; errors talking to SQS are logged and retried."""
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("polling the batch queue failed; retrying in 1 s")
                self._stop.wait(1.0)

    def start(self) -> SqsPoller:
        """Poll in a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="local-sqs-poller", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling and wait for the current batch to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
