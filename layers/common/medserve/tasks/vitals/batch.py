"""Batch for vitals models: sequences from CSV (grouped by ``id``) or JSON Lines (one per line).

Every sequence is validated as the API validates it (a bad one is reported in its own
row); the valid ones are encoded as the API encodes them, padded and masked into one
``session.run`` per :data:`VITALS_CHUNK` sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medserve.batch.readers import Row, Table, read_table
from medserve.batch.rows import bool_cell, number_cell, problem_body, row_base, summary
from medserve.fields import parse_time
from medserve.problems import Problem, unprocessable
from medserve.registry import ModelEntry
from medserve.tasks.vitals.features import NUMERIC_FIELDS, OBSERVATION_FIELDS, encode, pad_batch
from medserve.tasks.vitals.service import VitalsSpec, build_result, parse

VITALS_CHUNK = 256
"""Sequences predicted per ``session.run`` (padded to the chunk's longest, masked)."""


def process(entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
    """``{"format", "results", "summary"}`` for one object."""
    table = read_table(data, name, required=list(OBSERVATION_FIELDS), max_rows=max_rows)
    results = vitals_rows(entry, table)
    return {"format": table.format, "results": results, "summary": summary(results)}


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
    sequences: list[_Sequence] = []
    if table.format == "jsonl":
        for row in table.rows:
            sequences.append(_Sequence(row_base(row), body=row.values, error=row.error))
    else:
        groups: dict[Any, list[Row]] = {}
        for row in table.rows:
            groups.setdefault(row.id, []).append(row)
        for seq, (seq_id, rows) in enumerate(groups.items()):
            rows = _time_ordered(rows)
            lines = [r.line for r in rows]
            # line: where the sequence starts in the file; rows/lines: every observation of it
            base = {"row": seq, "line": min(lines), "id": seq_id, "rows": [r.index for r in rows], "lines": lines}
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
                item.request = parse(entry, item.body)
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
    little is padded), right-padded with :func:`medserve.tasks.vitals.features.pad_batch` and
    masked. Each result is built as :func:`medserve.tasks.vitals.service.predict` builds it
    (``prediction``, ``news2``, ``warnings`` when any, ``contributions`` when the request
    asks to ``explain``).

    Raises
    ------
    ValueError
        When the model answers a non-finite probability (as the API does: MedServe's bug).
    """
    if not requests:
        return []
    spec: VitalsSpec = entry.spec
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
