"""Column-wise validation and encoding of many vitals request bodies at once (the batch fast path).

Batch validates every sequence as the API does (:func:`medserve.tasks.vitals.validation.validate_request`),
which costs Python work per observation. This module checks all observations of all sequences
together, a NumPy comparison per rule, and encodes the sequences that pass, exactly as
:func:`medserve.tasks.vitals.features.encode` would. It only ever says *yes*: a sequence that
fails any check here (or is merely unusual: a time written in a rarer ISO-8601 form, an
``explain`` request) is handed back to the per-sequence validator, which names every error as
the API does. So every error document is the API's, and a sequence passes here only when the
validator would pass it.

The rules, as :mod:`medserve.tasks.vitals.validation` and :class:`medserve.fields.Record` state them:

- the body is an object of ``observations`` (and ``explain``: ``false`` here), 1 to
  ``max_observations`` observations, each an object of exactly the observation fields;
- numbers are JSON numbers (``int`` or ``float``, not booleans), finite, within the field's bounds;
- ``consciousness`` is one of the allowed letters; ``supplemental_oxygen`` a boolean;
- ``time`` is ``YYYY-MM-DD[T ]HH:MM:SS`` followed by nothing (naive), ``Z`` or ``±HH:MM``, a real
  date and time of day (the forms :func:`medserve.fields.parse_time` reads identically); all
  naive or all with an offset; strictly ascending.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, repeat
from operator import is_, itemgetter
from typing import Any

import numpy as np

from medserve.fields import Record
from medserve.tasks.vitals.features import ACVPU_CODE, COLUMNS, DT_CAP_HOURS, NUMERIC_FIELDS, OBSERVATION_FIELDS

__all__ = ["STRING_VALUES", "FastPlan", "Validated", "parse_times", "plan", "validate_encode"]

_MAX_FLOAT = 1.7976931348623157e308
_EXACT = float(2**53)  # bounds compared as float64 must be exact there for every integer value
_EMPTY: dict[str, Any] = {}
_NUMBER_TYPES = frozenset({int, float})
#: String values of an observation this path passes: ``time`` and ``consciousness`` (the numbers are
#: ``int``/``float``, ``supplemental_oxygen`` a ``bool``). The batch reader's duplicate-key proof counts on it.
STRING_VALUES = 2
_READINGS = itemgetter(*NUMERIC_FIELDS)
#: Days in each month of a common year.
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


@dataclass(frozen=True)
class FastPlan:
    """What the fast path checks, read once from a model's body :class:`~medserve.fields.Record`."""

    low: np.ndarray  # [5] the numeric fields' lower bounds, in encoding column order (NUMERIC_FIELDS)
    high: np.ndarray  # [5] their upper bounds
    codes: dict[str, int]  # allowed consciousness letter -> ACVPU ordinal
    max_observations: int


def plan(body: Record) -> FastPlan | None:
    """The fast path for a vitals body record, or ``None`` when its fields are not the layout known here."""
    if body.names != ["observations", "explain"]:
        return None
    observations, explain = body.get("observations"), body.get("explain")
    record = observations.items
    if (
        observations.type != "array"
        or record is None
        or observations.min_items != 1
        or observations.max_items is None
        or explain.type != "boolean"
        or explain.required
        or explain.default is not False
        or record.names != list(OBSERVATION_FIELDS)
    ):
        return None
    kinds = {f.name: f.type for f in record.fields}
    if (
        kinds["time"] != "datetime"
        or kinds["supplemental_oxygen"] != "boolean"
        or kinds["consciousness"] != "string"
        or any(kinds[n] != "number" for n in NUMERIC_FIELDS)
    ):
        return None
    letters = record.get("consciousness").allowed
    if not letters or not set(letters) <= ACVPU_CODE.keys():
        return None
    bounds = []
    for name in NUMERIC_FIELDS:
        f = record.get(name)
        lo = -_MAX_FLOAT if f.minimum is None else float(f.minimum)
        hi = _MAX_FLOAT if f.maximum is None else float(f.maximum)
        if f.allowed or (f.minimum is not None and abs(lo) > _EXACT) or (f.maximum is not None and abs(hi) > _EXACT):
            return None
        bounds.append((lo, hi))
    return FastPlan(
        low=np.array([lo for lo, _ in bounds], dtype=np.float64),
        high=np.array([hi for _, hi in bounds], dtype=np.float64),
        codes={k: ACVPU_CODE[k] for k in letters},
        max_observations=observations.max_items,
    )


