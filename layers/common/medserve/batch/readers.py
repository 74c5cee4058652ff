"""Read a batch object (CSV or JSON Lines) into rows, or refuse it with one problem.

Decisions
---------
- **Text**: UTF-8 (a leading byte-order mark is dropped). Bytes that are not UTF-8
  are a 400 problem; binary content (NUL bytes, or a PNG/JPEG/DICOM/ZIP/GZIP
  signature) sent to a tabular or vitals model is 415.
- **Format**: the name's extension decides (``.csv``; ``.jsonl``, ``.ndjson``,
  ``.json``); any other name is sniffed: a first non-blank character ``{`` means
  JSON Lines, anything else CSV.
- **CSV** (RFC 4180, comma-separated, first row the header): header names are
  stripped of surrounding spaces; an unknown, duplicate or missing column refuses
  the whole file (422, ``header.<column>``), because every row would fail the same
  way. Blank lines are skipped. A row with the wrong number of cells is a bad
  *row*, reported in its own place. Cells stay strings here; the task converts.
- **JSON Lines**: one JSON object per non-blank line. A line that is not JSON, or
  not an object, is a bad row; an ``id`` key, if present, is the row's id and not
  a feature. ``NaN``/``Infinity`` literals parse on purpose, so that the task's
  validation names the field (422).
- **Ids** are echoed into the result, so only a string (valid Unicode) or a finite
  number is kept; any other ``id`` (``NaN``, a lone surrogate, an object, a boolean)
  makes the row a bad row (422, field ``id``) and is dropped.
- **No echo of cells in problems**: a header cell is named (``header.<column>``) only
  when it is a plain identifier, otherwise by position (``header[3]``); a CSV whose
  first row names none of the model's inputs (no header row, so the first data row
  was read as one) is refused as "the first row is not a header of input names".
- Rows are numbered from 0 in file order (``row``), as the API numbers
  ``instances[i]``; ``line`` is the 1-based line of the file, for people.
- An object with no data rows is 422; more than ``max_rows`` rows is 413.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from medserve.jsonbody import loads_row as json_loads
from medserve.problems import Problem, bad_request, payload_too_large, unprocessable, unsupported_media_type

ID_COLUMN = "id"
NOT_A_HEADER = "the first row is not a header of input names"
_PLAIN_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
CSV_EXTENSIONS = (".csv",)
JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".json")
_BINARY_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"%PDF",
)


@dataclass
class Row:
    """One data row.

    Attributes
    ----------
    index
        0-based position among the data rows.
    line
        1-based line of the file where the row starts.
    id
        The ``id`` cell / key (``None`` when absent).
    values
        The other cells (CSV: stripped strings, empty cells left out) or keys (JSON).
    error
        A problem already found while reading (bad JSON, wrong cell count).
    """

    index: int
    line: int
    id: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    error: Problem | None = None


@dataclass
class Table:
    """A read object: its format, CSV header (if any) and rows."""

    format: str
    rows: list[Row]
    columns: list[str] | None = None


def _is_binary(data: bytes) -> bool:
    head = data[:1024]
    if any(head.startswith(m) for m in _BINARY_MAGIC) or (len(data) >= 132 and data[128:132] == b"DICM"):
        return True
    return b"\x00" in head


def decode_text(data: bytes) -> str:
    """The object as text: 422 when empty, 415 when binary, 400 when not UTF-8."""
    if not data.strip():
        raise unprocessable([("object", "is empty; send a CSV with a header row, or JSON Lines")])
    if _is_binary(data):
        raise unsupported_media_type("the object is binary; this model reads CSV or JSON Lines text", field="object")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the object is not UTF-8 text (invalid byte at offset {exc.start})", field="object") from exc


def detect_format(name: str, text: str) -> str:
    """``"csv"`` or ``"jsonl"`` from the name's extension, else from the first character."""
    lower = name.lower()
    if lower.endswith(CSV_EXTENSIONS):
        return "csv"
    if lower.endswith(JSONL_EXTENSIONS):
        return "jsonl"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


def _too_many(max_rows: int) -> Problem:
    return payload_too_large(
        f"the object has more than {max_rows:,} rows (MEDSERVE_BATCH_MAX_ROWS); split it into smaller files",
        field="object",
    )


