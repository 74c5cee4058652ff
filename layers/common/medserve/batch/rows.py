"""Rows of a batch object: what every task's batch reader shares.

Each task reads its own objects (:meth:`medserve.tasks.base.Task.batch`); this module
holds the pieces they share: CSV cells as the API's JSON values, a row's place in the
result, and a problem split back onto the rows it concerns.

A bad row is reported in its own place: ``{"row", "line", "id", "error": problem}``;
a good one is ``{"row", "line", "id", "prediction": ...}`` (vitals rows also carry
``news2``, and their observation ``rows``/``lines``). A problem that concerns the
whole object (unreadable, wrong header, too many rows) is raised as a
:class:`~medserve.problems.Problem` and becomes the object's error document.
"""

from __future__ import annotations

import re
from itertools import repeat
from operator import contains
from typing import Any

from medserve.batch.readers import Row
from medserve.problems import Problem

_INSTANCE_FIELD = re.compile(r"^instances\[(\d+)\](?:\.(.*))?$")
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}


def problem_body(problem: Problem) -> dict[str, Any]:
    """An RFC 9457 body for a row or document (no ``request_id``: the document carries it)."""
    body = problem.to_dict()
    body.pop("request_id", None)
    return body


def number_cell(value: str) -> float | str:
    """A CSV cell as a float when it is a decimal number (``nan``/``inf`` kept for validation to refuse)."""
    if value.isascii() and "_" not in value:  # float() would also take "1_000" and non-ASCII digits
        try:
            return float(value)
        except ValueError:
            pass
    return value


def bool_cell(value: str) -> bool | str:
    """A CSV cell as a boolean (``true/false``, ``1/0``, ``yes/no``, any case); else left as text."""
    lower = value.lower()
    if lower in _TRUE:
        return True
    if lower in _FALSE:
        return False
    return value


def row_base(row: Row) -> dict[str, Any]:
    return {"row": row.index, "line": row.line, "id": row.id}


def split_instance_errors(problem: Problem) -> dict[int, list[tuple[str, str]]]:
    """``instances[i].feature`` errors grouped by ``i``, renamed to ``feature``.

    Raises the problem itself when an error is not about one instance (the whole
    request was refused).
    """
    by_row: dict[int, list[tuple[str, str]]] = {}
    for err in problem.errors:
        match = _INSTANCE_FIELD.match(err["field"])
        if match is None:
            raise problem
        by_row.setdefault(int(match.group(1)), []).append((match.group(2) or "row", err["message"]))
    return by_row


def summary(results: list[dict[str, Any]]) -> dict[str, int]:
    """``{"rows", "ok", "failed"}`` of a list of row results."""
    failed = sum(map(contains, results, repeat("error")))  # rows with an "error" key
    return {"rows": len(results), "ok": len(results) - failed, "failed": failed}
