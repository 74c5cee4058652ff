"""What the local runner needs from a SAM template: functions, their API routes, the APIs.

Globals are merged the way SAM merges them (maps merged key by key, the resource
winning; lists concatenated; scalars overridden) and intrinsics are resolved with
:class:`local.cfn.Resolver`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.cfn import STACK_NAME, Resolver, load_template

log = logging.getLogger("local")

IMPLICIT_API = "ServerlessRestApi"
"""The logical id SAM gives the API it creates for events without ``RestApiId``."""


@dataclass(frozen=True)
class ApiSpec:
    """One API Gateway REST API of the template."""

    logical_id: str
    stage: str
    binary_media_types: tuple[str, ...]
    default_auth: str
    gateway_responses: Mapping[str, Any]


@dataclass(frozen=True)
class RouteSpec:
    """One ``Type: Api`` event: a path template and method wired to a function."""

    function_id: str
    event_name: str
    path: str
    method: str
    api_id: str
    auth: str
    mock: Mapping[str, Any] | None = None
    """For a MOCK integration (no function): the ``x-amazon-apigateway-integration`` object."""


@dataclass
class FunctionSpec:
    """One ``AWS::Serverless::Function``, Globals merged and intrinsics resolved."""

    logical_id: str
    function_name: str
    code_dir: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    events: dict[str, dict[str, Any]]
    routes: list[RouteSpec] = field(default_factory=list)

    def events_of_type(self, event_type: str) -> dict[str, dict[str, Any]]:
        """The function's events of one type (e.g. ``"SQS"``), name to ``Properties``."""
        return {
            name: dict(ev.get("Properties") or {}) for name, ev in self.events.items() if ev.get("Type") == event_type
        }


@dataclass
class Template:
    """The parsed template: functions by logical id, APIs by logical id, and all routes."""

    path: Path
    raw: dict[str, Any]
    resolver: Resolver
    functions: dict[str, FunctionSpec]
    apis: dict[str, ApiSpec]
    mock_routes: list[RouteSpec] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The folder of the template (``CodeUri`` is relative to it)."""
        return self.path.parent

    @property
    def routes(self) -> list[RouteSpec]:
        """Every API route of every function."""
        return [route for fn in self.functions.values() for route in fn.routes] + list(self.mock_routes)

    def functions_with_event(self, event_type: str) -> list[FunctionSpec]:
        """Functions with at least one event of ``event_type`` (``"SQS"``, ``"S3"``, ``"Api"`` ...)."""
        return [fn for fn in self.functions.values() if fn.events_of_type(event_type)]

    def binary_media_types(self) -> tuple[str, ...]:
        """The union of every API's BinaryMediaTypes (``~1`` already turned into ``/``)."""
        seen: dict[str, None] = {}
        for api in self.apis.values():
            for media in api.binary_media_types:
                seen[media] = None
        return tuple(seen)


