"""The HTTP side: an API Gateway (REST) look-alike in front of the functions.

Use from tests::

    from local import LocalApi

    with LocalApi("template.yaml", port=0) as api:
        requests.get(f"{api.url}/v1/health")

No authorisation is enforced locally (routes are IAM-authenticated on AWS).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local import apigw
from local.apigw import HttpResponse, problem
from local.functions import FunctionInitError, FunctionRuntime, add_to_sys_path, restore_env
from local.routing import Match, RouteTable
from local.template import ApiSpec, Template, parse_template

log = logging.getLogger("local")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
API_GATEWAY_PAYLOAD_LIMIT = 10 * 1024 * 1024
"""API Gateway's own request payload limit (10 MB), checked before Lambda's 6 MB."""
DISCARD_LIMIT = 64 * 1024 * 1024
"""A refused body is read and thrown away up to this size (so the client sees the answer), then the
connection is closed."""
_CHUNK = 64 * 1024
READ_TIMEOUT_S = 30.0
"""A connection that sends nothing for this long (a body shorter than its Content-Length) is answered 408."""


class _TooLarge(Exception):
    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


class _BadRequest(Exception):
    pass


class LocalApi:
    """Serve a SAM template's API routes over HTTP, in this process.

    Parameters
    ----------
    template
        The SAM template (default: the repository's ``template.yaml``).
    host, port
        Where to listen; ``port=0`` picks a free port (read it back from :attr:`port`).
    models_dir
        ``MEDSERVE_MODELS_DIR`` for every function (default: ``$MEDSERVE_MODELS_DIR`` if set,
        else ``layers/models`` next to the template), replacing Lambda's ``/opt/models``.
    env
        Further variables set for every function, over the template's.
    eager
        Import the API functions at :meth:`start` (Lambda init) rather than on first request.
    strict
        Raise at :meth:`start` when a function fails to initialise (otherwise its routes answer 502
        and init is retried on the next request, as Lambda does).
    region
        ``AWS_REGION`` for the functions and intrinsic resolution.
    read_timeout
        Seconds a socket read may wait (a client that stalls mid-request gets a 408 and is closed).
    """

    def __init__(
        self,
        template: str | Path = DEFAULT_TEMPLATE,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        models_dir: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        eager: bool = True,
        strict: bool = False,
        region: str | None = None,
        read_timeout: float = READ_TIMEOUT_S,
    ) -> None:
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.template: Template = parse_template(template, region=self.region)
        root = self.template.root
        if models_dir is None:
            models_dir = os.environ.get("MEDSERVE_MODELS_DIR") or root / "layers" / "models"
        self.models_dir = Path(models_dir).resolve()
        local_env = {"MEDSERVE_MODELS_DIR": str(self.models_dir), **(env or {})}
        # Lambda puts layer content under /opt; the common layer's python package is importable.
        add_to_sys_path([root / "layers" / "common"])
        self.functions: dict[str, FunctionRuntime] = {
            fid: FunctionRuntime(spec, local_env=dict(local_env), region=self.region)
            for fid, spec in self.template.functions.items()
        }
        self.routes = RouteTable(self.template.routes)
        self.host = host
        self._requested_port = port
        self.eager = eager
        self.strict = strict
        self.read_timeout = read_timeout
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------
    @property
    def api_functions(self) -> list[FunctionRuntime]:
        """The functions with at least one API route."""
        return [
            self.functions[fid] for fid in dict.fromkeys(r.function_id for r in self.routes.routes if r.mock is None)
        ]

    def init_functions(self) -> dict[str, BaseException]:
        """Import every API function now; returns the failures by logical id (tracebacks are logged)."""
        failures: dict[str, BaseException] = {}
        for runtime in self.api_functions:
            try:
                runtime.load()
            except FunctionInitError as exc:
                failures[runtime.spec.logical_id] = exc
                log.error(
                    "init of %s failed; its routes answer 502 until it loads",
                    runtime.spec.logical_id,
                    exc_info=exc.__cause__,
                )
        return failures

    def start(self) -> LocalApi:
        """Initialise the functions (if eager), bind the port and serve in a background thread."""
        if self._server is not None:
            return self
        if self.eager:
            failures = self.init_functions()
            if failures and self.strict:
                raise next(iter(failures.values()))
        server = ThreadingHTTPServer((self.host, self._requested_port), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="local-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, free the port and restore the environment variables the functions set."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)
        restore_env()

    def __enter__(self) -> LocalApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``port=0``)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:3000`` (routes start with ``/v1``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- one request -----------------------------------------------------------------
    def api_for(self, match: Match | None) -> list[ApiSpec]:
        """The APIs whose settings apply: the matched route's, else all of them."""
        if match is not None:
            return [self.template.apis[match.route.api_id]]
        return list(self.template.apis.values())

    def handle(self, req: _Request) -> tuple[HttpResponse, str]:
        """Answer one request; returns the response and the route (path template) for the access log."""
        match = self.routes.match(req.method, req.raw_path)
        apis = self.api_for(match)
        binary_types = tuple(t for api in apis for t in api.binary_media_types)
        binary = apigw.is_binary(req.header("Content-Type"), binary_types)
        if match is None:
            req.discard_body()
            response = apigw.gateway_response(
                apis,
                "MISSING_AUTHENTICATION_TOKEN",
                request_id=req.request_id,
                method=req.method,
                raw_path=req.raw_path,
                fallback_types=("DEFAULT_4XX",),
            ) or problem(404, "No route for this method and path", req.request_id)
            return response, "(no route)"
        route = match.route
        if route.mock is not None:  # API Gateway answers itself: no function, the body is never used
            req.discard_body()
            return apigw.mock_response(route.mock, apis[0], request_id=req.request_id, method=req.method), route.path
        try:
            body = req.read_body(binary=binary, apis=apis)
        except _TooLarge as exc:
            return exc.response, route.path
        except _BadRequest as exc:
            req.handler.close_connection = True
            return problem(400, str(exc), req.request_id), route.path
        event = apigw.build_event(
            method=req.method,
            raw_path=req.raw_path,
            query=req.query,
            headers=req.headers,
            body=body,
            match=match,
            binary_media_types=binary_types,
            stage=self.template.apis[route.api_id].stage,
            source_ip=req.client_ip,
            request_id=req.request_id,
            protocol=req.protocol,
            host=req.header("Host") or f"{self.host}:{self.port}",
        )
        size = apigw.encoded_size(len(body), base64_encoded=bool(event["isBase64Encoded"])) if body else 0
        if size > apigw.LAMBDA_SYNC_PAYLOAD_LIMIT:  # a non-UTF-8 text body became base64
            return _lambda_too_large(size, req.request_id), route.path
        runtime = self.functions[route.function_id]
        try:
            result = runtime.invoke(event, request_id=req.request_id)
        except FunctionInitError as exc:
            log.error(
                "%s failed to initialise (request %s)",
                route.function_id,
                req.request_id,
                exc_info=exc.__cause__,
            )
            return problem(502, "the function failed to initialise; see the server log", req.request_id), route.path
        except Exception:
            log.exception("%s raised (request %s)", route.function_id, req.request_id)
            return problem(502, "the function raised; see the server log", req.request_id), route.path
        try:
            if isinstance(result, Mapping) and len(str(result.get("body") or "")) > apigw.LAMBDA_SYNC_PAYLOAD_LIMIT:
                raise apigw.MalformedProxyResponse("the response exceeds Lambda's 6 MB payload limit")
            return apigw.convert_response(result, request_id=req.request_id), route.path
        except apigw.MalformedProxyResponse as exc:
            log.error(
                "%s returned a malformed proxy response (request %s): %s",
                route.function_id,
                req.request_id,
                exc,
            )
            return problem(502, f"the function returned a malformed proxy response: {exc}", req.request_id), route.path


def _lambda_too_large(size: int, request_id: str) -> HttpResponse:
    return problem(
        413,
        f"The request body is {size:,} bytes as Lambda receives it (base64 adds a third to binary "
        f"bodies); Lambda's synchronous payload limit is {apigw.LAMBDA_SYNC_PAYLOAD_LIMIT:,} bytes. "
        "Use the batch bucket for larger files.",
        request_id,
    )


class _Request:
    """What the server needs from one HTTP request, with bounded body reading."""

    def __init__(self, handler: BaseHTTPRequestHandler, api: LocalApi) -> None:
        self.handler = handler
        self.api = api
        self.request_id = str(uuid.uuid4())
        self.method = handler.command
        parts = urlsplit(handler.path)
        self.raw_path = parts.path or "/"
        self.query = parts.query
        self.protocol = handler.request_version
        self.client_ip = handler.client_address[0]
        headers = [(str(k), str(v)) for k, v in handler.headers.items()]
        present = {k.lower() for k, _ in headers}
        for name, value in (
            ("X-Forwarded-For", self.client_ip),
            ("X-Forwarded-Port", str(api.port)),
            ("X-Forwarded-Proto", "http"),
        ):
            if name.lower() not in present:
                headers.append((name, value))
        self.headers = headers
        self._body_consumed = False

    def header(self, name: str) -> str | None:
        """The last value of request header ``name``."""
        value = None
        for key, item in self.headers:
            if key.lower() == name.lower():
                value = item
        return value

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.header("Transfer-Encoding") or "").lower()

    def content_length(self) -> int | None:
        text = self.header("Content-Length")
        if text is None or self.chunked:
            return None
        try:
            length = int(text)
        except ValueError:
            raise _BadRequest("Content-Length is not a number") from None
        if length < 0:
            raise _BadRequest("Content-Length is negative")
        return length

    def read_body(self, *, binary: bool, apis: list[ApiSpec]) -> bytes:
        """Read the body, refusing (without holding it in memory) one over API Gateway's or Lambda's limit."""
        length = self.content_length()
        if length is not None:
            self._check_size(length, binary=binary, apis=apis)
            self._body_consumed = True
            return self.handler.rfile.read(length) if length else b""
        if not self.chunked:
            self._body_consumed = True
            return b""
        limit = apigw.max_raw_body(base64_encoded=binary)
        data = bytearray()
        chunks = self._chunks()
        for chunk in chunks:
            data += chunk
            if len(data) > limit:
                received = len(data)
                data.clear()
                self._body_consumed = True
                self._drain(chunks, received)
                raise _TooLarge(self._too_large(received, binary=binary, apis=apis, at_least=True))
        self._body_consumed = True
        return bytes(data)

    def _drain(self, chunks: Iterator[bytes], dropped: int) -> None:
        """Read the rest of a chunked body and drop it, up to :data:`DISCARD_LIMIT`; then close."""
        try:
            for piece in chunks:
                dropped += len(piece)
                if dropped > DISCARD_LIMIT:
                    self.handler.close_connection = True
                    return
        except _BadRequest:
            self.handler.close_connection = True

    def _check_size(self, length: int, *, binary: bool, apis: list[ApiSpec]) -> None:
        if (
            length > API_GATEWAY_PAYLOAD_LIMIT
            or apigw.encoded_size(length, base64_encoded=binary) > apigw.LAMBDA_SYNC_PAYLOAD_LIMIT
        ):
            response = self._too_large(length, binary=binary, apis=apis)
            self.discard_body()
            raise _TooLarge(response)

    def _too_large(self, length: int, *, binary: bool, apis: list[ApiSpec], at_least: bool = False) -> HttpResponse:
        if length > API_GATEWAY_PAYLOAD_LIMIT:
            rendered = apigw.gateway_response(
                apis,
                "REQUEST_TOO_LARGE",
                request_id=self.request_id,
                method=self.method,
                raw_path=self.raw_path,
            )
            if rendered is not None:
                return rendered
        size = apigw.encoded_size(length, base64_encoded=binary)
        response = _lambda_too_large(size, self.request_id)
        if at_least:
            response = problem(
                413,
                f"The chunked request body exceeds Lambda's synchronous payload limit of "
                f"{apigw.LAMBDA_SYNC_PAYLOAD_LIMIT:,} bytes as Lambda receives it. Use the batch bucket for "
                "larger files.",
                self.request_id,
            )
        return response

    def _chunks(self) -> Iterator[bytes]:
        """Decode ``Transfer-Encoding: chunked`` from the socket, one chunk at a time."""
        rfile = self.handler.rfile
        while True:
            line = rfile.readline(1024)
            if not line:
                raise _BadRequest("the chunked body ended early")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest("a chunk size is not hexadecimal") from None
            if size == 0:
                while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            remaining = size
            while remaining:
                piece = rfile.read(min(remaining, _CHUNK))
                if not piece:
                    raise _BadRequest("the chunked body ended early")
                remaining -= len(piece)
                yield piece
            rfile.readline(1024)  # the CRLF closing the chunk

    def discard_body(self) -> None:
        """Read and drop an unread body (bounded), so the client can read the answer; else close."""
        if self._body_consumed:
            return
        self._body_consumed = True
        try:
            length = self.content_length()
        except _BadRequest:
            self.handler.close_connection = True
            return
        rfile = self.handler.rfile
        if length is not None:
            if length > DISCARD_LIMIT:
                self.handler.close_connection = True
                return
            while length > 0:
                piece = rfile.read(min(length, _CHUNK))
                if not piece:
                    break
                length -= len(piece)
            return
        if self.chunked:
            self._drain(self._chunks(), 0)