@dataclass
class Validated:
    """The bodies that passed, encoded.

    Attributes
    ----------
    index
        Positions (in the bodies given) of the sequences that passed, ascending.
    x
        The passed sequences' encoded observations one after another, ``[sum T_i, 8]`` float32.
    starts, lengths
        Where each passed sequence lies in ``x``: ``x[starts[k] : starts[k] + lengths[k]]`` is what
        :func:`~medserve.tasks.vitals.features.encode` returns for ``bodies[index[k]]``.
    """

    index: list[int]
    x: np.ndarray
    starts: list[int]
    lengths: list[int]

    @classmethod
    def empty(cls) -> Validated:
        """None passed."""
        return cls([], np.zeros((0, len(COLUMNS)), dtype=np.float32), [], [])


def _column(observations: list[Any], name: str) -> list[Any]:
    return list(map(dict.get, observations, repeat(name)))


def _numbers(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64, and whether each is a JSON number (``int`` or ``float``, not a boolean) that fits one."""
    n = len(values)
    if set(map(type, values)) <= _NUMBER_TYPES:
        try:
            return np.fromiter(values, dtype=np.float64, count=n), np.ones(n, dtype=bool)
        except OverflowError:  # an integer beyond float range: found one by one below
            pass
    x = np.fromiter(map(_as_float, values), dtype=np.float64, count=n)
    return x, ~np.isnan(x)


def _as_float(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return np.nan
    return np.nan


def _digits(b: np.ndarray, columns: list[int]) -> np.ndarray:
    v = b[:, columns[0]].astype(np.int64)
    for c in columns[1:]:
        v = v * 10 + b[:, c]
    return v


def parse_times(values: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(seconds, aware, ok)`` for time strings, column-wise.

    ``ok`` marks the strings of the common ISO-8601 forms (``YYYY-MM-DD[Tt ]HH:MM:SS`` then nothing,
    ``Z`` or ``±HH:MM``) that are a real date and time of day; for them ``seconds`` is the instant
    (naive times as UTC) in whole seconds since 1970 and ``aware`` whether it has an offset.
    Anything else is ``ok == False`` (it may still be valid: the per-sequence validator decides).
    """
    n = len(values)
    seconds = np.zeros(n, dtype=np.int64)
    aware = np.zeros(n, dtype=bool)
    ok = np.zeros(n, dtype=bool)
    if not n:
        return seconds, aware, ok
    if set(map(type, values)) != {str}:
        values = [v if type(v) is str else "" for v in values]
    lengths = np.fromiter(map(len, values), dtype=np.intp, count=n)
    for width in (19, 20, 25):
        where = np.flatnonzero(lengths == width)
        if not where.size:
            continue
        texts = values if where.size == n else [values[k] for k in where.tolist()]
        # one byte per character: anything outside ASCII becomes "?" and fails the checks below
        raw = np.frombuffer("".join(texts).encode("ascii", "replace"), dtype=np.uint8).reshape(-1, width)
        b = raw - np.uint8(48)  # digit values where the characters are digits (others wrap past 9)
        digit_columns = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
        if width == 25:
            digit_columns += [20, 21, 23, 24]
        good = (b[:, digit_columns] <= 9).all(axis=1)
        good &= (raw[:, 4] == 45) & (raw[:, 7] == 45) & (raw[:, 13] == 58) & (raw[:, 16] == 58)  # - - : :
        good &= (raw[:, 10] == 84) | (raw[:, 10] == 116) | (raw[:, 10] == 32)  # T t space
        year = _digits(b, [0, 1, 2, 3])
        month = _digits(b, [5, 6])
        day = _digits(b, [8, 9])
        hour = _digits(b, [11, 12])
        minute = _digits(b, [14, 15])
        second = _digits(b, [17, 18])
        leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
        month_days = _MONTH_DAYS[np.clip(month - 1, 0, 11)] + (leap & (month == 2))
        good &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
        good &= (hour <= 23) & (minute <= 59) & (second <= 59)
        # days since 1970-01-01 of the proleptic Gregorian date (H. Hinnant's days_from_civil)
        y = year - (month <= 2)
        era = y // 400
        yoe = y - era * 400
        doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
        days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
        instant = days * 86400 + hour * 3600 + minute * 60 + second
        if width == 20:
            good &= raw[:, 19] == 90  # Z
        elif width == 25:
            sign = raw[:, 19]
            off_hour = _digits(b, [20, 21])
            off_minute = _digits(b, [23, 24])
            good &= ((sign == 43) | (sign == 45)) & (raw[:, 22] == 58) & (off_hour <= 23) & (off_minute <= 59)
            offset = off_hour * 3600 + off_minute * 60
            instant = instant - np.where(sign == 45, -offset, offset)
        seconds[where] = instant
        aware[where] = width != 19
        ok[where] = good
    return seconds, aware, ok


def validate_encode(bodies: list[Any], fast: FastPlan) -> Validated:
    """Check ``bodies`` column-wise and encode those that pass (see the module notes).

    A body that does not pass is simply left out of :attr:`Validated.index`; the caller
    validates it one by one.
    """
    picked: list[int] = []
    sequences: list[list[Any]] = []
    most = fast.max_observations
    for i, body in enumerate(bodies):
        if type(body) is not dict:
            continue
        obs = body.get("observations")
        if type(obs) is not list or not 1 <= len(obs) <= most:
            continue
        if len(body) != 1 and (len(body) != 2 or body.get("explain", None) is not False):
            continue  # other keys, or explain: the validator (and the occlusion path) take it
        picked.append(i)
        sequences.append(obs)
    if not picked:
        return Validated.empty()
    lengths = np.fromiter(map(len, sequences), dtype=np.intp, count=len(sequences))
    starts = np.zeros(len(sequences), dtype=np.intp)
    np.cumsum(lengths[:-1], out=starts[1:])
    observations = list(chain.from_iterable(sequences))
    n = len(observations)
    if set(map(type, observations)) == {dict} and set(map(len, observations)) == {len(OBSERVATION_FIELDS)}:
        ok = np.ones(n, dtype=bool)
    else:  # find the observations that are not objects of as many keys as there are fields
        ok = np.fromiter(map(is_, map(type, observations), repeat(dict)), dtype=bool, count=n)
        if not ok.all():
            observations = [o if good else _EMPTY for o, good in zip(observations, ok.tolist(), strict=True)]
        ok &= np.fromiter(map(len, observations), dtype=np.intp, count=n) == len(OBSERVATION_FIELDS)

    x = np.empty((n, len(COLUMNS)), dtype=np.float64)
    try:
        readings = list(map(_READINGS, observations))
    except KeyError:  # a reading is missing somewhere: None in its place fails below
        readings = [tuple(map(o.get, NUMERIC_FIELDS)) for o in observations]
    values, good = _numbers(list(chain.from_iterable(readings)))
    values = values.reshape(n, len(NUMERIC_FIELDS))
    x[:, : len(NUMERIC_FIELDS)] = values
    # NaN fails both bounds; with finite bounds so do infinities
    ok &= (good.reshape(values.shape) & (values >= fast.low) & (values <= fast.high)).all(axis=1)
    letters = _column(observations, "consciousness")
    if set(map(type, letters)) == {str}:
        codes = np.fromiter(map(fast.codes.get, letters, repeat(-1)), dtype=np.float64, count=n)
    else:
        codes = np.fromiter((fast.codes.get(v, -1) if type(v) is str else -1 for v in letters), np.float64, n)
    ok &= codes >= 0
    x[:, 5] = codes
    oxygen = _column(observations, "supplemental_oxygen")
    if set(map(type, oxygen)) == {bool}:
        x[:, 6] = np.fromiter(oxygen, dtype=np.float64, count=n)
    else:
        ok &= np.fromiter(map(is_, map(type, oxygen), repeat(bool)), dtype=bool, count=n)
        x[:, 6] = np.fromiter((v is True for v in oxygen), dtype=np.float64, count=n)
    seconds, aware, good = parse_times(_column(observations, "time"))
    ok &= good

    first = np.zeros(n, dtype=bool)
    first[starts] = True
    step = np.diff(seconds)
    later = np.ones(n, dtype=bool)
    later[1:] = (step > 0) | first[1:]  # strictly ascending within each sequence
    ok &= later
    passed = np.logical_and.reduceat(ok, starts)
    passed &= np.logical_and.reduceat(aware, starts) | ~np.logical_or.reduceat(aware, starts)  # one kind
    # hours since the previous observation, as encode() computes them: seconds / 3600, capped
    dt = np.zeros(n, dtype=np.float64)
    dt[1:] = np.clip(step / 3600.0, 0.0, DT_CAP_HOURS)
    dt[first] = 0.0
    x[:, 7] = dt
    keep = np.flatnonzero(passed)
    kept_lengths = lengths[keep]
    kept_starts = np.zeros(len(keep), dtype=np.intp)
    np.cumsum(kept_lengths[:-1], out=kept_starts[1:])
    rows = x if len(keep) == len(picked) else x[np.repeat(passed, lengths)]
    return Validated(
        index=[picked[k] for k in keep.tolist()],
        x=rows.astype(np.float32),
        starts=kept_starts.tolist(),
        lengths=kept_lengths.tolist(),
    )
