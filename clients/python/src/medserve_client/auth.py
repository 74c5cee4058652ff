"""SigV4 for a deployed stack: botocore's signer and credential chain, nothing hand-made.

botocore is imported only when a request is signed, so the local case starts fast.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Mapping
from typing import Any

from medserve_client.errors import NoCredentialsError

Clock = Callable[[], _dt.datetime]

_EXECUTE_API = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def region_from_host(host: str) -> str | None:
    """The region in an ``<api>.execute-api.<region>.amazonaws.com`` host, else ``None``."""
    match = _EXECUTE_API.match(host.lower())
    return match.group(1) if match else None


def is_execute_api(host: str) -> bool:
    """True for an API Gateway default endpoint host (these need SigV4)."""
    return region_from_host(host) is not None


def utc_now() -> _dt.datetime:
    """The current UTC time, naive (as botocore formats it)."""
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


def botocore_session(profile: str | None = None, region: str | None = None) -> Any:
    """A botocore session for ``profile`` (the standard chain when ``None``), with ``region`` if given."""
    import botocore.session

    session = botocore.session.Session(profile=profile)
    if region:
        session.set_config_variable("region", region)
    return session


class Signer:
    """Signs requests with SigV4 (``botocore.auth.SigV4Auth``) for one service and region.

    Parameters
    ----------
    region
        The region the API lives in.
    service
        The signing name; ``execute-api`` for API Gateway.
    credentials
        botocore credentials; when ``None`` they come from the standard chain for ``profile``.
    profile
        A named profile of the shared config/credentials files.
    clock
        Returns the signing time (naive UTC); the wall clock unless given (tests pin it).
    """

    def __init__(
        self,
        region: str,
        service: str = "execute-api",
        *,
        credentials: Any = None,
        profile: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.region = region
        self.service = service
        self.profile = profile
        self._credentials = credentials
        self._clock = clock or utc_now

    def credentials(self) -> Any:
        """Frozen credentials from the given ones or the chain; :class:`NoCredentialsError` when none."""
        creds = self._credentials
        if creds is None:
            try:
                creds = botocore_session(self.profile).get_credentials()
            except Exception as exc:  # noqa: BLE001 - a missing or broken profile is the user's to fix
                raise NoCredentialsError(
                    f"cannot load AWS credentials: {exc}",
                    hint="check --profile / AWS_PROFILE and ~/.aws/config",
                ) from exc
            if creds is None:
                raise NoCredentialsError(
                    "no AWS credentials found (environment, shared files, SSO, instance role)",
                    hint="run `aws configure` or `aws sso login`, or pass --profile NAME",
                )
            self._credentials = creds
        return creds.get_frozen_credentials() if hasattr(creds, "get_frozen_credentials") else creds

    def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> dict[str, str]:
        """The headers to send: ``headers`` plus ``Authorization``, ``X-Amz-Date`` (and the session token)."""
        from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
        from botocore.awsrequest import AWSRequest

        clock = self._clock

        class _ClockedSigV4Auth(SigV4Auth):
            # botocore's SigV4Auth.add_auth with the signing time taken from ``clock``;
            # canonical request, string to sign, key derivation and header are botocore's.
            def add_auth(self, request: Any) -> None:
                request.context["timestamp"] = clock().strftime(SIGV4_TIMESTAMP)
                self._modify_request_before_signing(request)
                canonical_request = self.canonical_request(request)
                string_to_sign = self.string_to_sign(request, canonical_request)
                self._inject_signature_to_request(request, self.signature(string_to_sign, request))

        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        _ClockedSigV4Auth(self.credentials(), self.service, self.region).add_auth(request)
        return {str(k): str(v) for k, v in request.headers.items()}
