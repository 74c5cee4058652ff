"""API Gateway (REST, Lambda proxy integration) emulation: events in, responses out.

Choices where API Gateway's behaviour cannot be copied exactly:

- A request body whose Content-Type is not a binary media type is passed as text,
  but only when it decodes as UTF-8. A body that does not decode is passed
  base64-encoded with ``isBase64Encoded: true`` (API Gateway would mangle it;
  handing the handler the exact bytes is more useful than a corrupted string).
- A response with ``isBase64Encoded: true`` is always decoded to bytes. API
  Gateway decodes it only when the request's ``Accept`` matches a binary media
  type and otherwise returns the base64 text.
- Errors the gateway itself answers (no route, too large, function error) are
  RFC 9457 problem documents, unless the template declares a GatewayResponse for
  that case, which is then rendered as API Gateway would render it.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from local.cfn import ACCOUNT_ID
from local.routing import Match
from local.template import ApiSpec

LAMBDA_SYNC_PAYLOAD_LIMIT = 6_291_456
"""Lambda's synchronous invocation payload limit (6 MB), in bytes."""

PROBLEM_JSON = "application/problem+json"

_HTTP_TITLES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    413: "Content Too Large",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


@dataclass
class HttpResponse:
    """What goes back on the wire: status, headers in order (repeats allowed), body bytes."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or ``None``."""
        found = None
        for key, value in self.headers:
            if key.lower() == name.lower():
                found = value
        return found


class MalformedProxyResponse(ValueError):
    """The handler's return value is not a valid Lambda proxy response (API Gateway answers 502)."""


# -- request side -----------------------------------------------------------------
def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header value (parameters dropped)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_binary(content_type: str | None, binary_media_types: Sequence[str]) -> bool:
    """Whether API Gateway would treat a body of this Content-Type as binary.

    Parameters
    ----------
    content_type
        The request's Content-Type header.
    binary_media_types
        The API's BinaryMediaTypes (``~1`` already replaced by ``/``); wildcards such
        as ``image/*`` and ``*/*`` are allowed.
    """
    media = media_type(content_type)
    if not media:
        return False
    return any(fnmatch.fnmatchcase(media, pattern.strip().lower()) for pattern in binary_media_types)


def encoded_size(raw_size: int, *, base64_encoded: bool) -> int:
    """The size a body of ``raw_size`` bytes takes in the event (base64 inflates by 4/3)."""
    return 4 * ((raw_size + 2) // 3) if base64_encoded else raw_size


def max_raw_body(*, base64_encoded: bool, limit: int = LAMBDA_SYNC_PAYLOAD_LIMIT) -> int:
    """The largest raw body that fits ``limit`` once encoded."""
    return (limit // 4) * 3 if base64_encoded else limit


def encode_body(body: bytes, *, binary: bool) -> tuple[str | None, bool]:
    """The event's ``body`` and ``isBase64Encoded`` for raw request bytes."""
    if not body:
        return None, False
    if not binary:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def build_event(
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    match: Match,
    binary_media_types: Sequence[str],
    stage: str = "prod",
    source_ip: str = "127.0.0.1",
    request_id: str | None = None,
    protocol: str = "HTTP/1.1",
    host: str = "127.0.0.1",
    now: float | None = None,
) -> dict[str, Any]:
    """Build the API Gateway REST proxy (payload 1.0) event for one request.

    Parameters
    ----------
    method, raw_path, query
        The request line: method, path as sent (percent-encoding kept), query string.
    headers
        The request headers in order, repeats included.
    body
        The raw request body.
    match
        The route the request matched.
    binary_media_types
        The API's BinaryMediaTypes.
    stage, source_ip, request_id, protocol, host, now
        Request context; ``request_id`` defaults to a fresh uuid4.

    Returns
    -------
    dict
        The event, as a Lambda handler receives it.
    """
    request_id = request_id or str(uuid.uuid4())
    now = time.time() if now is None else now
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    qs_single: dict[str, str] = {}
    qs_multi: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        qs_single[key] = value
        qs_multi.setdefault(key, []).append(value)
    content_type = next((v for k, v in reversed(headers) if k.lower() == "content-type"), None)
    event_body, b64 = encode_body(body, binary=is_binary(content_type, binary_media_types))
    user_agent = next((v for k, v in reversed(headers) if k.lower() == "user-agent"), None)
    route = match.route
    return {
        "resource": route.path,
        "path": raw_path,
        "httpMethod": method,
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": qs_single or None,
        "multiValueQueryStringParameters": qs_multi or None,
        "pathParameters": match.path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": route.path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{raw_path}",
            "accountId": ACCOUNT_ID,
            "protocol": protocol,
            "stage": stage,
            "domainPrefix": "local",
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
            },
            "domainName": host,
            "apiId": "local",
        },
        "body": event_body,
        "isBase64Encoded": b64,
    }


