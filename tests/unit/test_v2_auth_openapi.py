"""/openapi.json states the /v2 routes' auth as the stack's V2Auth parameter sets it.

Given ModelsFunction's environment (template.yaml passes V2Auth and V2CognitoScope), when
the document is served, then with IAM (the default, and the local runner) nothing differs
from SigV4 everywhere, and with COGNITO every /v2 operation, and only those, asks for a
user pool token (with the scope when one is set). The document stays valid OpenAPI.
"""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from medserve import v2_auth
from tests.conftest import invoke, load_event

SCOPE = "medserve/v2.infer"


def _served(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in (v2_auth.AUTH_ENV, v2_auth.SCOPE_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, _, doc = invoke("models", load_event("models_openapi"))
    assert status == 200
    validate(doc)
    return doc


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, item in doc["paths"].items() for method, op in item.items()}


def _is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


@pytest.mark.parametrize("env", [{}, {v2_auth.AUTH_ENV: "IAM", v2_auth.SCOPE_ENV: SCOPE}])
def test_with_iam_every_route_but_health_takes_sigv4(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    doc = _served(monkeypatch, **env)

    assert doc["security"] == [{"sigv4": []}]
    assert set(doc["components"]["securitySchemes"]) == {"sigv4"}
    for (method, path), op in _operations(doc).items():
        if path == "/v1/health":
            assert op["security"] == [], method
        else:
            assert "security" not in op, (method, path)  # the document-wide sigv4


@pytest.mark.parametrize(("scope", "scopes"), [("", []), (SCOPE, [SCOPE])])
def test_with_cognito_every_v2_operation_and_only_those_takes_a_pool_token(
    monkeypatch: pytest.MonkeyPatch, scope: str, scopes: list[str]
) -> None:
    doc = _served(monkeypatch, **{v2_auth.AUTH_ENV: "COGNITO", v2_auth.SCOPE_ENV: scope})

    scheme = doc["components"]["securitySchemes"][v2_auth.SCHEME]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    operations = _operations(doc)
    assert any(_is_v2(path) for _, path in operations)
    for (method, path), op in operations.items():
        if _is_v2(path):
            assert op["security"] == [{v2_auth.SCHEME: scopes}], (method, path)
        elif path == "/v1/health":
            assert op["security"] == [], method
        else:
            assert "security" not in op, (method, path)
