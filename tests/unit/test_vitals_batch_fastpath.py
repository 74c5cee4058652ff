"""The vitals batch fast path answers exactly what the per-sequence path answers.

The fast path (:mod:`medserve.tasks.vitals.fastpath`) validates and encodes every sequence
of an object at once and hands anything it does not pass to the API's validator, one by
one. Every result row and every error document must be byte-for-byte what validating each
sequence alone gives (``vitals_rows(..., fast=False)``), for valid and invalid input, JSON
Lines and CSV. Its pieces are checked against the functions they stand in for: the time
parser against :func:`medserve.fields.parse_time`, the JSON Lines reader against
:func:`medserve.jsonbody.loads`, the padding against :func:`pad_batch`.
"""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import numpy as np
import pytest

from medserve.batch import readers
from medserve.batch.readers import read_table
from medserve.fields import parse_time
from medserve.jsonbody import loads, loads_row
from medserve.problems import Problem
from medserve.registry import Registry
from medserve.tasks.vitals import batch as vitals_batch
from medserve.tasks.vitals import features
from medserve.tasks.vitals.fastpath import parse_times, validate_encode
from tests.conftest import MODELS, load_event

REGISTRY = Registry.load(MODELS)
VITALS = REGISTRY.get("vitals-deterioration")
BASE: list[dict[str, Any]] = json.loads(load_event("vitals_predict")["body"])["observations"]
FIELDS = list(features.OBSERVATION_FIELDS)


def _times(n: int, start: datetime, step: timedelta, fmt: str) -> list[str]:
    out = []
    for k in range(n):
        t = (start + k * step).isoformat(timespec="seconds")  # YYYY-MM-DDTHH:MM:SS, the year zero-padded
        if fmt == "Z":
            out.append(t + "Z")
        elif fmt == "naive":
            out.append(t)
        elif fmt == "space":
            out.append(t.replace("T", " "))
        elif fmt == "lower-t":
            out.append(t.replace("T", "t") + "Z")
        elif fmt == "fraction":
            out.append(t + ".250Z")
        elif fmt == "compact-offset":
            out.append(t + "+0100")
        else:  # an offset such as +05:30 or -00:00
            out.append(t + fmt)
    return out


def _sequence(rng: random.Random, n: int, fmt: str = "Z", start: datetime | None = None) -> list[dict[str, Any]]:
    start = start or datetime(2026, 11, 22, 6, 0) + timedelta(minutes=rng.randrange(0, 100_000))
    step = timedelta(minutes=rng.choice([15, 60, 150, 240, 1500, 3000]))
    obs = []
    for k, time in enumerate(_times(n, start, step, fmt)):
        o = dict(BASE[k % len(BASE)])
        o["time"] = time
        o["heart_rate"] = rng.choice([o["heart_rate"], o["heart_rate"] + rng.randrange(-30, 60), 72.5])
        o["spo2"] = rng.choice([o["spo2"], float(o["spo2"]) - rng.random() * 5])
        o["temperature"] = rng.choice([o["temperature"], 36, 38.05])
        o["consciousness"] = rng.choice("AAAACVPU")
        o["supplemental_oxygen"] = rng.random() < 0.3
        obs.append(o)
    return obs


