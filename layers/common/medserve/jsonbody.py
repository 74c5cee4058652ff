"""The one JSON reader for request bodies: BOM tolerated, duplicate keys refused, huge integers bounded.

Powertools parses a route's body before the route runs (``json_body_deserializer``)
and :func:`medserve.api.read_json` parses the others; both use :func:`loads`:

- a UTF-8 byte-order mark before the JSON text is ignored (RFC 8259 lets a parser do so);
- a key that appears twice in one object is a 422 naming the field (``instances[0].age``),
  the key echoed only when it is a plain identifier (:func:`medserve.problems.unknown_key`);
- an integer of more digits than Python converts (4,300) is read as a float (infinite),
  so the field's own validation refuses it (422) instead of the parser raising a
  ``ValueError`` that is not a JSON error.
"""

from __future__ import annotations

import json
import re
from typing import Any

from medserve.problems import unknown_key, unprocessable

BOM = "\ufeff"
_QUOTE_SPACE = re.compile('"[ \t\n\r]')  # JSON whitespace after a quote
_LONG_INTEGER = re.compile(r"\d{4000}")
_DUPLICATE = "duplicate key: this key appears more than once in the same object"


class _WithDuplicates(dict[str, Any]):
    """A JSON object in which some keys appeared more than once (the last value kept, as JSON does)."""

    duplicates: list[str]


def _int(text: str) -> int | float:
    # Python refuses int() of more than 4,300 digits (ValueError); such a number is no valid input.
    return int(text) if len(text) <= 4000 else float(text)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    out = _WithDuplicates(obj)
    out.duplicates = []
    for key, _ in pairs:
        if key in seen and key not in out.duplicates:
            out.duplicates.append(key)
        seen.add(key)
    return out


def duplicate_fields(value: Any) -> list[tuple[str, str]]:
    """``(field, message)`` for every duplicated key in a value parsed by :func:`loads` (no recursion)."""
    errors: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            if isinstance(item, _WithDuplicates):
                for key in item.duplicates:
                    field, _ = unknown_key(path, key)
                    errors.append((field, _DUPLICATE))
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
    return errors


def loads(text: str | bytes) -> Any:
    """Parse a request body (see the module notes).

    Raises
    ------
    json.JSONDecodeError
        The text is not JSON (the caller answers 400).
    RecursionError
        Nested too deeply (the caller answers 400).
    Problem
        422 naming every duplicated key.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    if text.startswith(BOM):
        text = text[len(BOM) :]
    duplicates: list[bool] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = _pairs(items)
        if isinstance(obj, _WithDuplicates):
            duplicates.append(True)
        return obj

    value = json.loads(text, object_pairs_hook=pairs, parse_int=_int)
    if duplicates:
        raise unprocessable(duplicate_fields(value))
    return value


def _known_keys(value: Any) -> int:
    """Keys held by ``value`` (an object) and by the objects of its arrays of objects; others are not counted."""
    keys = len(value)
    for item in value.values():
        if type(item) is list and item and list(map(type, item)).count(dict) == len(item):
            keys += sum(map(len, item))
    return keys


def loads_row(text: str) -> Any:
    """:func:`loads` for one JSON Lines row: the same value and the same errors, faster.

    The C parser alone (no per-object hook) reads the row; its value is taken only when it
    provably equals what :func:`loads` answers: no integer of 4,000 digits or more (read as a
    float there), and no key given twice. The latter is proven by counting. When no ``"`` is
    followed by whitespace, every key's closing quote is followed directly by its ``:``, so at
    most ``text.count('":')`` keys were written. Parsed objects hold at most as many keys as
    were written, fewer exactly when a key was repeated. So when the top object and the objects
    of its arrays already hold that many keys between them, no key was repeated anywhere. Any
    other row (spaced, with an escaped quote before a colon, objects nested deeper, a long
    number, not JSON) is read by :func:`loads`, which answers it exactly as before.
    """
    if not (len(text) >= 4000 and _LONG_INTEGER.search(text)) and not _QUOTE_SPACE.search(text):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            pass  # not JSON (or not readable here): loads() raises what the caller reports
        else:
            if type(value) is dict and _known_keys(value) == text.count('":'):
                return value
    return loads(text)