def merge_globals(global_props: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """Merge SAM Globals into a resource's properties (maps merged, lists appended, scalars overridden)."""
    out: dict[str, Any] = dict(global_props)
    for key, value in props.items():
        base = out.get(key)
        if isinstance(base, Mapping) and isinstance(value, Mapping):
            out[key] = merge_globals(base, value)
        elif isinstance(base, list) and isinstance(value, list):
            out[key] = [*base, *value]
        else:
            out[key] = value
    return out


def _env_str(value: Any) -> str:
    """Lambda environment values are strings; CloudFormation writes booleans in lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _auth_name(auth: Any) -> str:
    if isinstance(auth, Mapping):
        name = auth.get("DefaultAuthorizer") or auth.get("Authorizer")
        if name:
            return str(name)
    return "NONE"


def parse_template(
    path: str | Path, *, region: str = "us-east-1", parameters: Mapping[str, Any] | None = None
) -> Template:
    """Load ``path`` and extract the functions, routes and APIs a local run needs.

    Parameters
    ----------
    path
        The SAM template.
    region
        ``AWS::Region`` for intrinsic resolution.
    parameters
        Template parameter values overriding their defaults.

    Returns
    -------
    Template
        Functions (all of them, API or not), APIs and routes.
    """
    path = Path(path).resolve()
    raw = load_template(path)
    resolver = Resolver(raw, region=region, parameters=parameters)
    globals_ = raw.get("Globals") or {}
    global_fn = globals_.get("Function") or {}
    global_api = globals_.get("Api") or {}
    resources: Mapping[str, Any] = raw.get("Resources") or {}

    def enabled(resource: Mapping[str, Any]) -> bool:
        cond = resource.get("Condition")
        return cond is None or resolver.condition(str(cond))

    apis: dict[str, ApiSpec] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::Api" and enabled(resource):
            props = resolver.resolve(merge_globals(global_api, resource.get("Properties") or {}))
            apis[logical_id] = _api_spec(logical_id, props, default_stage="prod")

    functions: dict[str, FunctionSpec] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function" or not enabled(resource):
            continue
        props = resolver.resolve(merge_globals(global_fn, resource.get("Properties") or {}))
        if props.get("PackageType") == "Image" or "InlineCode" in props:
            log.warning("%s: image or inline functions are not run locally; skipped", logical_id)
            continue
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str):
            log.warning("%s: CodeUri is not a local folder; skipped", logical_id)
            continue
        env = (props.get("Environment") or {}).get("Variables") or {}
        events = {name: dict(ev) for name, ev in (props.get("Events") or {}).items()}
        name = props.get("FunctionName")
        spec = FunctionSpec(
            logical_id=logical_id,
            function_name=name if isinstance(name, str) else f"{STACK_NAME}-{logical_id}",
            code_dir=(path.parent / code_uri).resolve(),
            handler=str(props.get("Handler", "app.lambda_handler")),
            runtime=str(props.get("Runtime", "python3.12")),
            timeout=int(props.get("Timeout", 3)),
            memory_size=int(props.get("MemorySize", 128)),
            environment={str(k): _env_str(v) for k, v in env.items()},
            events=events,
        )
        for event_name, event in events.items():
            if event.get("Type") != "Api":
                continue
            ev_props = event.get("Properties") or {}
            api_id = _api_ref(ev_props.get("RestApiId"))
            if api_id not in apis:
                # Events without RestApiId (or pointing at an unknown API) use SAM's implicit API.
                if api_id != IMPLICIT_API:
                    log.warning(
                        "%s.%s: RestApiId %r not found; using the implicit API",
                        logical_id,
                        event_name,
                        api_id,
                    )
                api_id = IMPLICIT_API
                if api_id not in apis:
                    apis[api_id] = _api_spec(api_id, resolver.resolve(dict(global_api)), default_stage="Prod")
            auth = ev_props.get("Auth")
            route_auth = _auth_name(auth) if auth else apis[api_id].default_auth
            spec.routes.append(
                RouteSpec(
                    function_id=logical_id,
                    event_name=event_name,
                    path=str(ev_props["Path"]),
                    method=_method(ev_props["Method"]),
                    api_id=api_id,
                    auth=route_auth,
                )
            )
        functions[logical_id] = spec
    _add_gateway_response_resources(resources, resolver, apis)
    mocks = [
        route
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::Serverless::Api" and logical_id in apis
        for route in _mock_routes(logical_id, resource.get("Properties") or {}, apis[logical_id])
    ]
    return Template(path=path, raw=raw, resolver=resolver, functions=functions, apis=apis, mock_routes=mocks)


_ANY_METHOD = "x-amazon-apigateway-any-method"


def _method(value: Any) -> str:
    """An event's method in upper case; API Gateway's any-method extension is ``ANY``."""
    text = str(value)
    return "ANY" if text.lower() == _ANY_METHOD else text.upper()


def _mock_routes(api_id: str, props: Mapping[str, Any], api: ApiSpec) -> list[RouteSpec]:
    """Methods of an inline ``DefinitionBody`` answered by API Gateway itself (``type: mock``)."""
    body = props.get("DefinitionBody")
    if not isinstance(body, Mapping):
        return []
    routes = []
    for path, methods in (body.get("paths") or {}).items():
        for method, operation in (methods or {}).items():
            if not isinstance(operation, Mapping):
                continue
            integration = operation.get("x-amazon-apigateway-integration")
            if not isinstance(integration, Mapping) or str(integration.get("type", "")).lower() != "mock":
                continue
            security = {name for requirement in operation.get("security") or [] for name in requirement}
            routes.append(
                RouteSpec(
                    function_id="",
                    event_name=f"mock {method}",
                    path=str(path),
                    method=_method(method),
                    api_id=api_id,
                    auth="NONE" if "NONE" in security else api.default_auth,
                    mock=integration,
                )
            )
    return routes


def _add_gateway_response_resources(resources: Mapping[str, Any], resolver: Resolver, apis: dict[str, ApiSpec]) -> None:
    """Fold ``AWS::ApiGateway::GatewayResponse`` resources into their API, in SAM's shape."""
    for resource in resources.values():
        if resource.get("Type") != "AWS::ApiGateway::GatewayResponse":
            continue
        props = resolver.resolve(resource.get("Properties") or {})
        api = apis.get(_api_ref(props.get("RestApiId")))
        if api is None:
            continue
        prefix = "gatewayresponse.header."
        headers = {
            k[len(prefix) :]: v for k, v in (props.get("ResponseParameters") or {}).items() if k.startswith(prefix)
        }
        api.gateway_responses[str(props.get("ResponseType"))] = {  # type: ignore[index]
            "StatusCode": props.get("StatusCode"),
            "ResponseParameters": {"Headers": headers},
            "ResponseTemplates": props.get("ResponseTemplates") or {},
        }


def _api_ref(value: Any) -> str:
    """The logical id an event's ``RestApiId`` points at (after resolution ``Ref`` gives the id)."""
    if value is None:
        return IMPLICIT_API
    return str(value)


def _api_spec(logical_id: str, props: Mapping[str, Any], *, default_stage: str) -> ApiSpec:
    binary = tuple(str(m).replace("~1", "/") for m in props.get("BinaryMediaTypes") or ())
    stage = props.get("StageName")
    return ApiSpec(
        logical_id=logical_id,
        stage=stage if isinstance(stage, str) and stage else default_stage,
        binary_media_types=binary,
        default_auth=_auth_name(props.get("Auth")),
        gateway_responses=dict(props.get("GatewayResponses") or {}),
    )
