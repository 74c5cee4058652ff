"""BatchFunction: S3 ``incoming/<model_id>/<name>`` -> SQS -> here -> ``results/`` or ``errors/``.

Every SQS record carries one S3 event notification. Powertools' ``BatchProcessor``
reports only the failed records (``ReportBatchItemFailures``): those are retried by
SQS and reach the DLQ after ``maxReceiveCount`` receives. The work is in
:mod:`medserve.batch.worker`.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from medserve.batch.worker import BatchWorker, Settings
from medserve.registry import Registry

logger = Logger(log_uncaught_exceptions=False)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MedServe"))
processor = BatchProcessor(event_type=EventType.SQS)

REGISTRY = Registry.from_env()  # Lambda init: sessions of every task opened once
WORKER = BatchWorker(REGISTRY, Settings.from_env(), logger=logger, metrics=metrics)


def record_handler(record: SQSRecord) -> None:
    """One SQS record; raising marks it failed (retried, then dead-lettered)."""
    WORKER.handle_message(record.message_id, record.body)


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False, clear_state=True)  # never log the event: keys may be PHI
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
