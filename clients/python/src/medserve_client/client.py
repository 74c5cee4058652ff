"""The Python client: ``Client(endpoint).predict(model_id, ...)``.

Plain ``urllib`` for HTTP (no import cost); botocore only when requests are signed.
Every failure is a :class:`~medserve_client.errors.MedServeError` subclass carrying the
problem document the API answered.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypedDict

from medserve_client.auth import Clock, Signer, botocore_session, is_execute_api, region_from_host
from medserve_client.errors import (
    LAMBDA_SYNC_PAYLOAD_LIMIT,
    AccessDeniedError,
    EndpointUnreachableError,
    MedServeError,
    NotFoundError,
    PayloadTooLargeError,
    ProblemError,
)

DEFAULT_ENDPOINT = "http://127.0.0.1:3000"
ENDPOINT_ENV = "MEDSERVE_ENDPOINT"
FHIR_JSON = "application/fhir+json"
Task = Literal["risk", "imaging", "vitals"]
BATCH_HINT = "use `medserve batch` (S3) for large files"


class Model(TypedDict, total=False):
    """A model as ``GET /v1/models`` lists it (``GET /v1/models/{id}`` adds more keys)."""

    id: str
    version: str
    task: Task
    sha256: str
    synthetic: bool
    intended_use: str


def stack_outputs(stack: str, *, profile: str | None = None, region: str | None = None) -> dict[str, str]:
    """A deployed stack's outputs (``ApiUrl``, ``InputBucketName``, ``OutputBucketName``...)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.exceptions import NoCredentialsError as BotoNoCredentials

    from medserve_client.errors import NoCredentialsError

    session = botocore_session(profile, region)
    try:
        cfn = session.create_client("cloudformation")
        stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    except BotoNoCredentials as exc:
        raise NoCredentialsError(
            "no AWS credentials found to read the stack's outputs",
            hint="run `aws configure` or `aws sso login`, or pass --profile NAME",
        ) from exc
    except ClientError as exc:
        raise MedServeError(
            f"cannot read stack {stack!r}: {exc}", hint="check --stack, --region and --profile"
        ) from exc
    except BotoCoreError as exc:
        raise MedServeError(f"cannot read stack {stack!r}: {exc}", hint="check --region and --profile") from exc
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


