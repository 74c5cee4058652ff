"""CodeDeploy PreTraffic/PostTraffic hooks (thin: the checks live in medserve.deploy_hooks)."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from medserve.deploy_hooks import handle, lambda_invoker

logger = Logger()
MODELS_DIR = os.environ.get("MEDSERVE_MODELS_DIR", "/opt/models")


def _run(event: dict[str, Any], hook: str) -> dict[str, Any]:
    report = handle(
        event,
        codedeploy=boto3.client("codedeploy"),
        invoke=lambda_invoker(boto3.client("lambda")),
        models_dir=MODELS_DIR,
        hook=hook,
    )
    status = "Succeeded" if report.ok else "Failed"
    return {"status": status, "passed": len(report.passed), "failed": len(report.failed)}


@logger.inject_lambda_context(log_event=False)
def pre_traffic(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Golden requests through the NEW versions (MEDSERVE_HOOK_TARGETS) before any traffic moves."""
    return _run(event, "PreTraffic")


@logger.inject_lambda_context(log_event=False)
def post_traffic(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Health and golden requests through the live aliases after the shift."""
    return _run(event, "PostTraffic")
