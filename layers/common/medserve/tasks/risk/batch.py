"""Batch for risk models: CSV or JSON Lines rows, validated and predicted in chunks.

Each chunk of :data:`~medserve.tasks.risk.CHUNK_ROWS` rows is validated as the API
validates ``instances`` (one vectorised pass when every row is valid) and predicted in
one ``session.run``; when the chunk has bad rows, their errors are split onto their own
rows and the rest are predicted in one more run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medserve.batch.readers import (
    NumericCsv,
    Row,
    Table,
    decode_text,
    detect_format,
    read_csv,
    read_jsonl,
    read_numeric_csv,
)
from medserve.batch.rows import number_cell, problem_body, row_base, split_instance_errors, summary
from medserve.problems import Problem, unprocessable
from medserve.registry import ModelEntry
from medserve.tasks.risk import CHUNK_ROWS
from medserve.tasks.risk.service import predictions, validate_instances


def process(entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
    """``{"format", "results", "summary"}`` for one object.

    A clean CSV of numbers is parsed and checked in bulk (:func:`bulk_rows`); anything else,
    and any row the bulk checks refuse, goes row by row so every bad field is named.
    """
    text = decode_text(data)
    if detect_format(name, text) == "csv":
        numeric = read_numeric_csv(text, required=entry.spec.names, max_rows=max_rows)
        if numeric is not None:
            results = bulk_rows(entry, numeric, text)
            return {"format": "csv", "results": results, "summary": summary(results)}
        table = read_csv(text, required=entry.spec.names, max_rows=max_rows)
    else:
        table = read_jsonl(text, max_rows=max_rows)
    results = rows(entry, table)
    return {"format": table.format, "results": results, "summary": summary(results)}


def bulk_rows(entry: ModelEntry, numeric: NumericCsv, text: str) -> list[dict[str, Any]]:
    """Rows of a bulk-read CSV: vectorised checks, one ``session.run`` per chunk of valid rows.

    Rows that break a rule (non-finite, out of range, not an allowed code) are re-read from
    their lines and validated field by field, so their errors are the API's.
    """
    spec = entry.spec
    x = numeric.x
    ok = np.isfinite(x).all(axis=1) & (x >= spec.lo).all(axis=1) & (x <= spec.hi).all(axis=1)
    for name, allowed in spec.allowed.items():
        ok &= np.isin(x[:, spec.index[name]], allowed)
    good = np.flatnonzero(ok)
    out: list[dict[str, Any] | None] = [None] * len(x)
    x32 = x[good].astype(np.float32)
    for start in range(0, len(good), CHUNK_ROWS):
        idx = good[start : start + CHUNK_ROWS].tolist()
        for i, prediction in zip(idx, predictions(entry, x32[start : start + CHUNK_ROWS]), strict=True):
            out[i] = {"row": i, "line": numeric.first_line + i, "id": numeric.ids[i], "prediction": prediction}
    bad = np.flatnonzero(~ok).tolist()
    if bad:
        lines = text.split("\n")
        header = lines[numeric.first_line - 2]
        table = read_csv(
            "\n".join([header, *(lines[numeric.first_line - 1 + i] for i in bad)]),
            required=spec.names,
            max_rows=len(bad),
        )
        for i, result in zip(bad, rows(entry, table), strict=True):
            out[i] = {**result, "row": i, "line": numeric.first_line + i}
    return [r for r in out if r is not None]


def rows(entry: ModelEntry, table: Table, *, chunk_rows: int = CHUNK_ROWS) -> list[dict[str, Any]]:
    """One result per row, in order (see the module docstring)."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(table.rows), chunk_rows):
        chunk = table.rows[start : start + chunk_rows]
        out: dict[int, dict[str, Any]] = {}
        good: list[Row] = []
        for row in chunk:
            if row.error is not None:
                out[row.index] = {**row_base(row), "error": problem_body(row.error)}
            else:
                good.append(row)
        instances = [_instance(row, table.format) for row in good]
        preds: list[dict[str, Any]] = []
        while good:
            # A problem lists at most MAX_ERRORS errors: split what it lists, and try the rest again.
            try:
                preds = predictions(entry, validate_instances(entry.spec, instances))
                break
            except Problem as problem:
                by_row = split_instance_errors(problem)
                if not by_row:
                    raise
                for k, errors in by_row.items():
                    row = good[k]
                    out[row.index] = {**row_base(row), "error": problem_body(unprocessable(errors))}
                good = [row for k, row in enumerate(good) if k not in by_row]
                instances = [inst for k, inst in enumerate(instances) if k not in by_row]
        for row, prediction in zip(good, preds, strict=True):
            out[row.index] = {**row_base(row), "prediction": prediction}
        results.extend(out[row.index] for row in chunk)
    return results


def _instance(row: Row, fmt: str) -> dict[str, Any]:
    if fmt == "csv":
        return {k: number_cell(v) for k, v in row.values.items()}
    return row.values
