"""How a deployed stack authenticates the ``/v2`` routes, for the OpenAPI document.

template.yaml's ``V2Auth`` parameter chooses IAM (SigV4, the default, like every other
route) or a Cognito user pool token in ``Authorization``; API Gateway enforces it. The
function serving ``/openapi.json`` gets the choice in its environment so the document it
serves says what the stage asks for. The local runner has no auth (it resolves the
parameter's default, IAM).
"""

from __future__ import annotations

import os
from typing import Any

AUTH_ENV = "MEDSERVE_V2_AUTH"
SCOPE_ENV = "MEDSERVE_V2_SCOPE"
SCHEME = "cognito"


def describe(document: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``document`` with the /v2 operations' security as ``MEDSERVE_V2_AUTH`` says (unchanged for IAM).

    Parameters
    ----------
    document
        The OpenAPI document (its ``components.securitySchemes`` exists); changed in place.
    environ
        Where to read the settings (``os.environ`` by default).

    Returns
    -------
    dict
        The same document.
    """
    env = os.environ if environ is None else environ
    if env.get(AUTH_ENV, "IAM") != "COGNITO":
        return document
    scope = env.get(SCOPE_ENV, "")
    document["components"]["securitySchemes"][SCHEME] = {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "description": (
            "A token of the stack's Cognito user pool, sent as it is: an ID token, or, where the "
            "operation lists a scope, an access token carrying that scope."
        ),
        "x-amazon-apigateway-authtype": "cognito_user_pools",
    }
    for path, item in document["paths"].items():
        if path == "/v2" or path.startswith("/v2/"):
            for operation in item.values():
                operation["security"] = [{SCHEME: [scope] if scope else []}]
    return document
