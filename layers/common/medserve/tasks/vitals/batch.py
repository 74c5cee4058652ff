"""Batch for vitals models: sequences from CSV (grouped by ``id``) or JSON Lines (one per line).

Every sequence is validated as the API validates it (a bad one is reported in its own
row); the valid ones are encoded as the API encodes them, padded and masked into one
``session.run`` per :data:`VITALS_CHUNK` sequences.

All sequences of an object are first checked and encoded at once, column-wise
(:mod:`medserve.tasks.vitals.fastpath`); the API's validator then takes, one by one, every
sequence that check does not pass, so each error document is the API's. The result of
every row is byte for byte what validating and encoding it alone would give
(``tests/unit/test_vitals_batch_fastpath.py``).
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from medserve.batch.readers import Row, Table, decode_text, detect_format, jsonl_row, read_csv, read_jsonl
from medserve.batch.rows import bool_cell, number_cell, problem_body, summary
from medserve.fields import parse_time
from medserve.jsonbody import loads_row
from medserve.problems import Problem, unprocessable
from medserve.registry import ModelEntry
from medserve.tasks.vitals.fastpath import STRING_VALUES, Validated, validate_encode
from medserve.tasks.vitals.features import NUMERIC_FIELDS, OBSERVATION_FIELDS, encode, pad_ranges
from medserve.tasks.vitals.news2 import news2
from medserve.tasks.vitals.service import VitalsSpec, build_result, parse, warning_texts
from medserve.tasks.vitals.validation import VitalsRequest

VITALS_CHUNK = 256
"""Sequences predicted per ``session.run`` (padded to the chunk's longest, masked)."""
_LONG_INTEGER = re.compile(r"\d{4000}")
# the C scanner json.loads runs (strict, NaN/Infinity as floats); JSONDecoder sets it in __init__
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_KEYS = len(OBSERVATION_FIELDS)  # keys of an observation the fast path passes


def process(entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
    """``{"format", "results", "summary"}`` for one object.

    JSON Lines rows are first read by the C parser alone (:class:`UnprovenRows`); each is
    proven to read as the API's reader reads it, or read again by it (:func:`vitals_rows`).

    The cyclic garbage collector is paused while the object is read and predicted (and
    restored after, as it was): reading builds a dozen containers per sequence that all
    live until the end, so the collector would otherwise run again and again, walking
    the whole heap (every module the function imported included) to free nothing. What
    the object leaves is freed by reference counting when it is done, or by the
    collector's next run.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        text = decode_text(data)
        unproven: UnprovenRows | None = None
        if detect_format(name, text) == "csv":
            table = read_csv(text, required=list(OBSERVATION_FIELDS), max_rows=max_rows)
        else:
            unproven = UnprovenRows()
            table = read_jsonl(text, max_rows=max_rows, loads=unproven)
        results = vitals_rows(entry, table, unproven=unproven)
    finally:
        if paused:
            gc.enable()
    return {"format": table.format, "results": results, "summary": summary(results)}


class UnprovenRows:
    """A JSON Lines line reader that leaves the duplicate-key proof for later.

    The API's reader (:func:`medserve.jsonbody.loads_row`) spends a quarter of its time
    proving that no key was given twice. Here a line that the C parser reads into an object
    is taken as it reads it, and the line and its top-level key count are kept. Once the
    fast path has passed the sequence, every value's type is known, and so is how many
    ``"`` the line must hold when no key was repeated: two per key and per string value
    (:meth:`proven`). Every ``"`` of a JSON text delimits a string (a key or a value) or is
    escaped inside one; keys given twice, strings overwritten by them or escapes only add
    to the count. A line that is not proven so is read again by the API's reader
    (:func:`vitals_rows`). Lines that are not objects, not JSON, or hold an integer of
    4,000 digits or more (a float to the API's reader) are read by the API's reader at once.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.keys: list[int] = []  # the top-level keys of each line's object; -1: read by the API's reader

    def __call__(self, line: str) -> Any:
        self.lines.append(line)
        self.keys.append(-1)
        if not (len(line) >= 4000 and _LONG_INTEGER.search(line)):
            try:  # json.loads without its whitespace handling: a line of one object, nothing around it
                value, end = _SCAN(line, 0)
            except (StopIteration, ValueError, RecursionError):
                value, end = None, 0
            if type(value) is dict and end == len(line):
                self.keys[-1] = len(value)
                return value
        return loads_row(line)

    def proven(self, k: int, row: Row, observations: int) -> bool:
        """Whether row ``k``, passed by the fast path with that many observations, was read as the API reads it.

        Its keys are the top-level ones and :data:`_KEYS` per observation; its string values
        :data:`~medserve.tasks.vitals.fastpath.STRING_VALUES` per observation and the id when that
        is a string (``observations`` is an array, ``explain`` a boolean).
        """
        strings = STRING_VALUES * observations + (type(row.id) is str)
        return self.lines[k].count('"') == 2 * (self.keys[k] + _KEYS * observations + strings)


def vitals_rows(
    entry: ModelEntry,
    table: Table,
    *,
    chunk: int = VITALS_CHUNK,
    fast: bool = True,
    unproven: UnprovenRows | None = None,
) -> list[dict[str, Any]]:
    """One result per sequence: CSV rows grouped by ``id``, or one JSON Lines row each.

    CSV observations of one id are put in time order (stable) when every time parses
    and all carry an offset or none does; the API's rules then apply unchanged
    (strictly ascending, 1 to 500 observations), so two readings at the same instant
    are still refused. Every sequence is validated as the API validates it (a bad
    one is reported in its own row); the valid ones are predicted together
    (:func:`predict_sequences`).

    With ``fast`` (the default), the sequences are first checked and encoded all at once,
    column-wise (:func:`medserve.tasks.vitals.fastpath.validate_encode`); only those it does
    not pass are validated one by one, so every error is still the API's. ``fast=False``
    validates every sequence one by one (the reference the fast path is tested against).

    ``unproven``: the reader of a JSON Lines ``table`` (:class:`UnprovenRows`). A row the
    fast path passes and :meth:`UnprovenRows.proven` proves is taken as read; every other
    row it read is read again by the API's reader before it is validated one by one.
    """
    bases: list[dict[str, Any]] = []
    bodies: list[Any] = []
    errors: list[Problem | None] = []
    if table.format == "jsonl":
        for row in table.rows:
            bases.append({"row": row.index, "line": row.line, "id": row.id})
            bodies.append(row.values)
            errors.append(row.error)
    else:
        groups: dict[Any, list[Row]] = {}
        for row in table.rows:
            groups.setdefault(row.id, []).append(row)
        for seq, (seq_id, rows) in enumerate(groups.items()):
            rows = _time_ordered(rows)
            lines = [r.line for r in rows]
            # line: where the sequence starts in the file; rows/lines: every observation of it
            base = {"row": seq, "line": min(lines), "id": seq_id, "rows": [r.index for r in rows], "lines": lines}
            bases.append(base)
            read_errors = [
                (f"observations[{k}]", err["message"])
                for k, r in enumerate(rows)
                if r.error is not None
                for err in r.error.errors
            ]
            if read_errors:
                bodies.append(None)
                errors.append(unprocessable(read_errors))
            else:
                bodies.append({"observations": [_observation(r) for r in rows]})
                errors.append(None)
    spec: VitalsSpec = entry.spec
    count = len(bases)
    requests: list[VitalsRequest | None] = [None] * count
    where: list[tuple[int, int] | None] = [None] * count  # (start, length) of each valid sequence in x
    pending = [i for i in range(count) if errors[i] is None]
    checked = Validated.empty()
    checked_of = pending  # checked.index counts in this list
    if fast and spec.fast is not None and pending:
        checked = validate_encode([bodies[i] for i in pending], spec.fast)
        for k, start, length in zip(checked.index, checked.starts, checked.lengths, strict=True):
            i = pending[k]
            if unproven is None or unproven.proven(i, table.rows[i], length):
                where[i] = (start, length)
    if unproven is not None:
        if len(unproven.lines) != count:
            raise ValueError("unproven: not the reader of this table")
        for i, row in enumerate(table.rows):
            if unproven.keys[i] >= 0 and where[i] is None:  # read again, by the API's reader
                again = jsonl_row(row.index, row.line, unproven.lines[i])
                bases[i] = {"row": again.index, "line": again.line, "id": again.id}
                bodies[i], errors[i] = again.values, again.error
        pending = [i for i in range(count) if errors[i] is None]
    more: list[np.ndarray] = []
    end = len(checked.x)
    for i in pending:
        if where[i] is None:
            try:
                request = parse(entry, bodies[i])
            except Problem as problem:
                errors[i] = problem
            else:
                requests[i] = request
                more.append(encode(request.observations, request.times))
                where[i] = (end, len(more[-1]))
                end += len(more[-1])
    x = np.concatenate([checked.x, *more]) if more else checked.x
    valid = [i for i in range(count) if errors[i] is None]
    spans = np.array([where[i] for i in valid], dtype=np.intp).reshape(-1, 2)
    p_of = dict(zip(valid, _probabilities(entry, x, spans[:, 0], spans[:, 1], chunk=chunk).tolist(), strict=True))
    warnings_of = _fast_warnings(spec, checked, checked_of)
    horizon: float | int = int(spec.horizon_hours) if spec.horizon_hours.is_integer() else spec.horizon_hours
    positive, negative, threshold = spec.positive, spec.negative, spec.threshold
    out: list[dict[str, Any]] = []  # each row's base (made here, for it alone), completed
    for i, result in enumerate(bases):
        error, parsed = errors[i], requests[i]
        if error is not None:
            result["error"] = problem_body(error)
        elif parsed is not None:  # validated one by one: its result as the API builds it
            start, length = where[i]  # type: ignore[misc]
            result.update(build_result(entry, parsed, p_of[i], x[None, start : start + length]))
        else:  # passed the fast path: built as build_result builds it (no explain here)
            p = p_of[i]
            result["prediction"] = {
                "probability": round(p, 6),
                "label": positive if p >= threshold else negative,
                "horizon_hours": horizon,
            }
            result["news2"] = news2(bodies[i]["observations"][-1])
            warnings = warnings_of.get(i)
            if warnings:
                result["warnings"] = warnings
        out.append(result)
    return out


def _fast_warnings(spec: VitalsSpec, checked: Validated, pending: list[int]) -> dict[int, list[str]]:
    """The warnings of every sequence the fast path passed that has any, as :func:`build_result` words them."""
    if not checked.index:
        return {}
    x = checked.x
    outside = None
    if len(spec.train_min) == x.shape[1]:
        rows = (x < spec.train_min) | (x > spec.train_max)
        outside = np.logical_or.reduceat(rows, checked.starts, axis=0)  # [sequences, columns]
        flagged = outside.any(axis=1)
    else:
        flagged = np.zeros(len(checked.index), dtype=bool)
    if spec.trained_max_length:
        flagged |= np.asarray(checked.lengths) > spec.trained_max_length
    out: dict[int, list[str]] = {}
    for k in np.flatnonzero(flagged).tolist():
        out[pending[checked.index[k]]] = warning_texts(
            spec, None if outside is None else outside[k], checked.lengths[k]
        )
    return out


def _probabilities(
    entry: ModelEntry, x: np.ndarray, starts: np.ndarray, lengths: np.ndarray, *, chunk: int
) -> np.ndarray:
    """The model's probability for each sequence ``x[starts[i] : starts[i] + lengths[i]]``, one ``session.run``
    per ``chunk`` sequences.

    Sequences are sorted by length, stably (so little is padded), right-padded
    (:func:`medserve.tasks.vitals.features.pad_ranges`) and masked.

    Raises
    ------
    ValueError
        When the model answers a non-finite probability (as the API does: MedServe's bug).
    """
    spec: VitalsSpec = entry.spec
    p = np.empty(len(lengths), dtype=np.float64)
    if not len(lengths):
        return p
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        batch, mask = pad_ranges(x, starts[idx], lengths[idx])
        out = entry.run({spec.input_names[0]: batch, spec.input_names[1]: mask})[spec.output_name]
        p[idx] = np.asarray(out, dtype=np.float64).reshape(len(idx))
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{entry.id}: non-finite model output")
    return np.clip(p, 0.0, 1.0)


def predict_sequences(entry: ModelEntry, requests: list[Any], *, chunk: int = VITALS_CHUNK) -> list[dict[str, Any]]:
    """The API's vitals result for each validated request, one ``session.run`` per ``chunk`` sequences.

    Each sequence is encoded as the API encodes it; sequences are sorted by length (so
    little is padded), right-padded and masked. Each result is built as
    :func:`medserve.tasks.vitals.service.predict` builds it (``prediction``, ``news2``,
    ``warnings`` when any, ``contributions`` when the request asks to ``explain``).

    Raises
    ------
    ValueError
        When the model answers a non-finite probability (as the API does: MedServe's bug).
    """
    if not requests:
        return []
    encoded = [encode(r.observations, r.times) for r in requests]
    lengths = np.array([len(e) for e in encoded], dtype=np.intp)
    starts = np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.intp)
    p = _probabilities(entry, np.concatenate(encoded), starts, lengths, chunk=chunk)
    return [build_result(entry, r, float(pk), x[None]) for r, pk, x in zip(requests, p, encoded, strict=True)]


def _observation(row: Row) -> dict[str, Any]:
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
    try:
        times = [parse_time(r.values["time"]) for r in rows]
    except (KeyError, ValueError):
        return rows
    if len({t.tzinfo is None for t in times}) != 1:
        return rows
    order = sorted(range(len(rows)), key=lambda k: times[k])
    return [rows[k] for k in order]
