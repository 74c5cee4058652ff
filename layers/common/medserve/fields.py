"""Declarative request fields: one definition validates a body AND writes its JSON Schema.

Every task describes its request as :class:`Record` s of :class:`Field` s built from the
model's manifest (risk features, vitals observation fields, the imaging JSON body).
The same objects then

- validate a parsed JSON body, collecting **every** violation as ``(field, message)``
  (``instances[3].mean_radius``, ``observations[0].spo2``), messages stating the rule,
  never the value (values and unknown key names may be patient data), and
- produce the JSON Schema the OpenAPI document serves,

so the document cannot drift from what is enforced. Pure Python, import-light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from medserve.problems import unknown_key

_NUMBER = (int, float)
_MAX_FLOAT = 1.7976931348623157e308


def finite_number_error(value: Any) -> str | None:
    """The one "finite number" rule: JSON numbers only (not booleans or strings), finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    return None if finite else "must be a finite number"


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 date-time that includes a time of day (naive when it has no offset).

    Raises
    ------
    ValueError
        When the text is not an ISO-8601 date-time with a time of day.
    """
    if len(text) < 13 or text[10] not in "Tt ":
        raise ValueError("no time of day")
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class Field:
    """One member of a JSON object.

    Parameters
    ----------
    name
        The key.
    type
        ``number``, ``boolean``, ``string`` (with ``allowed``), ``datetime`` (ISO-8601 with a
        time of day), ``base64`` (non-empty base64 text) or ``array`` (of ``items``).
    required
        Whether the key must be present.
    minimum, maximum
        Inclusive bounds of a number (either may be absent).
    allowed
        The permitted values (numbers or strings).
    unit, description
        For people (messages and the schema).
    default
        The value when absent (optional fields).
    items, min_items, max_items, noun
        For arrays: the record each item must be, the count bounds, and what the items
        are called in messages ("instances", "observations").
    """

    name: str
    type: str
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    allowed: tuple[Any, ...] = ()
    unit: str | None = None
    description: str = ""
    default: Any = None
    items: Record | None = None
    min_items: int = 0
    max_items: int | None = None
    noun: str = "items"

    # --- validation ---------------------------------------------------------------------
    def error(self, value: Any) -> str | None:
        """The rule ``value`` breaks (for scalar types), or ``None``."""
        kind = self.type
        if kind == "number":
            message = finite_number_error(value)
            if message:
                return message
            if self.allowed and value not in self.allowed:
                return f"must be one of {sorted(self.allowed)}"
            return self._range_error(value)
        if kind == "boolean":
            return None if isinstance(value, bool) else "must be a boolean (true or false)"
        if kind == "string":
            if not isinstance(value, str) or (self.allowed and value not in self.allowed):
                return f"must be one of {', '.join(map(str, self.allowed))}" if self.allowed else "must be a string"
            return None
        if kind == "datetime":
            if not isinstance(value, str):
                return "must be an ISO-8601 date-time string"
            try:
                parse_time(value)
            except ValueError:
                return "must be an ISO-8601 date-time with a time of day, e.g. 2026-11-23T08:00:00Z"
            return None
        if kind == "base64":
            return None if isinstance(value, str) and value else "must be a non-empty base64 string"
        raise ValueError(f"field type {kind!r} has no scalar rule")  # a spec bug, not the caller's

    def _range_error(self, value: float) -> str | None:
        lo, hi = self.minimum, self.maximum
        unit = f" {self.unit}" if self.unit else ""
        if lo is not None and hi is not None and not lo <= value <= hi:
            return f"must be between {lo:g} and {hi:g}{unit}"
        if lo is not None and value < lo:
            return f"must be at least {lo:g}{unit}"
        if hi is not None and value > hi:
            return f"must be at most {hi:g}{unit}"
        return None

    def check(self, value: Any, where: str, errors: list[tuple[str, str]]) -> None:
        """Append ``(field, message)`` for every violation in ``value`` (arrays recurse)."""
        if self.type != "array":
            message = self.error(value)
            if message:
                errors.append((where, message))
            return
        if not isinstance(value, list):
            errors.append((where, f"must be an array of {self.noun}"))
            return
        hi = self.max_items if self.max_items is not None else math.inf
        if not self.min_items <= len(value) <= hi:
            errors.append((where, f"must hold {self.min_items} to {self.max_items} {self.noun}"))
            return
        assert self.items is not None
        for i, item in enumerate(value):
            self.items.check(item, f"{where}[{i}]", errors)

    # --- schema -------------------------------------------------------------------------
    def json_schema(self) -> dict[str, Any]:
        """This field as JSON Schema (OpenAPI 3.1)."""
        kind = self.type
        schema: dict[str, Any]
        if kind == "array":
            assert self.items is not None
            schema = {"type": "array", "items": self.items.json_schema(), "minItems": self.min_items}
            if self.max_items is not None:
                schema["maxItems"] = self.max_items
        elif kind == "number":
            schema = {"type": "number"}
            if self.minimum is not None:
                schema["minimum"] = self.minimum
            if self.maximum is not None:
                schema["maximum"] = self.maximum
        elif kind == "datetime":
            schema = {"type": "string", "format": "date-time"}
        elif kind == "base64":
            schema = {"type": "string", "contentEncoding": "base64", "minLength": 1}
        else:
            schema = {"type": kind}
        if self.allowed:
            schema["enum"] = list(self.allowed)
        text = self.description + (f" [{self.unit}]" if self.unit else "")
        if text.strip():
            schema["description"] = text.strip()
        if self.default is not None:
            schema["default"] = self.default
        return schema


@dataclass(frozen=True)
class Record:
    """A JSON object of known fields; any other key is an error.

    Parameters
    ----------
    fields
        The members, in the order errors are reported.
    noun
        What a member is called in messages: "feature" gives "required feature is missing"
        and "unknown feature for this model".
    title
        The schema's title (e.g. the model id).
    unknown
        The message for a key that is not a field.
    """

    fields: tuple[Field, ...]
    noun: str = "field"
    title: str | None = None
    unknown: str = "unknown field"
    _by_name: dict[str, Field] = field(init=False, repr=False, compare=False)
    _keys: frozenset[str] = field(init=False, repr=False, compare=False)
    _numbers: list[tuple[str, float, float, frozenset[Any]]] = field(init=False, repr=False, compare=False)
    _others: list[tuple[str, str, frozenset[Any]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.fields})
        object.__setattr__(self, "_keys", frozenset(f.name for f in self.fields))
        numbers = [
            (
                f.name,
                -_MAX_FLOAT if f.minimum is None else float(f.minimum),
                _MAX_FLOAT if f.maximum is None else float(f.maximum),
                frozenset(f.allowed),
            )
            for f in self.fields
            if f.type == "number"
        ]
        others = [(f.name, f.type, frozenset(f.allowed)) for f in self.fields if f.type != "number"]
        object.__setattr__(self, "_numbers", numbers)
        object.__setattr__(self, "_others", others)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def get(self, name: str) -> Field:
        return self._by_name[name]

    def quick_ok(self, obj: Any) -> bool:
        """A fast yes for a fully valid object with every field present (no message built).

        The same rules as :meth:`check`, from precomputed tuples; any doubt (a NaN fails
        every comparison, an integer beyond float range fails the bounds) answers ``False``
        and :meth:`check` then names the problem.
        """
        if type(obj) is not dict or obj.keys() != self._keys:
            return False
        for name, lo, hi, allowed in self._numbers:
            v = obj[name]
            if type(v) not in _NUMBER or not lo <= v <= hi or (allowed and v not in allowed):
                return False
        for name, kind, allowed in self._others:
            v = obj[name]
            if kind == "boolean":
                if type(v) is not bool:
                    return False
            elif kind == "string":
                if type(v) is not str or (allowed and v not in allowed):
                    return False
            elif kind == "datetime":
                if type(v) is not str:
                    return False
                try:
                    parse_time(v)
                except ValueError:
                    return False
            elif kind != "base64" or type(v) is not str or not v:
                return False
        return True

    def check(self, obj: Any, where: str, errors: list[tuple[str, str]]) -> None:
        """Append every violation of ``obj`` (``where`` prefixes field names; ``""`` at the top)."""
        if self.quick_ok(obj):
            return
        if not isinstance(obj, dict):
            errors.append((where or "body", "must be a JSON object" if not where else "must be an object"))
            return
        for key in sorted(obj.keys() - self._by_name.keys(), key=str):
            name, message = unknown_key(where, key)
            errors.append((name, message.replace("unknown field", self.unknown, 1)))
        for f in self.fields:
            path = f"{where}.{f.name}" if where else f.name
            if f.name not in obj:
                if f.required:
                    errors.append((path, f"required {self.noun} is missing"))
                continue
            f.check(obj[f.name], path, errors)

    def values(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """``obj`` with defaults filled in for absent optional fields (after :meth:`check`)."""
        return {f.name: obj.get(f.name, f.default) for f in self.fields}

    def json_schema(self) -> dict[str, Any]:
        """This record as a closed JSON Schema object."""
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f.name: f.json_schema() for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": False,
        }
        if self.title:
            schema["title"] = self.title
        return schema


def number_fields(inputs: Sequence[Mapping[str, Any]]) -> tuple[Field, ...]:
    """Manifest ``inputs`` (``name``, ``min``, ``max``, ``allowed``, ``unit``, ``description``) as fields."""
    return tuple(
        Field(
            name=i["name"],
            type=i.get("type", "number"),
            minimum=i.get("min"),
            maximum=i.get("max"),
            allowed=tuple(i.get("allowed") or ()),
            unit=i.get("unit"),
            description=i.get("description", ""),
        )
        for i in inputs
    )


# --- small JSON Schema builders (response documents) ---------------------------------------
def schema_object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``{"type": "object", "properties": ...}`` plus any keywords."""
    return {"type": "object", "properties": properties, **extra}


def schema_map(value_type: str) -> dict[str, Any]:
    """An object of arbitrary keys whose values are ``value_type``."""
    return {"type": "object", "additionalProperties": {"type": value_type}}


def schema_types(**names: str) -> dict[str, Any]:
    """``{name: {"type": t}}`` for each ``name=t``."""
    return {name: {"type": kind} for name, kind in names.items()}