def valid_sequences(rng: random.Random) -> list[dict[str, Any]]:
    """Bodies the API accepts, in every form the fast path takes and some it leaves to the validator."""
    bodies = [{"observations": BASE}, {"observations": BASE, "explain": False}]
    for fmt in ("Z", "naive", "space", "lower-t", "+01:00", "-05:30", "-00:00", "+23:59", "fraction", "compact-offset"):
        bodies += [{"observations": _sequence(rng, n, fmt)} for n in (1, 2, 12, 30)]
    bodies.append({"observations": _sequence(rng, 47)})  # longer than any training sequence: a warning
    bodies.append({"observations": _sequence(rng, 500)})  # the most allowed
    leap = _sequence(rng, 6, "Z", start=datetime(2024, 2, 28, 22, 0))  # across a leap day and years
    bodies.append({"observations": leap})
    bodies.append({"observations": _sequence(rng, 4, "naive", start=datetime(1, 1, 1, 0, 0))})
    bodies.append({"observations": _sequence(rng, 4, "Z", start=datetime(9999, 12, 20, 0, 0))})
    mixed_offsets = _sequence(rng, 3, "+02:00")
    mixed_offsets[1]["time"] = mixed_offsets[1]["time"][:-6] + "+01:00"  # one hour later in UTC
    mixed_offsets[2]["time"] = mixed_offsets[2]["time"][:-6] + "Z"
    bodies.append({"observations": mixed_offsets})
    edges = _sequence(rng, 5)
    edges[0].update(heart_rate=0, respiratory_rate=80, spo2=100.0, temperature=25, systolic_bp=300.0)
    edges[1].update(heart_rate=-0.0, temperature=45.0, systolic_bp=0)
    edges[2].update(heart_rate=250, respiratory_rate=60)  # outside the training range: a warning
    edges[3] = {k: edges[3][k] for k in reversed(FIELDS)}  # keys in another order
    bodies.append({"observations": edges})
    bodies.append({"observations": _sequence(rng, 5), "explain": True})
    bodies.append({"explain": False, "observations": _sequence(rng, 3)})
    return bodies


def _broken(rng: random.Random, field: str, value: Any) -> dict[str, Any]:
    obs = _sequence(rng, 6, rng.choice(["Z", "naive", "+01:00"]))
    k = rng.randrange(len(obs))
    if value is _MISSING:
        del obs[k][field]
    else:
        obs[k][field] = value
    return {"observations": obs}


_MISSING = object()


def invalid_sequences(rng: random.Random) -> list[Any]:
    """Bodies the API refuses (one or more errors each), of every kind the validator names."""
    bodies: list[Any] = []
    bad_values: dict[str, list[Any]] = {
        "heart_rate": [-1, 300.0001, 301, float("nan"), float("inf"), "97", True, None, [97], {"v": 1}, 10**400],
        "respiratory_rate": [81, -0.5, False, "x"],
        "spo2": [100.5, -1e-9, float("-inf")],
        "temperature": [24.99, 45.01, 0],
        "systolic_bp": [1e309, 300.5, "120"],
        "consciousness": ["a", "X", "", 1, None, True, ["A"]],
        "supplemental_oxygen": [1, 0, "true", None, 1.0],
        "time": [
            1_700_000_000,
            None,
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T08:00:00",
            "2026-11-22",
            "2026-11-22T25:00:00Z",
            "2026-11-22T06:60:00Z",
            "2026-11-22T06:00:60Z",
            "2026-11-22T24:00:00",
            "2026-11-22T06:00:00+24:00",
            "2026-11-22T06:00:00+23:60",
            "2026-11-22X06:00:00",
            "2026-11-22T06:00:00z",
            "2026-11-22T06:00:00 Z",
            "0000-01-01T00:00:00",
            "２０２６-11-22T06:00:00Z",
            "2026-11-22T06:00:0\u0669Z",
            "2026-11-22T06:00:00ZZ",
            "",
        ],
    }
    for field, values in bad_values.items():
        for value in values:
            bodies.append(_broken(rng, field, value))
        bodies.append(_broken(rng, field, _MISSING))
    extra = _sequence(rng, 3)
    extra[1]["pulse"] = 80
    bodies.append({"observations": extra})
    mixed = _sequence(rng, 4)
    mixed[2]["time"] = mixed[2]["time"][:-1]  # naive among times with an offset
    bodies.append({"observations": mixed})
    same = _sequence(rng, 4, "naive")
    same[2]["time"] = same[1]["time"]
    bodies.append({"observations": same})
    backwards = _sequence(rng, 5, "-03:00")
    backwards[3], backwards[4] = backwards[4], backwards[3]
    bodies.append({"observations": backwards})
    earlier = _sequence(rng, 2, "+01:00")
    earlier[1]["time"] = earlier[0]["time"][:-6] + "+02:00"  # later on the clock, one hour earlier in UTC
    bodies.append({"observations": earlier})
    same_instant = _sequence(rng, 2, "+01:00")
    same_instant[1]["time"] = (datetime.fromisoformat(same_instant[0]["time"]) - timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%S+00:00"
    )  # the same instant written with another offset
    bodies.append({"observations": same_instant})
    many = _sequence(rng, 4)
    many[0]["spo2"], many[1]["time"], many[3]["consciousness"] = 120, "soon", "Z"
    bodies.append({"observations": many})
    bodies += [
        {"observations": _sequence(rng, 501)},
        {"observations": []},
        {"observations": {"time": BASE[0]["time"]}},
        {"observations": "none"},
        {"observations": None},
        {"observations": [1, 2]},
        {"observations": [BASE[0], "x", [BASE[1]]]},
        {"observations": BASE, "explain": "yes"},
        {"observations": BASE, "explain": 0},
        {"observations": BASE, "explain": None},
        {"observations": BASE, "notes": "x"},
        {"observation": BASE},
        {},
    ]
    return bodies