def _make_handler(api: LocalApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "MedServeLocal"
        timeout = api.read_timeout  # socket read timeout: a stalled client is not held forever
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The stdlib's own errors (unknown method, bad request line, header too long) as problem+json.

            Its HTML page quotes the method or request line back; this names only the status.
            """
            _send_stdlib_error(self, code)

        def handle_expect_100(self) -> bool:
            # Refuse an oversized body before the client sends it.
            req = _Request(self, api)
            try:
                length = req.content_length()
                if length is not None:
                    match = api.routes.match(req.method, req.raw_path)
                    apis = api.api_for(match)
                    types = tuple(t for a in apis for t in a.binary_media_types)
                    binary = apigw.is_binary(req.header("Content-Type"), types)
                    if (
                        length > API_GATEWAY_PAYLOAD_LIMIT
                        or apigw.encoded_size(length, base64_encoded=binary) > apigw.LAMBDA_SYNC_PAYLOAD_LIMIT
                    ):
                        self.close_connection = True
                        self._send(
                            req._too_large(length, binary=binary, apis=apis),
                            req,
                            match.route.path if match else "(no route)",
                            time.monotonic(),
                        )
                        return False
            except _BadRequest:
                pass
            return super().handle_expect_100()

        def _dispatch(self) -> None:
            started = time.monotonic()
            req = _Request(self, api)
            try:
                response, route = api.handle(req)
            except TimeoutError:
                # The client stopped sending mid-body: answer 408 and close (the body is unread).
                response, route = _request_timeout(req.request_id), "(timeout)"
                req._body_consumed = True
                self.close_connection = True
            except Exception:
                log.exception("the local runner failed on request %s", req.request_id)
                response, route = (
                    problem(502, "the local runner failed; see the server log", req.request_id),
                    "(error)",
                )
                self.close_connection = True
            if not req._body_consumed:
                req.discard_body()
            self._send(response, req, route, started)

        def _send(self, response: HttpResponse, req: _Request, route: str, started: float) -> None:
            try:
                self.send_response(response.status)
                for name, value in response.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            log.info(
                "%s %s %d %.1fms %s",
                req.method,
                route,
                response.status,
                (time.monotonic() - started) * 1000,
                req.request_id,
            )

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            """Silenced: the default line holds the query string; see :meth:`_send`."""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            log.warning("http: " + format, *args)

    return Handler


def _request_timeout(request_id: str) -> HttpResponse:
    return problem(
        408,
        "The request was not received in time (the body stopped short of its Content-Length)",
        request_id,
        title="Request Timeout",
    )


def _send_stdlib_error(handler: BaseHTTPRequestHandler, code: int) -> None:
    """Answer an error the stdlib detected before routing, without repeating anything the client sent."""
    status = HTTPStatus(code) if code in HTTPStatus._value2member_map_ else HTTPStatus.BAD_REQUEST
    detail = {
        501: "This HTTP method is not supported (API Gateway answers only GET, POST, PUT, PATCH, DELETE, HEAD, "
        "OPTIONS)",
        400: "The request line or headers could not be read",
    }.get(status.value, f"The request could not be read ({status.phrase})")
    response = problem(status.value, detail, str(uuid.uuid4()), title=status.phrase)
    handler.close_connection = True
    handler.request_version = "HTTP/1.1"  # an unreadable request line leaves HTTP/0.9: no status line
    try:
        handler.send_response(status.value)
        for name, value in response.headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(response.body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD" and status.value >= 200 and status.value not in (204, 304):
            handler.wfile.write(response.body)
        handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass
    log.info("%s %d (rejected before routing)", "(request)", status.value)