class Client:
    """A MedServe API client.

    Parameters
    ----------
    endpoint
        The API base URL (``/v1/...`` is appended); ``$MEDSERVE_ENDPOINT`` or the local runner by default.
    sign
        Sign with SigV4; by default only ``*.execute-api.<region>.amazonaws.com`` endpoints are signed.
    profile, region
        The AWS profile and region for signing (the region defaults to the one in the host, then
        the profile's).
    timeout
        Seconds to wait for an answer.
    signer
        A ready :class:`~medserve_client.auth.Signer` (overrides ``sign``, ``profile``, ``region``).
    clock
        The signing clock (tests pin it).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        sign: bool | None = None,
        profile: str | None = None,
        region: str | None = None,
        timeout: float = 60.0,
        signer: Signer | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.endpoint = (endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
        parts = urllib.parse.urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MedServeError(f"not an http(s) URL: {self.endpoint!r}", hint="e.g. --endpoint http://127.0.0.1:3000")
        self.timeout = timeout
        host = parts.hostname or ""
        if signer is None and (sign if sign is not None else is_execute_api(host)):
            signing_region = region or region_from_host(host) or botocore_session(profile).get_config_variable("region")
            if not signing_region:
                raise MedServeError("no AWS region to sign for", hint="pass --region or set AWS_REGION")
            signer = Signer(signing_region, profile=profile, clock=clock)
        self.signer = signer

    @classmethod
    def from_stack(cls, stack: str, *, profile: str | None = None, region: str | None = None, **kwargs: Any) -> Client:
        """A signed client for a deployed stack, its URL read from the stack's ``ApiUrl`` output."""
        outputs = stack_outputs(stack, profile=profile, region=region)
        if "ApiUrl" not in outputs:
            raise MedServeError(f"stack {stack!r} has no ApiUrl output", hint="is it a MedServe stack?")
        return cls(outputs["ApiUrl"], sign=True, profile=profile, region=region, **kwargs)

    # --- the routes -------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /v1/health``."""
        return self.request("GET", "/v1/health")

    def models(self) -> list[Model]:
        """``GET /v1/models``: every served model."""
        return list(self.request("GET", "/v1/models").get("models", []))

    def model(self, model_id: str) -> dict[str, Any]:
        """``GET /v1/models/{model_id}``: the model with inputs, outputs, metrics, versions and card."""
        return self.request("GET", f"/v1/models/{_segment(model_id)}")

    def predict(
        self,
        model_id: str,
        data: Any,
        *,
        task: Task | None = None,
        explain: bool = False,
        version: str | None = None,
        fhir: bool = False,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Predict with one model.

        Parameters
        ----------
        model_id
            The model.
        data
            risk: a list of instances (``{feature: number}``) or ``{"instances": [...]}``;
            vitals: a list of observations or ``{"observations": [...]}``;
            imaging: the image's bytes (PNG, JPEG or DICOM) or a :class:`~pathlib.Path` to it.
        task
            The model's task; asked of ``GET /v1/models/{id}`` when not given.
        explain
            Ask for contributions (risk, vitals) or the CAM heatmap (imaging).
        version
            Pin a version (``?version=``); the live one otherwise.
        fhir
            Answer a FHIR R4 Bundle (``Accept: application/fhir+json``).
        content_type
            The media type of image bytes; read from the bytes when not given.

        Returns
        -------
        dict
            The API's answer (or the Bundle).
        """
        task = task or self.model(model_id).get("task")
        query: dict[str, str] = {}
        if version:
            query["version"] = version
        headers = {"accept": FHIR_JSON if fhir else "application/json"}
        body: bytes
        if task == "imaging":
            raw = Path(data).read_bytes() if isinstance(data, (str, os.PathLike)) else bytes(data)
            headers["content-type"] = content_type or sniff_image_type(raw) or "application/octet-stream"
            if explain:
                query["explain"] = "true"
            body = raw
        elif task in ("risk", "vitals"):
            key = "instances" if task == "risk" else "observations"
            payload = dict(data) if isinstance(data, Mapping) else {key: list(data)}
            if explain:
                payload["explain"] = True
            headers["content-type"] = "application/json"
            body = json.dumps(payload).encode()
        else:
            raise MedServeError(f"model {model_id!r} has an unknown task {task!r}")
        path = f"/v1/{task}/{_segment(model_id)}/predict"
        return self.request("POST", path, query=query, body=body, headers=headers)

    # --- HTTP ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call; the decoded JSON answer, or a :class:`MedServeError`."""
        url = self.endpoint + path + (f"?{urllib.parse.urlencode(sorted(query.items()))}" if query else "")
        send = {"accept": "application/json", "user-agent": "medserve-client", **(headers or {})}
        if body is not None:
            check_size(body, binary=not send.get("content-type", "").endswith("json"))
        if self.signer is not None:
            # user-agent is not signed by botocore; everything else that is sent is.
            send = self.signer.sign(method, url, send, body)
        req = urllib.request.Request(url, data=body, method=method, headers=send)  # noqa: S310 - http(s) only
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - checked in __init__
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("content-type", "")
        except urllib.error.HTTPError as err:
            status, raw, ctype = err.code, err.read(), err.headers.get("content-type", "")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EndpointUnreachableError(
                f"cannot reach {self.endpoint} ({reason})",
                hint="is `make run` up? otherwise check --endpoint / MEDSERVE_ENDPOINT or --stack",
            ) from exc
        return self._decode(status, raw, ctype)

    def _decode(self, status: int, raw: bytes, ctype: str) -> dict[str, Any]:
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = None
        if 200 <= status < 300:
            if not isinstance(doc, dict):
                raise MedServeError(f"the API answered {status} with a body that is not a JSON object", status=status)
            return doc
        problem = doc if isinstance(doc, dict) else {}
        is_problem = "problem+json" in ctype or ("title" in problem and "status" in problem)
        if status == 403 and not is_problem:
            # API Gateway's IAM authorizer answers {"message": ...}, never a problem.
            message = str(problem.get("message") or "Forbidden")
            hint = (
                "the request was not signed: use the stack's execute-api URL, --stack NAME, or --sign"
                if self.signer is None
                else "check that your credentials are current and that your IAM identity may call execute-api:Invoke"
            )
            raise AccessDeniedError(f"403 from API Gateway (IAM): {message}", status=status, hint=hint)
        if status == 413:
            raise PayloadTooLargeError(
                str(problem.get("detail") or "the request is too large for the API"),
                problem=problem,
                status=status,
                hint=BATCH_HINT,
            )
        if not is_problem:
            message = str(problem.get("message") or (raw[:200].decode("utf-8", "replace") if raw else ""))
            raise MedServeError(f"the API answered {status}: {message}".rstrip(": "), problem=problem, status=status)
        cls = NotFoundError if status == 404 else ProblemError
        title = problem.get("title") or f"HTTP {status}"
        detail = problem.get("detail")
        raise cls(f"{title}: {detail}" if detail else str(title), problem=problem, status=status)


def check_size(body: bytes, *, binary: bool) -> None:
    """Refuse a body over Lambda's 6 MB synchronous payload limit before sending it."""
    size = 4 * ((len(body) + 2) // 3) if binary else len(body)
    if size > LAMBDA_SYNC_PAYLOAD_LIMIT:
        shown = f"{len(body):,} bytes" + (f" ({size:,} as base64)" if binary else "")
        raise PayloadTooLargeError(
            f"the request body is {shown}; the API takes at most {LAMBDA_SYNC_PAYLOAD_LIMIT:,} bytes",
            status=None,
            hint=BATCH_HINT,
        )


def sniff_image_type(raw: bytes) -> str | None:
    """The media type read from the bytes: PNG, JPEG or DICOM (``DICM`` at 128), else ``None``."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if raw.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if raw[128:132] == b"DICM":
        return "application/dicom"
    return None


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


__all__ = ["Client", "Model", "check_size", "sniff_image_type", "stack_outputs"]