def jsonl_lines(rng: random.Random) -> list[str]:
    """Valid and invalid bodies as JSON Lines, shuffled, plus lines only the reader refuses."""
    bodies = valid_sequences(rng) + invalid_sequences(rng)
    rng.shuffle(bodies)
    lines = []
    for k, body in enumerate(bodies):
        row = {"id": rng.choice([f"s{k}", k, k + 0.5, None]), **body} if rng.random() < 0.9 else body
        lines.append(json.dumps(row, separators=rng.choice([(", ", ": "), (",", ":")])))
    seq = json.dumps(BASE)
    lines += [
        '{"observations": ' + seq + ', "observations": ' + seq + "}",  # a key given twice
        '{"observations": [{"time": "2026-11-22T06:00:00Z", "time": "2026-11-22T06:00:00Z"}]}',
        '{"observations" : ' + seq + ', "observations" : ' + seq + "}",  # spaced, given twice
        '{"id": "a\\":", "observations": ' + seq + "}",  # an escaped quote before a colon
        '{"obs\\"ervations": 1, "observations": ' + seq + "}",
        '{"id": "q", "observations": [{"heart_rate": {"a": 1, "a": 2}}]}',  # nested deeper, given twice
        '{"id": "q", "observations": [{"heart_rate": {"a": 1}}]}',
        '{"id": "q", "observations": [[{"time": 1, "time": 2}]]}',
        '{"id": ' + "1" * 4100 + ', "observations": ' + seq + "}",  # an integer id too long: a float there
        '{"id": -' + "1" * 3999 + ', "observations": ' + seq + "}",
        '{"id": "n", "observations": [{"heart_rate": ' + "9" * 5000 + "}]}",
        '{"id": NaN, "observations": ' + seq + "}",
        '{"id": {"a": 1}, "observations": ' + seq + "}",
        '{"id": "x", "observations": ' + seq.replace("97", "NaN", 1) + "}",
        '{"id": "x", "observations": ' + seq.replace("82", "Infinity", 1) + "}",
        "\ufeff" + json.dumps({"id": "bom", "observations": BASE}),
        "  " + json.dumps({"id": "spaced", "observations": BASE}) + " \t",  # whitespace around the object
        json.dumps({"id": "after", "observations": BASE}) + " {}",  # something after it
        json.dumps({"id": "twice", "observations": BASE}) * 2,
        "[1, 2]",
        "not json",
        '{"observations": ',
        "   ",
        "[" * 100_000,
        '"just a string"',
    ]
    rng.shuffle(lines)
    return lines


