"""Rows in, predictions out: the batch side of the risk, vitals and imaging libraries.

Nothing here is new model logic: risk rows go through :func:`medserve.risk.predict`
(the API's validation, one ``session.run`` per chunk), vitals sequences through
:mod:`medserve.vitals.service`'s validation and encoding (then padded and masked into
one ``session.run`` per chunk of :data:`VITALS_CHUNK` sequences), images through
:func:`medserve.imaging.decode.decode_image` and :func:`medserve.imaging.service.predict_decoded`.
This module only turns CSV cells into the API's JSON values, groups rows, and
attributes problems to rows.

A bad row is reported in its own place: ``{"row", "line", "id", "error": problem}``;
a good one is ``{"row", "line", "id", "prediction": ...}`` (vitals rows also carry
``news2``, and their observation ``rows``/``lines``). A problem that concerns the
whole object (unreadable, wrong header, too many rows) is raised as a
:class:`~medserve.problems.Problem` and becomes the object's error document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medserve.batch.readers import Row, Table, read_table
from medserve.problems import Problem, unprocessable
from medserve.registry import ModelEntry

CHUNK_ROWS = 1000
"""Risk rows validated and predicted per ``session.run``."""
VITALS_CHUNK = 256
"""Vitals sequences predicted per ``session.run`` (padded to the chunk's longest, masked)."""
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


def _row_base(row: Row) -> dict[str, Any]:
    return {"row": row.index, "line": row.line, "id": row.id}


# --- risk ---------------------------------------------------------------------------------
def risk_rows(entry: ModelEntry, table: Table, *, chunk_rows: int = CHUNK_ROWS) -> list[dict[str, Any]]:
    """Predict every good row, in chunks of ``chunk_rows`` (one ``session.run`` each).

    Each chunk goes through :func:`medserve.risk.predict`; when it refuses the chunk
    (422), its errors are split by ``instances[i]`` onto their rows and the remaining
    rows are predicted in one more run.
    """
    from medserve import risk

    results: list[dict[str, Any]] = []
    for start in range(0, len(table.rows), chunk_rows):
        chunk = table.rows[start : start + chunk_rows]
        out: dict[int, dict[str, Any]] = {}
        good: list[Row] = []
        for row in chunk:
            if row.error is not None:
                out[row.index] = {**_row_base(row), "error": problem_body(row.error)}
            else:
                good.append(row)
        instances = [_risk_instance(row, table.format) for row in good]
        predictions: list[dict[str, Any]] = []
        while good:
            # A problem lists at most MAX_ERRORS errors: split what it lists, and try the rest again.
            try:
                predictions = risk.predict(entry, instances)["predictions"]
                break
            except Problem as problem:
                by_row = _split_instance_errors(problem)
                if not by_row:
                    raise
                for k, errors in by_row.items():
                    row = good[k]
                    out[row.index] = {**_row_base(row), "error": problem_body(unprocessable(errors))}
                good = [row for k, row in enumerate(good) if k not in by_row]
                instances = [inst for k, inst in enumerate(instances) if k not in by_row]
        for row, prediction in zip(good, predictions, strict=True):
            out[row.index] = {**_row_base(row), "prediction": prediction}
        results.extend(out[row.index] for row in chunk)
    return results


def _risk_instance(row: Row, fmt: str) -> dict[str, Any]:
    if fmt == "csv":
        return {k: number_cell(v) for k, v in row.values.items()}
    return row.values


def _split_instance_errors(problem: Problem) -> dict[int, list[tuple[str, str]]]:
    """``instances[i].feature`` errors grouped by ``i``, renamed to ``feature``."""
    by_row: dict[int, list[tuple[str, str]]] = {}
    for err in problem.errors:
        match = _INSTANCE_FIELD.match(err["field"])
        if match is None:  # not row-specific: the library refused the whole request
            raise problem
        by_row.setdefault(int(match.group(1)), []).append((match.group(2) or "row", err["message"]))
    return by_row


# --- vitals -------------------------------------------------------------------------------
@dataclass
class _Sequence:
    """One vitals result in the making: its row fields, and its validated request or its error."""

    base: dict[str, Any]
    body: dict[str, Any] | None = None
    error: Problem | None = None
    request: Any = None
    result: dict[str, Any] | None = None


def vitals_rows(entry: ModelEntry, table: Table, *, chunk: int = VITALS_CHUNK) -> list[dict[str, Any]]:
    """One result per sequence: CSV rows grouped by ``id``, or one JSON Lines row each.

    CSV observations of one id are put in time order (stable) when every time parses
    and all carry an offset or none does; the API's rules then apply unchanged
    (strictly ascending, 1 to 500 observations), so two readings at the same instant
    are still refused. Every sequence is validated as the API validates it (a bad
    one is reported in its own row); the valid ones are predicted together
    (:func:`predict_sequences`).
    """
    from medserve.vitals import service

    sequences: list[_Sequence] = []
    if table.format == "jsonl":
        for row in table.rows:
            sequences.append(_Sequence(_row_base(row), body=row.values, error=row.error))
    else:
        groups: dict[Any, list[Row]] = {}
        for row in table.rows:
            groups.setdefault(row.id, []).append(row)
        for seq, (seq_id, rows) in enumerate(groups.items()):
            rows = _time_ordered(rows)
            base = {"row": seq, "id": seq_id, "rows": [r.index for r in rows], "lines": [r.line for r in rows]}
            read_errors = [
                (f"observations[{k}]", err["message"])
                for k, r in enumerate(rows)
                if r.error is not None
                for err in r.error.errors
            ]
            if read_errors:
                sequences.append(_Sequence(base, error=unprocessable(read_errors)))
            else:
                sequences.append(_Sequence(base, body={"observations": [_observation(r) for r in rows]}))
    valid: list[_Sequence] = []
    for item in sequences:
        if item.error is None:
            try:
                item.request = service.parse(entry, item.body)
            except Problem as problem:
                item.error = problem
            else:
                valid.append(item)
    for item, result in zip(valid, predict_sequences(entry, [i.request for i in valid], chunk=chunk), strict=True):
        item.result = result
    out: list[dict[str, Any]] = []
    for item in sequences:
        if item.error is not None:
            out.append({**item.base, "error": problem_body(item.error)})
        else:
            assert item.result is not None
            out.append({**item.base, **item.result})
    return out


def predict_sequences(entry: ModelEntry, requests: list[Any], *, chunk: int = VITALS_CHUNK) -> list[dict[str, Any]]:
    """The API's vitals result for each validated request, one ``session.run`` per ``chunk`` sequences.

    Each sequence is encoded as the API encodes it; sequences are sorted by length (so
    little is padded), right-padded with :func:`medserve.vitals.features.pad_batch` and
    masked. Each result is built as :func:`medserve.vitals.service.predict` builds it
    (``prediction``, ``news2``, ``warnings`` when any, ``contributions`` when the request
    asks to ``explain``).

    Raises
    ------
    ValueError
        When the model answers a non-finite probability (as the API does: MedServe's bug).
    """
    from medserve.vitals import service
    from medserve.vitals.features import encode, pad_batch

    if not requests:
        return []
    spec = service.spec_for(entry)
    encoded = [encode(r.observations, r.times) for r in requests]
    order = sorted(range(len(requests)), key=lambda k: len(encoded[k]))
    p = np.empty(len(requests), dtype=np.float64)
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        x, mask = pad_batch([encoded[k] for k in idx])
        out = entry.run({spec.input_names[0]: x, spec.input_names[1]: mask})[spec.output_name]
        p[idx] = np.asarray(out, dtype=np.float64).reshape(len(idx))
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{entry.id}: non-finite model output")
    p = np.clip(p, 0.0, 1.0)
    return [service.build_result(entry, r, float(pk), x[None]) for r, pk, x in zip(requests, p, encoded, strict=True)]


def _observation(row: Row) -> dict[str, Any]:
    from medserve.vitals.features import NUMERIC_FIELDS

    obs: dict[str, Any] = {}
    for key, value in row.values.items():
        if key in NUMERIC_FIELDS:
            obs[key] = number_cell(value)
        elif key == "supplemental_oxygen":
            obs[key] = bool_cell(value)
        else:
            obs[key] = value
    return obs


def _time_ordered(rows: list[Row]) -> list[Row]:
    from medserve.vitals.validation import parse_time

    try:
        times = [parse_time(r.values["time"]) for r in rows]
    except (KeyError, ValueError):
        return rows
    if len({t.tzinfo is None for t in times}) != 1:
        return rows
    order = sorted(range(len(rows)), key=lambda k: times[k])
    return [rows[k] for k in order]


# --- dispatch -----------------------------------------------------------------------------
def required_columns(entry: ModelEntry) -> list[str]:
    """The CSV columns a tabular or vitals model needs (besides an optional ``id``)."""
    if entry.task == "vitals":
        from medserve.vitals.features import OBSERVATION_FIELDS

        return list(OBSERVATION_FIELDS)
    return [i["name"] for i in entry.manifest["inputs"]]


def process(entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
    """The task part of a result document for one object.

    Returns
    -------
    dict
        Risk and vitals: ``{"format", "results", "summary"}``; imaging:
        ``{"format", "prediction", "summary", "warnings"}``.

    Raises
    ------
    Problem
        When the object as a whole cannot be processed.
    """
    if entry.task == "imaging":
        return imaging_object(entry, data)
    table = read_table(data, name, required=required_columns(entry), max_rows=max_rows)
    handler: Callable[[ModelEntry, Table], list[dict[str, Any]]] = vitals_rows if entry.task == "vitals" else risk_rows
    results = handler(entry, table)
    failed = sum(1 for r in results if "error" in r)
    return {
        "format": table.format,
        "results": results,
        "summary": {"rows": len(results), "ok": len(results) - failed, "failed": failed},
    }


def imaging_object(entry: ModelEntry, data: bytes) -> dict[str, Any]:
    """One image per object, decoded exactly as the API decodes it."""
    from medserve.imaging import service
    from medserve.imaging.decode import decode_image

    spec = service.spec_for(entry)
    image = decode_image(data, spec=spec.image, field="object")
    result = service.predict_decoded(entry, image, explain=False)
    return {
        "format": image.format,
        "prediction": result["prediction"],
        "summary": {"rows": 1, "ok": 1, "failed": 0},
        "warnings": list(result.get("warnings", [])),
    }
