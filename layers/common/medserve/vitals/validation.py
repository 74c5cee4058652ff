"""Validation of ``POST /v1/vitals/{model_id}/predict`` bodies (pure Python).

Every violation in the body is collected and reported at once as one 422 problem,
each error naming its field (``observations[3].spo2``). Messages state the rule,
never the submitted value (it is patient data).

Decisions
---------
- **Times** are ISO-8601 date-times *with* a time of day (``2026-11-23T08:00:00Z``,
  ``2026-11-23T09:00:00+01:00`` or naive ``2026-11-23T08:00:00``), read with
  :meth:`datetime.fromisoformat`. Naive times are taken as UTC. All observations of a
  request must be of one kind: mixing naive and offset times is an error (the order
  would be ambiguous).
- **Order**: strictly ascending. Two observations at the same instant are an error
  (which one is "the last", that NEWS2 scores, would be ambiguous).
- **Numbers** are JSON numbers (not booleans, not strings), finite, within the
  physiologically possible ranges of the model's ``manifest["vitals"]["features"]``
  (by default :data:`medserve.vitals.features.FIELD_SPECS`: heart rate 0-300/min,
  respiratory rate 0-80/min, SpO2 0-100 %, temperature 25-45 °C, systolic 0-300 mmHg).
- ``consciousness`` is one of the upper-case ACVPU letters; ``supplemental_oxygen`` and
  ``explain`` are JSON booleans (not 0/1, not strings).
- 1 to ``max_observations`` (500) observations; outside that, one error names
  ``observations`` and the items are not inspected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medserve.problems import unknown_key, unprocessable
from medserve.vitals.features import FIELD_SPECS, MAX_OBSERVATIONS, OBSERVATION_FIELDS

__all__ = ["VitalsRequest", "parse_time", "validate_request"]

TOP_LEVEL = ("observations", "explain")


@dataclass(frozen=True)
class VitalsRequest:
    """A validated request.

    Attributes
    ----------
    observations
        The observations as sent (validated).
    times
        Their parsed times, all timezone-aware (naive input taken as UTC).
    explain
        Whether occlusion contributions were asked for.
    """

    observations: list[dict[str, Any]]
    times: list[datetime]
    explain: bool


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 date-time that includes a time of day.

    Parameters
    ----------
    text
        E.g. ``"2026-11-23T08:00:00Z"``.

    Returns
    -------
    datetime.datetime
        Naive when the text has no offset.

    Raises
    ------
    ValueError
        When the text is not an ISO-8601 date-time.
    """
    if len(text) < 13 or text[10] not in "Tt ":
        raise ValueError("no time of day")
    return datetime.fromisoformat(text)