def header_field(column: str, position: int) -> str:
    """``header.<column>`` for a plain identifier, else ``header[<position>]`` (cells may be patient data)."""
    return f"header.{column}" if _PLAIN_COLUMN.match(column) else f"header[{position}]"


def check_header(columns: Sequence[str], required: Sequence[str], optional: Iterable[str] = (ID_COLUMN,)) -> None:
    """Refuse a CSV header with unknown, duplicate or missing columns (422, every column named).

    Columns are named only when they are plain identifiers (see :func:`header_field`);
    when no cell names any input, the first row is said not to be a header at all.
    """
    allowed = set(required) | set(optional)
    expected = f"expected the columns {', '.join(required)} and optionally id"
    not_a_header = not allowed.intersection(columns)
    errors: list[tuple[str, str]] = [("header", NOT_A_HEADER)] if not_a_header else []
    seen: set[str] = set()
    for position, col in enumerate(columns):
        if col == "":
            errors.append((f"header[{position}]", "has an empty column name"))
        elif col in seen:
            errors.append((header_field(col, position), "duplicate column"))
        elif col not in allowed:
            errors.append((header_field(col, position), "unknown column for this model"))
        seen.add(col)
    for name in required:
        if name not in seen:
            errors.append((f"header.{name}", "required column is missing"))
    if errors:
        n = len(errors) - not_a_header
        what = NOT_A_HEADER if not_a_header else "the CSV header does not match the model's inputs"
        detail = f"{what} ({n} problem{'s' if n != 1 else ''}); {expected}"
        raise unprocessable(errors, detail=detail)


def row_id(value: Any) -> tuple[Any, Problem | None]:
    """``(id, None)`` for a string of valid Unicode or a finite number; else ``(None, 422 on id)``.

    The id is written back into the result document, so it must be JSON that any
    reader can take: no ``NaN``/``Infinity``, no lone surrogates, no nested values.
    """
    if value is None:
        return None, None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return value, None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, int) or math.isfinite(value):
            return value, None
    return None, unprocessable([(ID_COLUMN, "must be a string or a finite number")])


