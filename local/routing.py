"""Match a request to a route the way API Gateway (REST) does.

API Gateway first picks the resource (path template) that matches the request
path most specifically (at each level a literal segment beats ``{param}``, which
beats a greedy ``{proxy+}``), then the method on that resource: the request's own
method, else ``ANY``. A resource that matches without the method is, for API
Gateway, the same as no resource at all (403 ``MISSING_AUTHENTICATION_TOKEN``): it
does not fall back to a less specific resource.

Path parameter values are passed as sent (percent-encoding kept), as REST APIs do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from local.template import RouteSpec

_LITERAL, _PARAM, _GREEDY = 2, 1, 0


@dataclass(frozen=True)
class _Segment:
    kind: int
    text: str  # the literal, or the parameter name


@dataclass(frozen=True)
class Match:
    """A matched route and the path parameters it captured (``None`` when it has none)."""

    route: RouteSpec
    path_parameters: dict[str, str] | None


def _parse_template(path: str) -> tuple[_Segment, ...]:
    segments = []
    parts = [p for p in path.strip("/").split("/") if p]
    for i, part in enumerate(parts):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name.endswith("+"):
                if i != len(parts) - 1:
                    raise ValueError(f"{path}: a greedy {{{name}}} must be the last segment")
                segments.append(_Segment(_GREEDY, name[:-1]))
            else:
                segments.append(_Segment(_PARAM, name))
        else:
            segments.append(_Segment(_LITERAL, part))
    return tuple(segments)


def split_path(raw_path: str) -> list[str]:
    """Split a request path (no query string) into segments, ignoring one trailing slash."""
    path = raw_path[:-1] if raw_path.endswith("/") and raw_path != "/" else raw_path
    return path.lstrip("/").split("/") if path not in ("", "/") else []


def _match_segments(template: Sequence[_Segment], parts: Sequence[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for i, seg in enumerate(template):
        if seg.kind == _GREEDY:
            rest = parts[i:]
            if not rest or not rest[0]:
                return None
            params[seg.text] = "/".join(rest)
            return params
        if i >= len(parts) or not parts[i]:
            return None
        if seg.kind == _LITERAL:
            if parts[i] != seg.text:
                return None
        else:
            params[seg.text] = parts[i]
    return params if len(parts) == len(template) else None


class RouteTable:
    """The routes of a template, ready to match requests.

    Parameters
    ----------
    routes
        The ``Type: Api`` events of every function.
    """

    def __init__(self, routes: Iterable[RouteSpec]) -> None:
        self._by_path: dict[str, dict[str, RouteSpec]] = {}
        self._templates: dict[str, tuple[_Segment, ...]] = {}
        for route in routes:
            methods = self._by_path.setdefault(route.path, {})
            if route.method in methods:
                other = methods[route.method]
                raise ValueError(
                    f"{route.method} {route.path} is declared twice "
                    f"({other.function_id}.{other.event_name} and {route.function_id}.{route.event_name})"
                )
            methods[route.method] = route
            self._templates[route.path] = _parse_template(route.path)

    @property
    def routes(self) -> list[RouteSpec]:
        """Every route, sorted by path, then method (``ANY`` last)."""
        return [
            r
            for path in sorted(self._by_path)
            for _, r in sorted(self._by_path[path].items(), key=lambda kv: (kv[0] == "ANY", kv[0]))
        ]

    def resource_for(self, raw_path: str) -> tuple[str, dict[str, str]] | None:
        """The most specific path template matching ``raw_path`` and its parameters."""
        parts = split_path(raw_path)
        best: tuple[tuple[int, ...], str, dict[str, str]] | None = None
        for path, template in self._templates.items():
            params = _match_segments(template, parts)
            if params is None:
                continue
            rank = tuple(seg.kind for seg in template)
            if best is None or rank > best[0]:
                best = (rank, path, params)
        return None if best is None else (best[1], best[2])

    def match(self, method: str, raw_path: str) -> Match | None:
        """The route answering ``method raw_path``, or ``None`` (API Gateway's missing-token case)."""
        found = self.resource_for(raw_path)
        if found is None:
            return None
        path, params = found
        methods = self._by_path[path]
        upper = method.upper()
        route = methods.get(upper)
        if route is None and upper == "HEAD":  # HEAD is answered like GET (without the body)
            route = methods.get("GET")
        route = route or methods.get("ANY")
        if route is None:
            return None
        return Match(route=route, path_parameters=params or None)
