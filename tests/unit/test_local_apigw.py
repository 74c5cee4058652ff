"""API Gateway emulation details of the local runner: response validation, binary types, sizes."""

from __future__ import annotations

import base64
import json

import pytest

from local.apigw import (
    MalformedProxyResponse,
    convert_response,
    encoded_size,
    is_binary,
    max_raw_body,
    problem,
)


@pytest.mark.parametrize(
    "result",
    [
        None,
        "200",
        {"body": "x"},
        {"statusCode": "abc"},
        {"statusCode": 999},
        {"statusCode": 200, "body": {"a": 1}},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "multiValueHeaders": {"X": "not-a-list"}},
        {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True},
    ],
)
def test_malformed_proxy_responses_are_rejected(result: object) -> None:
    with pytest.raises(MalformedProxyResponse):
        convert_response(result, request_id="r")


def test_valid_response_converts() -> None:
    out = convert_response(
        {
            "statusCode": "202",
            "headers": {"A": 1, "B": True, "Content-Length": "999"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": "héllo",
        },
        request_id="rid",
    )
    assert out.status == 202
    assert out.body == "héllo".encode()
    assert out.headers == [
        ("A", "1"),
        ("B", "true"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("x-amzn-RequestId", "rid"),
    ]  # the handler's Content-Length is recomputed


def test_empty_base64_body_and_missing_body() -> None:
    assert convert_response({"statusCode": 204}, request_id="r").body == b""
    out = convert_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}, request_id="r"
    )
    assert out.body == b"\x00\x01"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("image/png", True),
        ("IMAGE/PNG; q=1", True),
        ("image/jpeg", True),
        ("image/gif", False),
        ("application/json", False),
        (None, False),
        ("", False),
    ],
)
def test_is_binary(content_type: str | None, expected: bool) -> None:
    assert is_binary(content_type, ("image/png", "image/jp*")) is expected


def test_wildcard_binary_type_matches_everything() -> None:
    assert is_binary("application/json", ("*/*",))


def test_base64_sizes() -> None:
    assert encoded_size(3, base64_encoded=True) == 4
    assert encoded_size(4, base64_encoded=True) == 8
    assert encoded_size(4, base64_encoded=False) == 4
    raw = max_raw_body(base64_encoded=True)
    assert len(base64.b64encode(b"\x00" * raw)) == 6_291_456
    assert len(base64.b64encode(b"\x00" * (raw + 1))) > 6_291_456


def test_problem_document() -> None:
    out = problem(413, "too big", "rid")
    assert out.status == 413
    assert out.header("content-type") == "application/problem+json"
    assert json.loads(out.body) == {
        "type": "about:blank",
        "title": "Content Too Large",
        "status": 413,
        "detail": "too big",
        "request_id": "rid",
    }