def csv_text(rng: random.Random) -> str:
    """Sequences as CSV rows (ids interleaved, times shuffled), with bad cells and rows among them."""
    rows: list[list[str]] = []
    for k, body in enumerate(valid_sequences(rng)[:40] + invalid_sequences(rng)[:60]):
        obs = body.get("observations") if isinstance(body, dict) else None
        if not isinstance(obs, list) or body.get("explain"):
            continue
        for o in obs:
            if not isinstance(o, dict):
                continue
            cells = [f"p{k}"]
            for name in FIELDS:
                v = o.get(name, "")
                if isinstance(v, bool):
                    v = rng.choice([str(v).lower(), "1" if v else "0", "yes" if v else "no", str(v).upper()])
                elif isinstance(v, float) and not np.isfinite(v):
                    v = rng.choice(["nan", "inf", "-Infinity"])
                elif not isinstance(v, str | int | float) or (isinstance(v, int) and abs(v) > 10**20):
                    v = "??"
                cells.append(str(v))
            rows.append(cells)
    rng.shuffle(rows)
    rows.insert(3, ["p-short", "2026-11-22T06:00:00Z", "80"])  # the wrong number of cells
    rows.insert(5, ["p1", "2026-11-22T06:00:00Z", "80", "1_000", "97", "37", "120", "A", "maybe"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", *FIELDS])
    writer.writerows(rows)
    return buf.getvalue()


def _both(data: bytes, name: str) -> tuple[str, str]:
    """The rows of ``data`` as the batch answers them (fast path) and the reference, as JSON text.

    The reference reads the object with :func:`medserve.jsonbody.loads` (the API's reader, one
    hook call per object) and validates every sequence one by one.
    """
    with mock.patch.object(vitals_batch, "parse", wraps=vitals_batch.parse) as one_by_one:
        fast = vitals_batch.process(VITALS, data, name, max_rows=100_000)["results"]
    # the fast path took many sequences: at least half the predicted rows were never validated one by one
    assert one_by_one.call_count <= len(fast) - sum("prediction" in r for r in fast) / 2
    with mock.patch.object(readers, "json_loads", loads):
        table = read_table(data, name, required=FIELDS, max_rows=100_000)
    reference = vitals_batch.vitals_rows(VITALS, table, fast=False)
    return json.dumps(fast, allow_nan=False), json.dumps(reference, allow_nan=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jsonl_results_and_errors_are_byte_identical_to_the_per_sequence_path(seed: int) -> None:
    # Given JSON Lines of valid sequences and of every kind of invalid one, shuffled
    data = "\n".join(jsonl_lines(random.Random(seed))).encode()
    # When the batch answers them with and without the fast path
    fast, reference = _both(data, "mixed.jsonl")
    # Then every row, prediction and error document is the same, byte for byte
    assert fast == reference
    rows = json.loads(fast)
    assert sum("prediction" in r for r in rows) > 50 and sum("error" in r for r in rows) > 80
    assert any("warnings" in r for r in rows) and any("contributions" in r for r in rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_csv_results_and_errors_are_byte_identical_to_the_per_sequence_path(seed: int) -> None:
    fast, reference = _both(csv_text(random.Random(seed)).encode(), "ward.csv")
    assert fast == reference
    rows = json.loads(fast)
    assert sum("prediction" in r for r in rows) > 20 and sum("error" in r for r in rows) > 20


def test_the_fast_path_takes_every_common_valid_sequence_and_no_invalid_one() -> None:
    # Given valid bodies in the forms the fast path knows, and invalid bodies of every kind
    rng = random.Random(7)
    common = [b for b in valid_sequences(rng) if not b.get("explain")]
    known = [
        b for b in common if all(len(o["time"]) in (19, 20, 25) and o["time"][-5:-4] != "+" for o in b["observations"])
    ]
    invalid = invalid_sequences(rng)
    # When they are checked column-wise
    passed = validate_encode(known + invalid, VITALS.spec.fast).index
    # Then every valid one of those forms passed (and was encoded as the API encodes it), no invalid one did
    assert passed == list(range(len(known)))
    checked = validate_encode(known, VITALS.spec.fast)
    for k, start, length in zip(checked.index, checked.starts, checked.lengths, strict=True):
        request = vitals_batch.parse(VITALS, known[k])
        want = features.encode(request.observations, request.times)
        assert checked.x[start : start + length].tobytes() == want.tobytes()


def test_the_fast_path_finds_what_the_validator_finds_on_random_mutations() -> None:
    # Given many sequences each mutated at random (a value swapped for one from another field or a bad one)
    rng = random.Random(11)
    pool: list[Any] = [
        *(v for o in BASE for v in o.values()),
        None,
        True,
        False,
        -1,
        1e9,
        float("nan"),
        "",
        "2026-11-22T06:00:00",
        "2026-11-22T06:00:00+01:00",
        [],
        {},
    ]
    bodies = []
    for _ in range(400):
        obs = _sequence(rng, rng.randrange(1, 8), rng.choice(["Z", "naive", "+01:00"]))
        for _ in range(rng.randrange(0, 3)):
            o = rng.choice(obs)
            o[rng.choice(FIELDS)] = rng.choice(pool)
        bodies.append({"observations": obs})
    # When checked column-wise and one by one
    passed = set(validate_encode(bodies, VITALS.spec.fast).index)
    for k, body in enumerate(bodies):
        try:
            vitals_batch.parse(VITALS, body)
        except Problem:
            ok = False
        else:
            ok = True
        # Then the fast path never passes what the validator refuses, and passes every valid one here
        assert (k in passed) == ok, body


def _parse_time_or_none(text: str) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None


def test_parse_times_agrees_with_parse_time() -> None:
    # Given well-formed strings of the common forms, the same corrupted, and edge cases
    rng = random.Random(3)
    common, corrupted = [], []
    for _ in range(3000):
        t = datetime(1, 1, 1) + timedelta(seconds=rng.randrange(0, 315_537_897_599))
        sep = rng.choice("Tt ")
        text = t.isoformat(sep, "seconds") + rng.choice(["", "Z", "+01:00", "-11:45", "+00:00", "-00:00"])
        common.append(text)
        k = rng.randrange(len(text))
        corrupted.append(text[:k] + rng.choice("0123456789:-+TtZz .\u0663") + text[k + 1 :])
    edges = ["2024-02-29T00:00:00", "2023-02-29T00:00:00", "1900-02-29T00:00:00Z", "2000-02-29T23:59:59Z"]
    edges += ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2026-06-31T00:00:00Z", "2026-00-10T00:00:00"]
    edges += ["2026-11-22T06:00:00.5", "2026-11-22T06:00:00+0100", "2026-11-22T06:00", "2026-11-22T06:00:00+01"]
    texts = common + corrupted + edges
    # When parsed column-wise
    seconds, aware, ok = parse_times(texts)
    # Then every string it takes, parse_time takes too, at the same instant and of the same kind ...
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for text, s, a, good in zip(texts, seconds.tolist(), aware.tolist(), ok.tolist(), strict=True):
        want = _parse_time_or_none(text)
        if good:
            assert want is not None, text
            assert a == (want.tzinfo is not None), text
            assert s == ((want if a else want.replace(tzinfo=UTC)) - epoch) // timedelta(seconds=1), text
    # ... it takes every string of the common forms, and leaves some it does not know to parse_time
    assert ok[: len(common)].all()
    assert 0 < ok[len(common) : len(common) + len(corrupted)].sum() < len(corrupted)
    taken = [True, False, False, True, True, True, False, False, False, False, False, False]
    assert ok[-len(edges) :].tolist() == taken


def _outcome(fn: Any, text: str) -> Any:
    try:
        return ("value", fn(text))
    except Problem as problem:
        return ("problem", problem.status, problem.to_dict())
    except Exception as exc:  # noqa: BLE001 - the exception's kind is what is compared
        return ("raised", type(exc))


def test_loads_row_answers_exactly_what_loads_answers() -> None:
    lines = jsonl_lines(random.Random(5))
    lines += ['{"a": 1, "a": 2}', '{"a" : 1, "b" : {"a": 1}}', '{"a":1,"b":[{"c":1},{"c":2,"c":3}]}', "{}", "[]"]
    lines += ['{"a": [1, "x", {"y": 1}]}', '{"a": "\\"", "a": 1}', '{"k\\u0022": 1, "k\\"": 2}', '{"a":\t1,"a":2}']
    for line in lines:
        got, want = _outcome(loads_row, line), _outcome(loads, line)
        assert repr(got) == repr(want), line[:200]


def test_pad_ranges_equals_pad_batch() -> None:
    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(int(t), 8)).astype(np.float32) for t in rng.integers(1, 30, size=40)]
    x = np.concatenate(sequences)
    lengths = np.array([len(s) for s in sequences])
    starts = np.concatenate([[0], np.cumsum(lengths[:-1])])
    order = rng.permutation(len(sequences))
    got_x, got_m = features.pad_ranges(x, starts[order], lengths[order])
    want_x, want_m = features.pad_batch([sequences[k] for k in order])
    assert got_x.dtype == want_x.dtype and got_m.dtype == want_m.dtype
    assert got_x.tobytes() == want_x.tobytes() and got_m.tobytes() == want_m.tobytes()
