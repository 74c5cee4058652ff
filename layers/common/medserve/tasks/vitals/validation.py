"""Validation of ``POST /v1/vitals/{model_id}/predict`` bodies.

Every violation in the body is collected and reported at once as one 422 problem,
each error naming its field (``observations[3].spo2``). Messages state the rule,
never the submitted value (it is patient data). The fields are the model's
``manifest["vitals"]["features"]`` as :class:`~medserve.fields.Record` (the same
definitions the OpenAPI document is written from); this module adds what one
observation alone cannot say: the order of times.

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
  physiologically possible ranges of the model's features (by default
  :data:`medserve.tasks.vitals.features.FIELD_SPECS`).
- ``consciousness`` is one of the upper-case ACVPU letters; ``supplemental_oxygen`` and
  ``explain`` are JSON booleans (not 0/1, not strings).
- 1 to ``max_observations`` (500) observations; outside that, one error names
  ``observations`` and the items are not inspected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medserve.fields import Field, Record, number_fields, parse_time
from medserve.problems import unprocessable
from medserve.tasks.vitals.features import FIELD_SPECS, MAX_OBSERVATIONS, OBSERVATION_FIELDS

__all__ = ["VitalsRequest", "body_record", "parse_time", "validate_request"]


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


def body_record(specs: Sequence[Mapping[str, Any]] = FIELD_SPECS, max_observations: int = MAX_OBSERVATIONS) -> Record:
    """The request body: ``observations`` (each a record of ``specs``) and ``explain``."""
    by_name = {s["name"]: s for s in specs}
    missing = set(OBSERVATION_FIELDS) - by_name.keys()
    if missing:  # a manifest bug, not the caller's
        raise ValueError(f"feature specs lack {sorted(missing)}")
    observation = Record(number_fields([by_name[n] for n in OBSERVATION_FIELDS]))
    return Record(
        (
            Field(
                "observations",
                "array",
                items=observation,
                min_items=1,
                max_items=max_observations,
                noun="observations",
                description="in time order",
            ),
            Field("explain", "boolean", required=False, default=False),
        )
    )


_DEFAULT = body_record()


def validate_request(
    body: Any,
    *,
    specs: Sequence[Mapping[str, Any]] | None = None,
    max_observations: int = MAX_OBSERVATIONS,
    record: Record | None = None,
) -> VitalsRequest:
    """Validate a request body, reporting every violation at once.

    Parameters
    ----------
    body
        The parsed JSON body.
    specs, max_observations
        The observation fields (``manifest["vitals"]["features"]``) and the most
        observations a request may hold, when no prebuilt ``record`` is given.
    record
        The body's :class:`Record` (a model's spec holds one).

    Raises
    ------
    medserve.problems.Problem
        422 listing every offending field.
    """
    if record is None:
        record = (
            _DEFAULT
            if specs is None and max_observations == MAX_OBSERVATIONS
            else body_record(specs or FIELD_SPECS, max_observations)
        )
    errors: list[tuple[str, str]] = []
    record.check(body, "", errors)
    times: list[datetime | None] = []
    observations = body.get("observations") if isinstance(body, dict) else None
    if not any(f == "observations" for f, _ in errors) and isinstance(observations, list):
        times = [_time(o) for o in observations]
        errors.extend(_order_errors(times))
    if errors:
        raise unprocessable(sorted(errors, key=_error_order))
    assert isinstance(observations, list)
    aware = [t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in times if t is not None]
    return VitalsRequest(observations=observations, times=aware, explain=bool(body.get("explain", False)))


def _time(o: Any) -> datetime | None:
    value = o.get("time") if isinstance(o, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


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
    if errors:
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
    """Top-level fields first, then by observation, then in the documented field order."""
    field = err[0]
    if field.startswith("observations["):
        idx = int(field[field.index("[") + 1 : field.index("]")])
        name = field.split(".", 1)[1] if "." in field else ""
        rank = OBSERVATION_FIELDS.index(name) if name in OBSERVATION_FIELDS else len(OBSERVATION_FIELDS)
        return idx, rank, field
    return -1, 0, field