# -- response side ----------------------------------------------------------------
def convert_response(result: Any, *, request_id: str) -> HttpResponse:
    """Turn a handler's proxy response into an HTTP response, as API Gateway does.

    ``headers`` and ``multiValueHeaders`` are merged: a name present in
    ``multiValueHeaders`` takes its values from there only. A base64 body is decoded.

    Raises
    ------
    MalformedProxyResponse
        When ``result`` is not a valid proxy response (API Gateway answers 502).
    """
    if not isinstance(result, Mapping):
        raise MalformedProxyResponse(f"the handler returned {type(result).__name__}, not a mapping")
    status = result.get("statusCode")
    try:
        status_code = int(status)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MalformedProxyResponse(f"statusCode is {status!r}") from None
    if not 100 <= status_code <= 599:
        raise MalformedProxyResponse(f"statusCode {status_code} is not an HTTP status")
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise MalformedProxyResponse(f"body is {type(body).__name__}, not a string")
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, Mapping) or not isinstance(multi, Mapping):
        raise MalformedProxyResponse("headers and multiValueHeaders must be mappings")
    headers: list[tuple[str, str]] = []
    for name, value in single.items():
        if name not in multi:
            headers.append((str(name), _header_str(value)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResponse(f"multiValueHeaders[{name!r}] is not a list")
        headers.extend((str(name), _header_str(v)) for v in values)
    if result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body or "", validate=True)
        except ValueError as exc:
            raise MalformedProxyResponse(f"isBase64Encoded but the body is not base64: {exc}") from None
    else:
        payload = (body or "").encode("utf-8")
    headers = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
    headers.append(("x-amzn-RequestId", request_id))
    return HttpResponse(status=status_code, headers=headers, body=payload)


_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def _header_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def problem(
    status: int, detail: str, request_id: str, *, title: str | None = None, type_: str = "about:blank"
) -> HttpResponse:
    """An RFC 9457 ``application/problem+json`` response."""
    doc = {
        "type": type_,
        "title": title or _HTTP_TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    return HttpResponse(
        status=status,
        headers=[("Content-Type", PROBLEM_JSON), ("x-amzn-RequestId", request_id)],
        body=json.dumps(doc).encode("utf-8"),
    )


# -- gateway responses --------------------------------------------------------------
_ERROR_MESSAGES = {
    "MISSING_AUTHENTICATION_TOKEN": "Missing Authentication Token",
    "REQUEST_TOO_LARGE": "Request Too Long",
}
_CONTEXT_VAR = re.compile(r"\$\{?context\.([A-Za-z0-9_.]+)\}?")


def gateway_response(
    apis: Sequence[ApiSpec],
    response_type: str,
    *,
    request_id: str,
    method: str,
    raw_path: str,
    fallback_types: Sequence[str] = (),
) -> HttpResponse | None:
    """Render the template's GatewayResponse for ``response_type``, or ``None`` if none is declared.

    Parameters
    ----------
    apis
        The APIs to look in, first match wins.
    response_type
        The API Gateway response type (``MISSING_AUTHENTICATION_TOKEN``, ...).
    request_id, method, raw_path
        Values for ``$context`` variables in the response template.
    fallback_types
        Response types tried next (e.g. ``DEFAULT_4XX``).
    """
    for rtype in (response_type, *fallback_types):
        for api in apis:
            spec = api.gateway_responses.get(rtype)
            if spec is not None:
                return _render(spec, api, response_type, request_id, method, raw_path)
    return None


def _render(
    spec: Mapping[str, Any], api: ApiSpec, response_type: str, request_id: str, method: str, raw_path: str
) -> HttpResponse:
    message = _ERROR_MESSAGES.get(response_type, response_type)
    context = {
        "requestId": request_id,
        "extendedRequestId": request_id,
        "error.message": message,
        "error.messageString": json.dumps(message),
        "error.responseType": response_type,
        "error.validationErrorString": "",
        "path": f"/{api.stage}{raw_path}",
        "resourcePath": "",
        "httpMethod": method,
        "stage": api.stage,
        "apiId": "local",
        "accountId": ACCOUNT_ID,
        "requestTime": formatdate(usegmt=True),
    }
    templates = spec.get("ResponseTemplates") or {}
    content_type, template = "application/json", ""
    if templates:
        content_type = "application/json" if "application/json" in templates else next(iter(templates))
        template = str(templates[content_type])
    body = _CONTEXT_VAR.sub(lambda m: str(context.get(m.group(1), "")), template)
    headers: list[tuple[str, str]] = []
    params = spec.get("ResponseParameters") or {}
    for name, value in (params.get("Headers") or {}).items():
        text = str(value)
        if len(text) >= 2 and text[0] == text[-1] == "'":  # only static values are rendered locally
            headers.append((str(name), text[1:-1]))
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", content_type))
    headers.append(("x-amzn-RequestId", request_id))
    headers.append(("x-amzn-ErrorType", _error_type(response_type)))
    status = int(spec.get("StatusCode") or (403 if response_type == "MISSING_AUTHENTICATION_TOKEN" else 500))
    return HttpResponse(status=status, headers=headers, body=body.encode("utf-8"))


def _error_type(response_type: str) -> str:
    return "".join(part.capitalize() for part in response_type.split("_")) + "Exception"


def mock_response(integration: Mapping[str, Any], api: ApiSpec, *, request_id: str, method: str) -> HttpResponse:
    """Answer a MOCK integration: its default integration response, ``$context`` variables filled in.

    Parameters
    ----------
    integration
        The ``x-amazon-apigateway-integration`` object (``type: mock``).
    api
        The API it belongs to.
    request_id, method
        Values for ``$context.requestId`` and ``$context.httpMethod``.
    """
    response = (integration.get("responses") or {}).get("default") or {}
    context = {"requestId": request_id, "extendedRequestId": request_id, "httpMethod": method, "stage": api.stage}
    templates = response.get("responseTemplates") or {}
    template = str(templates.get("application/json") or next(iter(templates.values()), ""))
    body = _CONTEXT_VAR.sub(lambda m: str(context.get(m.group(1), "")), template)
    headers: list[tuple[str, str]] = []
    prefix = "method.response.header."
    for name, value in (response.get("responseParameters") or {}).items():
        text = str(value)
        if name.startswith(prefix) and len(text) >= 2 and text[0] == text[-1] == "'":
            headers.append((name[len(prefix) :], text[1:-1]))
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    headers.append(("x-amzn-RequestId", request_id))
    return HttpResponse(status=int(response.get("statusCode") or 200), headers=headers, body=body.encode("utf-8"))
