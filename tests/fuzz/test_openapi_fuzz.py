"""Schemathesis against the local runner over ``/openapi.json``: positive and negative, seeded, bounded.

Every generated request (at least :data:`MIN_CASES` of them, every operation, both modes)
must be answered without a 5xx; every error must be ``application/problem+json`` with a
matching ``status``; and no answer may contain :data:`MARKER`, a caller string planted in
each request in turn: as an unknown query parameter name, an unknown JSON key, a header
value, a ``Content-Type`` / ``Accept`` parameter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from local import LocalApi

pytestmark = pytest.mark.fuzz

MARKER = "Mq7-Leak^Doe"
"""Not a plain identifier, so no answer may repeat it (house rule)."""
MIN_CASES = 2000
EXAMPLES = {"get": 40, "post": 320}
"""Examples per operation and mode: 4 GET x 2 x 40 + 3 POST x 2 x 320 = 2,240 (some GETs exhaust early)."""
PLANTS = ("query", "json_key", "header", "content_type", "accept", "none")


@pytest.fixture(scope="module")
def api() -> Iterator[LocalApi]:
    with LocalApi(port=0) as running:
        yield running


def plant(case: Any, where: str) -> None:
    """Put :data:`MARKER` in one place of the request the server must never repeat."""
    headers = dict(case.headers or {})
    if where == "query":
        case.query = {**(case.query or {}), MARKER: "1"}
    elif where == "json_key" and isinstance(case.body, dict):
        case.body = {**case.body, MARKER: 1}
    elif where == "header":
        headers["X-Patient"] = MARKER
    elif where == "content_type" and case.method.upper() == "POST":
        headers["Content-Type"] = f"application/{MARKER.lower()}"
    elif where == "accept":
        headers["Accept"] = f"application/json;profile={MARKER}, text/{MARKER.lower()};q=0.5"
    case.headers = headers


def _headers(response: Any) -> dict[str, str]:
    """Response headers, lower-cased, one value each (schemathesis keeps lists)."""
    out = {}
    for name, value in dict(response.headers).items():
        out[name.lower()] = ", ".join(value) if isinstance(value, list) else str(value)
    return out


def violations(response: Any) -> list[str]:
    """What is wrong with one answer (empty when it keeps every rule)."""
    out = []
    status = response.status_code
    headers = _headers(response)
    if status >= 500:
        out.append(f"{status} answered")
    if status >= 400:
        ctype = headers.get("content-type", "")
        if not ctype.startswith("application/problem+json"):
            out.append(f"{status} error is {ctype!r}, not problem+json")
        else:
            try:
                doc = json.loads(response.content)
            except ValueError:
                doc = None
            if not isinstance(doc, dict) or doc.get("status") != status:
                out.append(f"{status} problem body does not carry its status")
    text = response.content.decode("utf-8", "replace") + json.dumps(headers)
    if MARKER in text or MARKER.lower() in text.lower():
        out.append(f"{status} answer repeats the planted marker")
    return out


def fuzz_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    *,
    base_url: str,
    session: requests.Session,
    failures: dict[str, int],
    counted: dict[str, int],
) -> None:
    """Run one operation's seeded cases in one generation mode, collecting every violation."""
    label = f"{operation.method.upper()} {operation.path} [{mode.value}"
    examples = EXAMPLES.get(operation.method.lower(), EXAMPLES["post"])

    @settings(
        max_examples=examples,
        derandomize=True,  # seeded: the same cases on every run
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected, not minimised
    )
    @given(case=operation.as_strategy(generation_mode=mode), where=st.sampled_from(PLANTS))
    def run(case: Any, where: str) -> None:
        plant(case, where)
        try:
            response = case.call(base_url=base_url, session=session, timeout=30)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError):
            counted["unsendable"] += 1  # the client cannot send it; API Gateway never receives it
            return
        counted["cases"] += 1
        for problem in violations(response):
            what = f"{label}, {where}]: {problem}"
            failures[what] = failures.get(what, 0) + 1

    try:
        run()
    except Unsatisfiable:
        # Nothing of this operation can be made invalid (a GET without parameters or body).
        if mode is not schemathesis.GenerationMode.NEGATIVE:
            raise


def test_fuzz_every_operation_positive_and_negative(api: LocalApi) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    failures: dict[str, int] = {}  # each kind of violation once, with its count
    counted = {"cases": 0, "unsendable": 0}
    started = time.monotonic()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                fuzz_operation(result.ok(), mode, base_url=api.url, session=session, failures=failures, counted=counted)
    print(f"fuzz: {counted} in {time.monotonic() - started:.1f} s")  # measured in bench/RESULTS.md
    assert not failures, "\n".join(f"{what} (x{n})" for what, n in failures.items())
    assert counted["cases"] >= MIN_CASES, counted
