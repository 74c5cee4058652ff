"""BatchFunction: S3 ``incoming/<model_id>/<name>`` -> SQS -> here -> ``results/`` or ``errors/``.

Every SQS record carries one S3 event notification. Powertools' ``BatchProcessor``
reports only the failed records (``ReportBatchItemFailures``): those are retried by
SQS and reach the DLQ after ``maxReceiveCount`` receives. The record's
``ApproximateReceiveCount`` goes to the worker, which on the last receive turns a
failure that retrying cannot fix into a 500 problem document. The work is in
:mod:`medserve.batch.worker`.

No exception text leaves this module: the worker logs failures as their type and
traceback frames and raises :class:`~medserve.batch.worker.RetryMessage` (whose text
is only the error type), and the processor never raises ``BatchProcessingError``
(``raise_on_entire_batch_failure=False``: its message would embed the records'
exception texts, which the Lambda runtime logs). With ``ReportBatchItemFailures``,
a batch whose every record failed is answered by naming every record, so SQS retries
exactly the same messages.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from medserve import snapstart
from medserve.batch import storage
from medserve.batch.worker import BatchWorker, RetryMessage, Settings, failure_fields
from medserve.registry import Registry

logger = Logger(log_uncaught_exceptions=False)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MedServe"))
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

REGISTRY = Registry.from_env()  # Lambda init: sessions of every task opened once
WORKER = BatchWorker(REGISTRY, Settings.from_env(), logger=logger, metrics=metrics)
# SnapStart: every model answers its golden requests through the batch path before the
# snapshot; after restore the S3 client (credentials, connections) is created afresh.
SNAPSTART = snapstart.install(registry=REGISTRY, warm=snapstart.batch_warmup, prepare=(storage.client,))
snapstart.on_restore(storage.reset_client)


def receive_count(record: SQSRecord) -> int:
    """SQS ``ApproximateReceiveCount`` of the record (1 when absent or unreadable)."""
    try:
        return max(1, int(record.attributes.approximate_receive_count))
    except (KeyError, TypeError, ValueError):
        return 1


def record_handler(record: SQSRecord) -> None:
    """One SQS record; raising marks it failed (retried, then dead-lettered)."""
    try:
        WORKER.handle_message(record.message_id, record.body, receive_count=receive_count(record))
    except RetryMessage:
        raise
    except Exception as exc:  # not raised by the worker's own handling: log it the same safe way
        logger.error(
            "batch record failed; it will be retried", extra={"message_id": record.message_id, **failure_fields(exc)}
        )
        raise RetryMessage(type(exc).__name__) from None


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False, clear_state=True)  # never log the event: keys may be PHI
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
