"""Shared fixtures: events, handler loading, and the environment Lambda would give."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
MODELS = ROOT / "layers" / "models"

# What the template's Globals give every function, pointed at the repo's model folders.
os.environ.setdefault("MEDSERVE_MODELS_DIR", str(MODELS))
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "MedServe")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "medserve-tests")
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
os.environ.setdefault("MEDSERVE_ORT_THREADS", "1")


def live_folder(model_id: str, models: Path = MODELS) -> Path:
    """The folder of a model's live version (``live.json``; the highest version without one)."""
    release = models / model_id / "live.json"
    if release.is_file():
        return models / model_id / json.loads(release.read_text())["live"]
    return max(
        (p.parent for p in (models / model_id).glob("*/manifest.json")),
        key=lambda p: [int(x) for x in p.name.split(".")],
    )


_TIMINGS = re.compile(
    r'("(?:duration_ms|restore_ms)"\s*:\s*)[0-9.e+-]+'  # Powertools log fields
    r'|("latency_ms"\s*,\s*"valueString"\s*:\s*")[0-9.]+'  # the audit record's detail
    r"|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+"  # timestamps
)


def without_timings(text: str) -> str:
    """``text`` with every measured time and timestamp blanked.

    A leak check that looks for a caller's number (``17.99``) in log lines must not find it in a
    request that happened to take 17.99 ms (a flaky test, not a leak).
    """
    return _TIMINGS.sub(lambda m: (m.group(1) or m.group(2) or "") + "T", text)


def load_event(name: str) -> dict[str, Any]:
    """An event from ``events/`` (``.json`` optional)."""
    path = EVENTS / (name if name.endswith(".json") else f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))


_HANDLERS: dict[str, ModuleType] = {}


def load_handler(task: str) -> ModuleType:
    """Import ``functions/<task>/app.py`` once, under a unique module name, as Lambda would."""
    if task not in _HANDLERS:
        path = ROOT / "functions" / task / "app.py"
        spec = importlib.util.spec_from_file_location(f"medserve_fn_{task}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _HANDLERS[task] = module
    return _HANDLERS[task]


class FakeContext:
    """The parts of the Lambda context Powertools reads."""

    function_name = "medserve-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 1536
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:medserve-test"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/medserve-test"
    log_stream_name = "2026/11/23/[$LATEST]test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()


def invoke(task: str, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """Call a handler; return status, lower-cased headers and the parsed JSON body."""
    response = load_handler(task).lambda_handler(event, FakeContext())
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for k, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(k.lower(), values[-1])
    body = response.get("body")
    parsed = json.loads(body) if body and "json" in headers.get("content-type", "") else body
    return response["statusCode"], headers, parsed


def with_body(event: dict[str, Any], body: Any, **headers: str) -> dict[str, Any]:
    """A copy of ``event`` with a new JSON (or raw string) body and extra headers."""
    ev = json.loads(json.dumps(event))
    ev["body"] = body if isinstance(body, str) else json.dumps(body)
    ev["isBase64Encoded"] = False
    for k, v in headers.items():
        name = k.replace("_", "-")
        ev["headers"][name] = v
        ev.setdefault("multiValueHeaders", {})[name] = [v]
    return ev
