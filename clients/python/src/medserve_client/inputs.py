"""Turn a local file into a request body for a model's task (CSV, JSON, JSON Lines, images)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from medserve_client.client import sniff_image_type
from medserve_client.errors import InputFileError

ID_COLUMN = "id"
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f", ""}
_TEXT_FIELDS = {"time", "consciousness"}
_BOOL_FIELDS = {"supplemental_oxygen"}


def read_rows(path: Path, key: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a CSV, JSON or JSON Lines file, and their ids (the ``id`` column, else the row number).

    ``key`` is the request's list member (``instances`` or ``observations``), accepted around
    the rows in JSON (``{"instances": [...]}``).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from exc
    stripped = text.lstrip()
    if path.suffix.lower() in (".json", ".jsonl", ".ndjson") or stripped.startswith(("{", "[")):
        rows = _json_rows(path, text, key)
    else:
        rows = _csv_rows(path, text)
    if not rows:
        raise InputFileError(f"{path} holds no rows")
    ids = [str(row.pop(ID_COLUMN, i)) for i, row in enumerate(rows)]
    return rows, ids


def _json_rows(path: Path, text: str, key: str) -> list[dict[str, Any]]:
    try:
        doc: Any = json.loads(text)
    except ValueError:
        try:  # JSON Lines
            doc = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise InputFileError(f"{path} is neither JSON nor JSON Lines: {exc}") from exc
    if isinstance(doc, dict):
        doc = doc.get(key, [doc])
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise InputFileError(f"{path}: expected objects, a list of objects, or {{{key!r}: [...]}}")
    return [dict(r) for r in doc]


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise InputFileError(f"{path}: a CSV needs a header row of input names")
    rows = []
    for record in reader:
        row: dict[str, Any] = {}
        for name, cell in record.items():
            if name is None:
                raise InputFileError(f"{path}, line {reader.line_num}: more cells than header names")
            name = name.strip()
            cell = (cell or "").strip()
            if name == ID_COLUMN or name in _TEXT_FIELDS:
                row[name] = cell
            elif name in _BOOL_FIELDS:
                row[name] = _boolean(cell, path, reader.line_num, name)
            elif cell != "":  # an empty cell is a missing value: the API names it
                row[name] = _number(cell)
        rows.append(row)
    return rows


def _number(cell: str) -> Any:
    try:
        value = float(cell)
    except ValueError:
        return cell  # sent as is: the API answers 422 naming the field
    return int(value) if value.is_integer() and "." not in cell and "e" not in cell.lower() else value


def _boolean(cell: str, path: Path, line: int, name: str) -> bool:
    low = cell.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InputFileError(f"{path}, line {line}: column {name!r} must be true or false")


def read_image(path: Path) -> tuple[bytes, str]:
    """An image file's bytes and media type (read from the bytes; PNG, JPEG or DICOM)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from exc
    media = sniff_image_type(raw)
    if media is None:
        if path.suffix.lower() in (".dcm", ".dicom"):
            media = "application/dicom"  # DICOM without the preamble: the API decides
        else:
            raise InputFileError(f"{path} is not a PNG, JPEG or DICOM file")
    return raw, media
