"""No bad input may produce a 5xx: every predict handler against a battery of hostile bodies."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import invoke, load_event, with_body

ROUTES = {
    "risk": "risk_breast_cancer",
    "vitals": "vitals_predict",
    "imaging": "imaging_json",
}

HOSTILE: list[Any] = [
    "",
    " ",
    "null",
    "true",
    "0",
    '"text"',
    "[]",
    "[{}]",
    "{",
    '{"a": }',
    "\ufeff{}",
    "{}" * 3,
    '{"instances": null, "observations": null, "image": null}',
    '{"instances": {}, "observations": {}, "image": {}}',
    '{"instances": [[]], "observations": [[]], "image": []}',
    '{"instances": [1, "a", null], "observations": [1, "a", null], "image": 12}',
    '{"instances": [{"": 1}], "observations": [{"": 1}], "image": ""}',
    '{"instances": [{"mean_radius": 1e999}], "observations": [{"time": 1e999}], "image": "===="}',
    '{"explain": null}',
    '{"explain": "true"}',
    '{"explain": [true]}',
    json.dumps({"instances": [{"k" * 10_000: 1}], "observations": [{"k" * 10_000: 1}]}),
    json.dumps({"instances": [{"mean_radius": 10**400}], "observations": [{"heart_rate": 10**400}]}),
    json.dumps({"image": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()}),
    json.dumps({"image": base64.b64encode(b"DICM" * 40).decode()}),
    json.dumps({"image": base64.b64encode(b"\x00" * 128 + b"DICM" + b"\x02\x00").decode()}),
    json.dumps({"image": base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 32).decode()}),
    "[" * 5000 + "]" * 5000,
    '{"a":' * 2000 + "1" + "}" * 2000,
]


@pytest.mark.parametrize("task", sorted(ROUTES))
@pytest.mark.parametrize("body", HOSTILE, ids=[f"b{i}" for i in range(len(HOSTILE))])
def test_hostile_json_bodies_get_a_4xx_problem(task: str, body: str) -> None:
    event = with_body(load_event(ROUTES[task]), body, **{"Content-Type": "application/json"})
    status, headers, problem = invoke(task, event)
    assert 400 <= status < 500, (status, problem)
    assert headers["content-type"] == "application/problem+json"
    assert problem["status"] == status


@pytest.mark.parametrize("task", sorted(ROUTES))
@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "image/gif",
        "application/octet-stream",
    ],
)
def test_unread_content_types_are_415(task: str, ctype: str) -> None:
    event = with_body(load_event(ROUTES[task]), "a=1&b=2", **{"Content-Type": ctype})
    status, headers, problem = invoke(task, event)
    assert status == 415, problem
    assert headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("raw", [b"", b"\x00", b"GIF89a" + b"\x00" * 50, b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"])
@pytest.mark.parametrize("ctype", ["image/png", "image/jpeg", "application/dicom"])
def test_hostile_raw_images_get_a_4xx_problem(raw: bytes, ctype: str) -> None:
    event = with_body(load_event("imaging_json"), "", **{"Content-Type": ctype})
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True
    status, headers, problem = invoke("imaging", event)
    assert 400 <= status < 500, (status, problem)
    assert headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("task", sorted(ROUTES))
@pytest.mark.parametrize(
    "raw", [b"\xff\xfe\x00", '{"a": "\u00e9"}'.encode("utf-16"), '{"a": "d\u00e9j\u00e0"}'.encode("latin-1")]
)
def test_bodies_that_are_not_utf8_are_400(task: str, raw: bytes) -> None:
    event = with_body(load_event(ROUTES[task]), "", **{"Content-Type": "application/json"})
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True
    status, headers, problem = invoke(task, event)
    assert status == 400, problem
    assert headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("task", sorted(ROUTES))
def test_binary_body_without_content_type_is_a_4xx(task: str) -> None:
    event = with_body(load_event(ROUTES[task]), "")
    for name in ("Content-Type", "content-type"):
        event["headers"].pop(name, None)
        event["multiValueHeaders"].pop(name, None)
    event["body"] = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\xff\xfe").decode()
    event["isBase64Encoded"] = True
    status, _, problem = invoke(task, event)
    assert 400 <= status < 500, problem


@pytest.mark.parametrize("task", sorted(ROUTES))
def test_unknown_or_other_task_model_is_404_whatever_the_body(task: str) -> None:
    other = {"risk": "chest-xray", "imaging": "breast-cancer", "vitals": "diabetes-progression"}[task]
    for model_id in ("nope", other):
        for body in ("{}", '{"instances": []}', "not json"):
            event = with_body(load_event(ROUTES[task]), body)
            event["path"] = f"/v1/{task}/{model_id}/predict"
            event["pathParameters"] = {"model_id": model_id}
            status, headers, problem = invoke(task, event)
            assert status == 404, (model_id, body, problem)
            assert headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("task", sorted(ROUTES))
def test_empty_body_is_400(task: str) -> None:
    event = with_body(load_event(ROUTES[task]), "")
    status, _, problem = invoke(task, event)
    assert status == 400, problem
    assert problem["errors"] == [{"field": "body", "message": "the request body is empty"}]


@pytest.mark.parametrize("task", sorted(ROUTES))
@pytest.mark.parametrize("ctype", ["Application/JSON", "APPLICATION/JSON; charset=UTF-8"])
def test_media_types_are_case_insensitive(task: str, ctype: str) -> None:
    event = load_event(ROUTES[task])
    event = with_body(event, event["body"], **{"Content-Type": ctype})
    status, _, body = invoke(task, event)
    assert status == 200, body


def test_compressed_bodies_are_415() -> None:
    event = with_body(load_event("risk_breast_cancer"), "\x1f\x8b", **{"Content-Encoding": "gzip"})
    status, _, problem = invoke("risk", event)
    assert status == 415
    assert problem["errors"][0]["field"] == "header.content-encoding"


def test_isbase64encoded_body_that_is_not_base64_is_400() -> None:
    event = with_body(load_event("risk_breast_cancer"), "not base64!", **{"Content-Type": "application/json"})
    event["isBase64Encoded"] = True
    status, _, problem = invoke("risk", event)
    assert status == 400, problem


def test_json_suffix_media_types_are_read_as_json() -> None:
    event = load_event("risk_breast_cancer")
    status, _, body = invoke("risk", with_body(event, event["body"], **{"Content-Type": "application/fhir+json"}))
    assert status == 200, body
