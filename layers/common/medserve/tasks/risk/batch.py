"""Batch for risk models: CSV or JSON Lines rows, validated and predicted in chunks.

Each chunk of :data:`~medserve.tasks.risk.CHUNK_ROWS` rows is validated as the API
validates ``instances`` (one vectorised pass when every row is valid) and predicted in
one ``session.run``; when the chunk has bad rows, their errors are split onto their own
rows and the rest are predicted in one more run.
"""

from __future__ import annotations

from typing import Any

from medserve.batch.readers import Row, Table, read_table
from medserve.batch.rows import number_cell, problem_body, row_base, split_instance_errors, summary
from medserve.problems import Problem, unprocessable
from medserve.registry import ModelEntry
from medserve.tasks.risk import CHUNK_ROWS
from medserve.tasks.risk.service import predictions, validate_instances


def process(entry: ModelEntry, data: bytes, name: str, *, max_rows: int) -> dict[str, Any]:
    """``{"format", "results", "summary"}`` for one object."""
    table = read_table(data, name, required=entry.spec.names, max_rows=max_rows)
    results = rows(entry, table)
    return {"format": table.format, "results": results, "summary": summary(results)}


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
        if good:
            try:
                preds = predictions(entry, validate_instances(entry.spec, instances))
            except Problem as problem:
                by_row = split_instance_errors(problem)
                for k, errors in by_row.items():
                    row = good[k]
                    out[row.index] = {**row_base(row), "error": problem_body(unprocessable(errors))}
                good = [row for k, row in enumerate(good) if k not in by_row]
                instances = [inst for k, inst in enumerate(instances) if k not in by_row]
                preds = predictions(entry, validate_instances(entry.spec, instances)) if good else []
        for row, prediction in zip(good, preds, strict=True):
            out[row.index] = {**row_base(row), "prediction": prediction}
        results.extend(out[row.index] for row in chunk)
    return results


def _instance(row: Row, fmt: str) -> dict[str, Any]:
    if fmt == "csv":
        return {k: number_cell(v) for k, v in row.values.items()}
    return row.values