def read_csv(text: str, *, required: Sequence[str], max_rows: int) -> Table:
    """Parse CSV text whose header must name ``required`` (plus an optional ``id``)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header: list[str] | None = None
        rows: list[Row] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                check_header(header, required)
                continue
            line = reader.line_num
            if len(rows) >= max_rows:
                raise _too_many(max_rows)
            row = Row(index=len(rows), line=line)
            if len(cells) != len(header):
                if ID_COLUMN in header and header.index(ID_COLUMN) < len(cells):
                    row.id = cells[header.index(ID_COLUMN)].strip() or None
                row.error = unprocessable(
                    [("row", f"has {len(cells)} cells; the header has {len(header)}")],
                    detail="the row does not have one cell per header column",
                )
            else:
                for col, cell in zip(header, cells, strict=True):
                    value = cell.strip()
                    if col == ID_COLUMN:
                        row.id = value or None
                    elif value != "":
                        row.values[col] = value
            rows.append(row)
    except csv.Error as exc:
        raise bad_request(f"the CSV cannot be parsed near line {reader.line_num}: {exc}", field="object") from exc
    if header is None:
        raise unprocessable([("object", "has no header row")])
    if not rows:
        raise unprocessable([("object", "has a header but no data rows")])
    return Table(format="csv", rows=rows, columns=header)


def read_jsonl(text: str, *, max_rows: int, loads: Callable[[str], Any] | None = None) -> Table:
    """Parse JSON Lines: one object per non-blank line (bad lines become bad rows).

    ``loads`` reads one line (by default the API's reader, :func:`medserve.jsonbody.loads_row`);
    it is called once per row, in order.
    """
    rows: list[Row] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(rows) >= max_rows:
            raise _too_many(max_rows)
        rows.append(jsonl_row(len(rows), line_no, line, loads))
    if not rows:
        raise unprocessable([("object", "has no JSON Lines rows")])
    return Table(format="jsonl", rows=rows)


def jsonl_row(index: int, line_no: int, line: str, loads: Callable[[str], Any] | None = None) -> Row:
    """Row ``index`` (file line ``line_no``) of a JSON Lines object: an object, else a bad row."""
    row = Row(index=index, line=line_no)
    try:
        # the API's JSON reader: NaN/Infinity parse (the task names them), a key given twice is a 422
        obj = (loads or json_loads)(line)
    except Problem as problem:
        row.error = problem
    except ValueError:
        row.error = bad_request("the line is not valid JSON", field="line")
    except RecursionError:
        row.error = bad_request("the line is nested too deeply to be read", field="line")
    else:
        if isinstance(obj, dict):
            row.id, row.error = row_id(obj.pop(ID_COLUMN, None))
            row.values = obj
        else:
            row.error = unprocessable([("line", "must be a JSON object")])
    return row


@dataclass
class NumericCsv:
    """A clean CSV read in bulk: every cell of every required column a decimal number.

    Attributes
    ----------
    x
        ``[N, len(required)]`` float64, columns in ``required`` order (values as written:
        NaN, infinities and out-of-range values are left for the task's checks).
    ids
        The ``id`` cell of each row (stripped; ``None`` when empty or without an id column).
    first_line
        The 1-based file line of row 0 (rows are on consecutive lines).
    """

    x: Any
    ids: list[str | None]
    first_line: int


def read_numeric_csv(text: str, *, required: Sequence[str], max_rows: int) -> NumericCsv | None:
    """Read a CSV of numbers in bulk (NumPy's C float parser), or ``None`` to use :func:`read_csv`.

    The bulk path takes only files whose every data line is one row with one cell per header
    column, no quotes, no blank lines, and only ASCII decimal numbers (no ``_`` digit
    separators) in the input columns: exactly the cells :func:`read_csv` plus the tasks'
    number conversion would accept. Anything else returns ``None`` and is read row by row,
    so every bad row is still named. The header is checked the same way (422 for a bad one).
    """
    import numpy as np

    if '"' in text or not text.isascii():
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            return None
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    skipped = 0
    while skipped < len(lines) and not lines[skipped].strip():
        skipped += 1
    if skipped >= len(lines):
        return None
    header = [c.strip() for c in lines[skipped].split(",")]
    check_header(header, required)
    body = lines[skipped + 1 :]
    if not body:
        return None
    if len(body) > max_rows:
        raise _too_many(max_rows)
    width = len(header) - 1
    if any(line.count(",") != width for line in body):
        return None  # wrong cell counts (or blank lines): named row by row
    start = text.index(body[0], len(lines[skipped]))
    body_text = text[start : start + sum(map(len, body)) + len(body) - 1]
    numeric_columns = [c for c in header if c != ID_COLUMN]
    if ID_COLUMN in header and header.index(ID_COLUMN) == 0:  # the usual layout: one partition per line
        parts = [line.partition(",") for line in body]
        ids: list[str | None] = [p[0].strip() or None for p in parts]
        body_text = "\n".join([p[2] for p in parts])
    elif ID_COLUMN in header:
        k = header.index(ID_COLUMN)
        ids = [c.strip() or None for c in re.findall(f"(?m)^(?:[^,\n]*,){{{k}}}([^,\n]*)", body_text)]
        if k == width:
            body_text = re.sub(r"(?m),[^,\n]*$", "", body_text)
        else:
            body_text = re.sub(f"(?m)^((?:[^,\n]*,){{{k}}})[^,\n]*,", r"\1", body_text)
    else:
        ids = [None] * len(body)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy warns (and stops) at the first cell it cannot read
        try:
            # C-speed: no Python float per cell; refuses what float() would wrongly take (1_000, non-ASCII digits)
            values = np.fromstring(body_text.replace("\n", ","), dtype=np.float64, sep=",")
        except (ValueError, DeprecationWarning):  # an empty or non-numeric cell: named row by row
            return None
    if values.size != len(body) * len(numeric_columns):
        return None
    matrix = values.reshape(len(body), len(numeric_columns))
    x = matrix[:, [numeric_columns.index(name) for name in required]]
    return NumericCsv(x=x, ids=ids, first_line=skipped + 2)


def read_table(data: bytes, name: str, *, required: Sequence[str], max_rows: int) -> Table:
    """Decode, pick the format and parse (see the module's decisions)."""
    text = decode_text(data)
    if detect_format(name, text) == "csv":
        return read_csv(text, required=required, max_rows=max_rows)
    return read_jsonl(text, max_rows=max_rows)
