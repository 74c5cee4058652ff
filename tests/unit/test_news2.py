"""NEWS2 (RCP 2017, SpO2 scale 1): every band edge of the chart, both sides, and every risk."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from medserve.tasks.vitals import news2 as n2

NORMAL = {
    "respiratory_rate": 16,
    "spo2": 97,
    "supplemental_oxygen": False,
    "systolic_bp": 120,
    "heart_rate": 70,
    "consciousness": "A",
    "temperature": 37.0,
}

# (scorer, value, points): the last value of each band and the first of the next.
EDGES: list[tuple[Callable[[float], int], float, int]] = [
    # respiration rate: <=8:3, 9-11:1, 12-20:0, 21-24:2, >=25:3
    (n2.score_respiratory_rate, 0, 3),
    (n2.score_respiratory_rate, 8, 3),
    (n2.score_respiratory_rate, 9, 1),
    (n2.score_respiratory_rate, 11, 1),
    (n2.score_respiratory_rate, 12, 0),
    (n2.score_respiratory_rate, 20, 0),
    (n2.score_respiratory_rate, 21, 2),
    (n2.score_respiratory_rate, 24, 2),
    (n2.score_respiratory_rate, 25, 3),
    (n2.score_respiratory_rate, 60, 3),
    # SpO2 scale 1: <=91:3, 92-93:2, 94-95:1, >=96:0
    (n2.score_spo2_scale1, 50, 3),
    (n2.score_spo2_scale1, 91, 3),
    (n2.score_spo2_scale1, 92, 2),
    (n2.score_spo2_scale1, 93, 2),
    (n2.score_spo2_scale1, 94, 1),
    (n2.score_spo2_scale1, 95, 1),
    (n2.score_spo2_scale1, 96, 0),
    (n2.score_spo2_scale1, 100, 0),
    # systolic: <=90:3, 91-100:2, 101-110:1, 111-219:0, >=220:3
    (n2.score_systolic_bp, 60, 3),
    (n2.score_systolic_bp, 90, 3),
    (n2.score_systolic_bp, 91, 2),
    (n2.score_systolic_bp, 100, 2),
    (n2.score_systolic_bp, 101, 1),
    (n2.score_systolic_bp, 110, 1),
    (n2.score_systolic_bp, 111, 0),
    (n2.score_systolic_bp, 219, 0),
    (n2.score_systolic_bp, 220, 3),
    (n2.score_systolic_bp, 260, 3),
    # pulse: <=40:3, 41-50:1, 51-90:0, 91-110:1, 111-130:2, >=131:3
    (n2.score_heart_rate, 30, 3),
    (n2.score_heart_rate, 40, 3),
    (n2.score_heart_rate, 41, 1),
    (n2.score_heart_rate, 50, 1),
    (n2.score_heart_rate, 51, 0),
    (n2.score_heart_rate, 90, 0),
    (n2.score_heart_rate, 91, 1),
    (n2.score_heart_rate, 110, 1),
    (n2.score_heart_rate, 111, 2),
    (n2.score_heart_rate, 130, 2),
    (n2.score_heart_rate, 131, 3),
    (n2.score_heart_rate, 180, 3),
    # temperature: <=35.0:3, 35.1-36.0:1, 36.1-38.0:0, 38.1-39.0:1, >=39.1:2
    (n2.score_temperature, 33.0, 3),
    (n2.score_temperature, 35.0, 3),
    (n2.score_temperature, 35.1, 1),
    (n2.score_temperature, 36.0, 1),
    (n2.score_temperature, 36.1, 0),
    (n2.score_temperature, 38.0, 0),
    (n2.score_temperature, 38.1, 1),
    (n2.score_temperature, 39.0, 1),
    (n2.score_temperature, 39.1, 2),
    (n2.score_temperature, 41.0, 2),
]


@pytest.mark.parametrize(("scorer", "value", "points"), EDGES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_band_edge_of_the_chart(scorer: Callable[[float], int], value: float, points: int) -> None:
    assert scorer(value) == points


@pytest.mark.parametrize(
    ("scorer", "value", "points"),
    [
        # between recorded values: round half up to the chart's precision first
        (n2.score_respiratory_rate, 20.4, 0),
        (n2.score_respiratory_rate, 20.5, 2),
        (n2.score_respiratory_rate, 8.5, 1),
        (n2.score_spo2_scale1, 91.5, 2),
        (n2.score_spo2_scale1, 95.49, 1),
        (n2.score_spo2_scale1, 95.5, 0),
        (n2.score_systolic_bp, 90.5, 2),
        (n2.score_systolic_bp, 219.5, 3),
        (n2.score_heart_rate, 40.5, 1),
        (n2.score_heart_rate, 90.49, 0),
        (n2.score_heart_rate, 130.5, 3),
        (n2.score_temperature, 35.04, 3),
        (n2.score_temperature, 35.05, 1),  # 35.05 as written, not its binary 35.04999...
        (n2.score_temperature, 38.05, 1),
        (n2.score_temperature, 39.04, 1),
        (n2.score_temperature, 39.05, 2),
    ],
)
def test_values_between_bands_round_half_up_to_chart_precision(
    scorer: Callable[[float], int], value: float, points: int
) -> None:
    assert scorer(value) == points


def test_oxygen_and_consciousness() -> None:
    assert n2.score_oxygen(True) == 2
    assert n2.score_oxygen(False) == 0
    assert n2.score_consciousness("A") == 0
    for level in "CVPU":
        assert n2.score_consciousness(level) == 3
    with pytest.raises(ValueError, match="ACVPU|one of"):
        n2.score_consciousness("X")


def test_all_normal_is_zero_and_low() -> None:
    result = n2.news2(NORMAL)
    assert result == {"score": 0, "risk": "low", "components": dict.fromkeys(n2.PARAMETERS, 0)}


@pytest.mark.parametrize(
    ("changes", "score", "risk"),
    [
        ({"heart_rate": 95, "temperature": 38.5}, 2, "low"),  # 1 + 1
        ({"supplemental_oxygen": True, "spo2": 95, "heart_rate": 95}, 4, "low"),  # 2+1+1: top of low
        ({"consciousness": "C"}, 3, "low-medium"),  # new confusion alone: a single 3
        ({"respiratory_rate": 26, "heart_rate": 95}, 4, "low-medium"),  # single 3 with aggregate 4
        ({"respiratory_rate": 22, "heart_rate": 115, "temperature": 38.5}, 5, "medium"),  # 2+2+1
        ({"spo2": 91, "supplemental_oxygen": True, "heart_rate": 95}, 6, "medium"),  # 3+2+1, single 3
        ({"respiratory_rate": 25, "spo2": 93, "systolic_bp": 95}, 7, "high"),  # 3+2+2
        (
            {
                "respiratory_rate": 30,
                "spo2": 85,
                "supplemental_oxygen": True,
                "systolic_bp": 80,
                "heart_rate": 140,
                "consciousness": "U",
                "temperature": 34.0,
            },
            20,
            "high",
        ),
    ],
)
def test_aggregate_and_every_risk_category(changes: dict[str, object], score: int, risk: str) -> None:
    result = n2.news2({**NORMAL, **changes})
    assert result["score"] == score
    assert result["score"] == sum(result["components"].values())
    assert result["risk"] == risk
    for name in changes:
        assert result["components"][name] > 0


def test_risk_precedence() -> None:
    single_three = {"respiratory_rate": 3}
    assert n2.risk(3, single_three) == "low-medium"
    assert n2.risk(5, single_three) == "medium"  # aggregate outranks a single 3
    assert n2.risk(7, single_three) == "high"
    assert n2.risk(4, {"heart_rate": 2, "spo2": 2}) == "low"


def test_components_are_keyed_by_observation_field_names_in_chart_order() -> None:
    assert list(n2.news2(NORMAL)["components"]) == list(n2.PARAMETERS)
    assert set(n2.COMPONENT_CODES) == set(n2.PARAMETERS)
