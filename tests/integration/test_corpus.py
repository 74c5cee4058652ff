"""The hostile corpus (``tests/corpus/``) through the API handlers and the batch function alike.

Every file must be refused with a 4xx ``application/problem+json`` by the API, get exactly one
outcome in batch (never a 500 document, never a retry), and no answer, document or log
record may repeat the planted marker.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from medserve.batch.keys import parse_key
from tests.conftest import ROOT, invoke, load_event, with_body
from tests.integration.conftest import BatchStack
from tests.unit.test_hostile_input import MARKER

CORPUS = ROOT / "tests" / "corpus"
FILES = sorted(p for folder in ("dicom", "images", "json") for p in (CORPUS / folder).iterdir())
RAW_TYPES = {".dcm": "application/dicom", ".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/png"}
JSON_ROUTES = {"risk": "risk_breast_cancer", "vitals": "vitals_predict", "imaging": "imaging_json"}


def leaks(text: str) -> bool:
    return MARKER in text or MARKER.lower() in text.lower()


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 30, FILES


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_the_api_refuses_every_corpus_file_with_a_4xx_problem(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = []
    if path.suffix == ".json":
        for task, event in JSON_ROUTES.items():
            ev = with_body(load_event(event), path.read_text(encoding="utf-8"), **{"Content-Type": "application/json"})
            answers.append(invoke(task, ev))
    else:
        ev = with_body(load_event("imaging_json"), "", **{"Content-Type": RAW_TYPES[path.suffix]})
        ev["body"] = base64.b64encode(path.read_bytes()).decode("ascii")
        ev["isBase64Encoded"] = True
        answers.append(invoke("imaging", ev))
    for status, headers, problem in answers:
        assert 400 <= status < 500, (status, problem)
        assert headers["content-type"] == "application/problem+json"
        assert problem["status"] == status
        assert not leaks(json.dumps(problem)), problem
    assert not any(leaks(r.getMessage()) for r in caplog.records)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_batch_gives_every_corpus_file_one_outcome_and_no_500(
    stack: BatchStack, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model, name = ("breast-cancer", f"{path.stem}.jsonl") if path.suffix == ".json" else ("chest-xray", path.name)
    key = f"incoming/{model}/{name}"
    stack.put(key, path.read_bytes())
    stack.drain()
    where = parse_key(key)
    keys = stack.keys()
    assert len(keys) == 1 and keys[0] in (where.result_key, where.error_key), keys
    doc = stack.doc(keys[0])
    if keys[0] == where.error_key:
        assert 400 <= doc["status"] < 500, doc
    else:  # a JSON Lines file: every line refused in its own row
        assert doc["summary"]["ok"] == 0 and doc["summary"]["failed"] == doc["summary"]["rows"], doc["summary"]
        assert all(400 <= r["error"]["status"] < 500 for r in doc["results"])
    assert not leaks(json.dumps(doc)), doc
    assert stack.queue_depth(stack.dlq_url) == 0
    assert not any(leaks(r.getMessage()) for r in caplog.records)