def _number_error(value: Any, spec: Mapping[str, Any]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        return "must be a finite number"
    lo, hi = spec.get("min"), spec.get("max")
    unit = f" {spec['unit']}" if spec.get("unit") else ""
    if lo is not None and hi is not None and not lo <= value <= hi:
        return f"must be between {lo:g} and {hi:g}{unit}"
    if lo is not None and value < lo:
        return f"must be at least {lo:g}{unit}"
    if hi is not None and value > hi:
        return f"must be at most {hi:g}{unit}"
    return None


_FIELD_SET = frozenset(OBSERVATION_FIELDS)


Rule = tuple[str, str, float, float, frozenset[str]]


def _rules(specs: Mapping[str, Mapping[str, Any]]) -> list[Rule]:
    """``(name, type, min, max, allowed)`` per observation field except ``time``, precomputed."""
    rules: list[Rule] = []
    for name in OBSERVATION_FIELDS[1:]:
        spec = specs[name]
        lo, hi = spec.get("min"), spec.get("max")
        rules.append(
            (
                name,
                str(spec.get("type")),
                -math.inf if lo is None else float(lo),
                math.inf if hi is None else float(hi),
                frozenset(spec.get("allowed") or ()),
            )
        )
    return rules


def _fast_path(o: Any, rules: list[Rule]) -> datetime | None:
    """The parsed time of an observation that is entirely valid, else ``None`` (then check in full)."""
    if type(o) is not dict or o.keys() != _FIELD_SET:
        return None
    for name, kind, lo, hi, allowed in rules:
        v = o[name]
        if kind == "number":
            # NaN and infinities fail the comparison and take the full path
            if type(v) not in (int, float) or not lo <= v <= hi:
                return None
        elif kind == "boolean":
            if type(v) is not bool:
                return None
        elif kind == "string" and (type(v) is not str or v not in allowed):
            return None
    time = o["time"]
    if type(time) is not str:
        return None
    try:
        return parse_time(time)
    except ValueError:
        return None


def _check_observation(
    i: int,
    o: Any,
    specs: Mapping[str, Mapping[str, Any]],
    rules: list[Rule],
    errors: list[tuple[str, str]],
) -> datetime | None:
    """Append this observation's errors; return its parsed time when it has a valid one."""
    quick = _fast_path(o, rules)
    if quick is not None:
        return quick
    where = f"observations[{i}]"
    if not isinstance(o, dict):
        errors.append((where, "must be an object"))
        return None
    for key in sorted(o.keys() - set(OBSERVATION_FIELDS), key=str):
        errors.append(unknown_key(where, key))
    when: datetime | None = None
    for name in OBSERVATION_FIELDS:
        field = f"{where}.{name}"
        if name not in o:
            errors.append((field, "required field is missing"))
            continue
        value = o[name]
        spec = specs[name]
        kind = spec.get("type")
        if kind == "datetime":
            if not isinstance(value, str):
                errors.append((field, "must be an ISO-8601 date-time string"))
                continue
            try:
                when = parse_time(value)
            except ValueError:
                errors.append((field, "must be an ISO-8601 date-time with a time of day, e.g. 2026-11-23T08:00:00Z"))
        elif kind == "number":
            message = _number_error(value, spec)
            if message:
                errors.append((field, message))
        elif kind == "boolean":
            if not isinstance(value, bool):
                errors.append((field, "must be a boolean (true or false)"))
        elif kind == "string":
            allowed = spec.get("allowed") or []
            if not isinstance(value, str) or value not in allowed:
                errors.append((field, f"must be one of {', '.join(allowed)}"))
    return when


def validate_request(
    body: Any,
    *,
    specs: Sequence[Mapping[str, Any]] = FIELD_SPECS,
    max_observations: int = MAX_OBSERVATIONS,
) -> VitalsRequest:
    """Validate a request body, reporting every violation at once.

    Parameters
    ----------
    body
        The parsed JSON body.
    specs
        The observation fields (``manifest["vitals"]["features"]``).
    max_observations
        Most observations a request may hold.

    Returns
    -------
    VitalsRequest

    Raises
    ------
    medserve.problems.Problem
        422 listing every offending field.
    """
    if not isinstance(body, dict):
        raise unprocessable([("body", "must be a JSON object")])
    by_name = {s["name"]: s for s in specs}
    missing_specs = set(OBSERVATION_FIELDS) - by_name.keys()
    if missing_specs:  # a manifest bug, not the caller's
        raise ValueError(f"feature specs lack {sorted(missing_specs)}")
    errors: list[tuple[str, str]] = []
    for key in sorted(body.keys() - set(TOP_LEVEL), key=str):
        errors.append(unknown_key("", key))
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        errors.append(("explain", "must be a boolean (true or false)"))
    observations = body.get("observations")
    times: list[datetime | None] = []
    if "observations" not in body:
        errors.append(("observations", "required field is missing"))
    elif not isinstance(observations, list):
        errors.append(("observations", "must be an array of observations"))
    elif not 1 <= len(observations) <= max_observations:
        errors.append(("observations", f"must hold 1 to {max_observations} observations"))
    else:
        rules = _rules(by_name)
        times = [_check_observation(i, o, by_name, rules, errors) for i, o in enumerate(observations)]
        errors.extend(_order_errors(times))
    if errors:
        raise unprocessable(sorted(errors, key=_error_order))
    assert isinstance(observations, list)
    aware = [t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in times if t is not None]
    return VitalsRequest(observations=observations, times=aware, explain=bool(explain))


def _order_errors(times: Sequence[datetime | None]) -> list[tuple[str, str]]:
    """Mixed naive/offset times and times that are not strictly ascending."""
    errors: list[tuple[str, str]] = []
    known = [(i, t) for i, t in enumerate(times) if t is not None]
    if not known:
        return errors
    first_aware = known[0][1].tzinfo is not None
    for i, t in known:
        if (t.tzinfo is not None) != first_aware:
            errors.append(
                (
                    f"observations[{i}].time",
                    "mixes times with and without a UTC offset; use one kind for every observation",
                )
            )
    if any((t.tzinfo is not None) != first_aware for _, t in known):
        return errors
    for (i_prev, prev), (i, t) in zip(known, known[1:], strict=False):
        if t <= prev:
            errors.append(
                (
                    f"observations[{i}].time",
                    f"must be later than observations[{i_prev}].time (strictly ascending)",
                )
            )
    return errors


def _error_order(err: tuple[str, str]) -> tuple[int, int, str]:
    field = err[0]
    if field.startswith("observations["):
        idx = int(field[field.index("[") + 1 : field.index("]")])
        name = field.split(".", 1)[1] if "." in field else ""
        rank = OBSERVATION_FIELDS.index(name) if name in OBSERVATION_FIELDS else len(OBSERVATION_FIELDS)
        return idx, rank, field
    return -1, 0, field
