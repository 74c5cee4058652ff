"""The bulk CSV path of risk batch gives exactly the row-by-row path's results, bad rows included."""

from __future__ import annotations

import numpy as np
import pytest

from medserve.batch.readers import read_csv, read_numeric_csv
from medserve.registry import Registry
from medserve.tasks.risk.batch import process, rows
from tests.conftest import MODELS

ENTRY = Registry.load(MODELS, task="risk").get("breast-cancer")
NAMES = ENTRY.spec.names


def csv_text(n: int = 40, edits: dict[tuple[int, int], str] | None = None, crlf: bool = False) -> str:
    x = np.load(ENTRY.path / "parity.npz")["in:features"].astype(np.float32)
    lines = ["id," + ",".join(NAMES)]
    for r in range(n):
        cells = [str(v) for v in x[r % len(x)]]
        for (row, col), value in (edits or {}).items():
            if row == r:
                cells[col] = value
        lines.append(f"case{r}," + ",".join(cells))
    return ("\r\n" if crlf else "\n").join(lines) + "\n"


def slow(text: str) -> list[dict]:
    return rows(ENTRY, read_csv(text, required=NAMES, max_rows=10**6))


@pytest.mark.parametrize(
    "edits",
    [
        {},
        {(3, 0): "-5", (7, 2): "nan", (11, 5): "1e9", (12, 1): "inf"},  # bad rows: bulk read, named row by row
    ],
)
def test_bulk_path_matches_row_by_row(edits: dict) -> None:
    text = csv_text(edits=edits)
    assert read_numeric_csv(text, required=NAMES, max_rows=10**6) is not None  # the bulk path is taken
    got = process(ENTRY, text.encode(), "x.csv", max_rows=10**6)["results"]
    assert got == slow(text)
    assert [r["line"] for r in got] == list(range(2, 42))
    assert sum("error" in r for r in got) == len({row for row, _ in edits})


@pytest.mark.parametrize(
    "edits",
    [{(4, 0): "1_000"}, {(4, 0): ""}, {(4, 0): "abc"}, {(4, 0): "１"}],
)
def test_cells_the_bulk_reader_cannot_judge_go_row_by_row(edits: dict) -> None:
    text = csv_text(edits=edits)
    assert read_numeric_csv(text, required=NAMES, max_rows=10**6) is None
    got = process(ENTRY, text.encode(), "x.csv", max_rows=10**6)["results"]
    assert got == slow(text)
    assert "error" in got[4] and all("prediction" in r for k, r in enumerate(got) if k != 4)


def test_windows_line_endings_and_quoted_files() -> None:
    text = csv_text(crlf=True)
    assert read_numeric_csv(text, required=NAMES, max_rows=10**6) is not None
    assert process(ENTRY, text.encode(), "x.csv", max_rows=10**6)["results"] == slow(text)
    quoted = csv_text().replace("case1,", '"case,1",')
    assert read_numeric_csv(quoted, required=NAMES, max_rows=10**6) is None
    assert process(ENTRY, quoted.encode(), "x.csv", max_rows=10**6)["results"][1]["id"] == "case,1"


@pytest.mark.parametrize("position", ["first", "middle", "last", "none"])
def test_the_id_column_may_stand_anywhere_or_nowhere(position: str) -> None:
    x = np.load(ENTRY.path / "parity.npz")["in:features"].astype(np.float32)[:12]
    names = list(reversed(NAMES))  # columns in another order than the model's inputs
    columns = {
        "first": ["id", *names],
        "middle": [*names[:7], "id", *names[7:]],
        "last": [*names, "id"],
        "none": names,
    }[position]
    lines = [",".join(columns)]
    for r, row in enumerate(x):
        cell = dict(zip(NAMES, map(str, row), strict=True)) | {"id": f"case {r}"}
        lines.append(",".join(cell[c] for c in columns))
    text = "\n".join(lines) + "\n"
    numeric = read_numeric_csv(text, required=NAMES, max_rows=100)
    assert numeric is not None
    np.testing.assert_array_equal(numeric.x, x.astype(str).astype(np.float64))
    assert numeric.ids == ([f"case {r}" for r in range(12)] if position != "none" else [None] * 12)
    assert process(ENTRY, text.encode(), "x.csv", max_rows=100)["results"] == slow(text)
