"""Vitals request validation: every violation reported, each naming its field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from medserve.problems import Problem
from medserve.tasks.vitals.validation import parse_time, validate_request
from tests.builders import observation


def obs(hour: int = 8, **changes: Any) -> dict[str, Any]:
    return observation(hour, **changes)


def errors_of(body: Any) -> list[dict[str, str]]:
    with pytest.raises(Problem) as info:
        validate_request(body)
    assert info.value.status == 422
    return info.value.errors


def fields_of(body: Any) -> list[str]:
    return [e["field"] for e in errors_of(body)]


def test_valid_request_parses_times_and_defaults_explain_to_false() -> None:
    req = validate_request({"observations": [obs(8), obs(9, heart_rate=91.5)]})
    assert req.explain is False
    assert [t.hour for t in req.times] == [8, 9]
    assert all(t.tzinfo is not None for t in req.times)
    assert req.observations[1]["heart_rate"] == 91.5


def test_naive_times_are_accepted_and_taken_as_utc() -> None:
    req = validate_request({"observations": [obs(time="2026-11-23T08:00:00"), obs(time="2026-11-23T09:30:00")]})
    assert req.times[0] == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def test_offsets_compare_as_instants() -> None:
    # 09:30+02:00 is 07:30Z: before 08:00Z
    body = {"observations": [obs(time="2026-11-23T08:00:00Z"), obs(time="2026-11-23T09:30:00+02:00")]}
    assert fields_of(body) == ["observations[1].time"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("spo2", 100.1),
        ("spo2", -1),
        ("temperature", 24.9),
        ("temperature", 45.1),
        ("heart_rate", 301),
        ("respiratory_rate", 81),
        ("systolic_bp", 300.5),
        ("heart_rate", True),  # a boolean is not a number
        ("heart_rate", "80"),  # nor is a string
        ("heart_rate", None),
        ("heart_rate", float("nan")),
        ("temperature", float("inf")),
        ("heart_rate", 10**400),  # an integer too large for a float
        ("consciousness", "a"),
        ("consciousness", "X"),
        ("consciousness", 0),
        ("supplemental_oxygen", 1),
        ("supplemental_oxygen", 0),
        ("supplemental_oxygen", "true"),
        ("time", "2026-11-23"),  # no time of day
        ("time", "yesterday"),
        ("time", 1795405200),
    ],
)
def test_each_bad_value_names_its_index_and_field(field: str, value: Any) -> None:
    body = {"observations": [obs(6), obs(7), obs(8, **{field: value})]}
    errs = errors_of(body)
    assert [e["field"] for e in errs] == [f"observations[2].{field}"]
    assert "must" in errs[0]["message"]
    assert repr(value) not in errs[0]["message"] or isinstance(value, bool)  # rule, not the value


def test_range_boundaries_are_inclusive() -> None:
    body = {"observations": [obs(6, spo2=0, temperature=25, heart_rate=0), obs(7, spo2=100, temperature=45)]}
    assert len(validate_request(body).observations) == 2


def test_all_violations_are_reported_in_order() -> None:
    body = {
        "observations": [
            obs(8, spo2=101),
            obs(9, supplemental_oxygen="true", consciousness="X"),
            obs(7),  # out of order
            {k: v for k, v in obs(10).items() if k != "heart_rate"} | {"pulse": 80},
            "not an object",
        ],
        "explain": "yes",
        "extra": 1,
    }
    assert fields_of(body) == [
        "explain",
        "extra",
        "observations[0].spo2",
        "observations[1].consciousness",
        "observations[1].supplemental_oxygen",
        "observations[2].time",
        "observations[3].heart_rate",
        "observations[3].pulse",
        "observations[4]",
    ]


def test_missing_and_unknown_keys() -> None:
    o = obs()
    del o["spo2"]
    o["oxygen_flow"] = 2
    errs = errors_of({"observations": [o]})
    assert {(e["field"], e["message"]) for e in errs} == {
        ("observations[0].spo2", "required field is missing"),
        ("observations[0].oxygen_flow", "unknown field"),
    }


def test_times_must_be_strictly_ascending() -> None:
    assert fields_of({"observations": [obs(8), obs(8)]}) == ["observations[1].time"]
    assert fields_of({"observations": [obs(8), obs(9), obs(7), obs(10)]}) == ["observations[2].time"]


def test_mixing_naive_and_offset_times_is_an_error() -> None:
    body = {"observations": [obs(8), obs(time="2026-11-23T09:00:00"), obs(10)]}
    errs = errors_of(body)
    assert [e["field"] for e in errs] == ["observations[1].time"]
    assert "offset" in errs[0]["message"]


@pytest.mark.parametrize("n", [0, 501])
def test_observation_count_outside_1_to_500_names_observations(n: int) -> None:
    body = {"observations": [obs(8) for _ in range(n)]}  # 501 identical times: items are not inspected
    errs = errors_of(body)
    assert errs == [{"field": "observations", "message": "must hold 1 to 500 observations"}]


@pytest.mark.parametrize("body", [{}, {"explain": True}])
def test_missing_observations(body: dict[str, Any]) -> None:
    assert fields_of(body) == ["observations"]


@pytest.mark.parametrize("value", [None, {"time": "x"}, "[]", 3])
def test_observations_must_be_an_array(value: Any) -> None:
    assert fields_of({"observations": value}) == ["observations"]


@pytest.mark.parametrize("value", [1, 0, "true", None])
def test_explain_must_be_boolean(value: Any) -> None:
    assert fields_of({"observations": [obs()], "explain": value}) == ["explain"]


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_body_not_an_object(body: Any) -> None:
    assert fields_of(body) == ["body"]


def test_validation_does_not_modify_the_body() -> None:
    body = {"observations": [obs(8), obs(9)], "explain": True}
    before = copy.deepcopy(body)
    validate_request(body)
    assert body == before


def test_parse_time_requires_a_time_of_day() -> None:
    assert parse_time("2026-11-23T08:00Z").minute == 0
    with pytest.raises(ValueError, match="time of day"):
        parse_time("2026-11-23")
