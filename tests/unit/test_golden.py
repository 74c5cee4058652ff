"""Serving parity: every model version answers its golden requests as recorded.

``golden.json`` beside each model version (``python -m local.golden --write``, ``make golden``)
holds 2-4 representative requests and the numeric part of the answers; the SnapStart
warm-up and a deployment's pre-traffic check send the same requests.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from local import golden
from medserve.golden import answer_part, differences, golden_event, golden_requests
from tests.conftest import MODELS

FOLDERS = golden.model_folders(MODELS)


def test_every_model_version_has_golden_requests() -> None:
    assert len(FOLDERS) >= 4
    for folder in FOLDERS:
        doc = json.loads((folder / "golden.json").read_text(encoding="utf-8"))
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        assert (doc["model"], doc["version"]) == (manifest["id"], manifest["version"])
        assert 2 <= len(doc["requests"]) <= 4, folder
        for request in doc["requests"]:
            assert request["path"] == f"/v1/{manifest['task']}/{manifest['id']}/predict"
            assert request["expect"]["status"] == 200
            assert request["expect"]["json"], "the answer's numeric part is recorded"
            assert request["atol"] > 0 and request["rtol"] > 0


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: f"{p.parent.name}-{p.name}")
def test_served_answers_match_golden(folder: Path) -> None:
    assert golden.check(folder) == []


def test_a_changed_answer_is_caught() -> None:
    folder = next(f for f in FOLDERS if f.parent.name == "breast-cancer")
    request = golden_requests(folder)[0]
    status, body = golden.send("risk", request)
    assert status == 200
    expected = copy.deepcopy(request["expect"]["json"])
    assert differences(answer_part(body), expected, atol=request["atol"], rtol=request["rtol"]) == []

    expected["predictions"][0]["probability"] += 0.01
    diffs = differences(answer_part(body), expected, atol=request["atol"], rtol=request["rtol"])
    assert diffs == ["$.predictions[0].probability: " + diffs[0].split(": ", 1)[1]]
    assert differences({"a": 1.0, "b": "x"}, {"a": 1.0}, atol=0.1, rtol=0.0) == ["$.b: not expected"]
    assert differences({"a": "y"}, {"a": "x"}, atol=0.1, rtol=0.0) != []
    assert differences({"a": True}, {"a": 1}, atol=0.1, rtol=0.0) != []


def test_golden_event_is_an_api_gateway_rest_event() -> None:
    event = golden_event(
        {
            "name": "n",
            "path": "/v1/imaging/chest-xray/predict",
            "query": {"version": "1.0.0"},
            "headers": {"content-type": "image/png"},
            "body_base64": "iVBO",
        },
        request_id="r1",
    )
    assert event["resource"] == "/v1/imaging/{model_id}/predict"
    assert event["pathParameters"] == {"model_id": "chest-xray"}
    assert event["queryStringParameters"] == {"version": "1.0.0"}
    assert event["isBase64Encoded"] is True and event["body"] == "iVBO"
    assert event["requestContext"]["requestId"] == "r1"
