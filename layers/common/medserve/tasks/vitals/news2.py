"""NEWS2, the Royal College of Physicians National Early Warning Score 2 (2017).

Only SpO2 scale 1 is implemented (scale 2, for patients with hypercapnic respiratory
failure, needs a clinical decision this API does not carry).

Rounding between chart bands
----------------------------
The chart is defined on values as they are *recorded*: whole numbers for respiration
rate, SpO2, systolic blood pressure and pulse, one decimal place for temperature. A
value that falls between two bands (``respiratory_rate=20.5``, ``temperature=35.05``)
is therefore first rounded **half up** to the chart's precision (20.5 -> 21,
35.05 -> 35.1, 35.04 -> 35.0) and then scored. Rounding goes through ``Decimal`` of
the value's shortest ``repr`` so that 35.05 rounds as written, not as its binary
approximation 35.04999...

Clinical risk (RCP 2017, chart 2)
---------------------------------
Precedence: aggregate >= 7 -> ``"high"``; aggregate 5-6 -> ``"medium"``; otherwise a
score of 3 in any single parameter -> ``"low-medium"``; otherwise ``"low"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Final, TypedDict

__all__ = [
    "ACVPU",
    "COMPONENT_CODES",
    "PARAMETERS",
    "News2",
    "chart_value",
    "news2",
    "risk",
    "score_consciousness",
    "score_heart_rate",
    "score_oxygen",
    "score_respiratory_rate",
    "score_spo2_scale1",
    "score_systolic_bp",
    "score_temperature",
]

#: Levels of consciousness, ACVPU: Alert, new Confusion, Voice, Pain, Unresponsive.
ACVPU: Final[tuple[str, ...]] = ("A", "C", "V", "P", "U")

#: Component names, in the order of the RCP chart; they are the observation field names.
PARAMETERS: Final[tuple[str, ...]] = (
    "respiratory_rate",
    "spo2",
    "supplemental_oxygen",
    "systolic_bp",
    "heart_rate",
    "consciousness",
    "temperature",
)

#: SNOMED CT (UK edition) observable entities for the NEWS2 total and sub-scores.
TOTAL_CODE: Final[tuple[str, str]] = (
    "1104051000000101",
    "Royal College of Physicians National Early Warning Score 2 - total score",
)
COMPONENT_CODES: Final[dict[str, tuple[str, str]]] = {
    "respiratory_rate": ("1104301000000104", "NEWS2 - respiration rate score"),
    "spo2": ("1104311000000102", "NEWS2 - oxygen saturation scale 1 score"),
    "supplemental_oxygen": ("1104331000000105", "NEWS2 - air or oxygen score"),
    "systolic_bp": ("1104341000000101", "NEWS2 - systolic blood pressure score"),
    "heart_rate": ("1104351000000103", "NEWS2 - pulse score"),
    "consciousness": ("1104361000000100", "NEWS2 - consciousness score"),
    "temperature": ("1104371000000107", "NEWS2 - temperature score"),
}


class News2(TypedDict):
    """The ``news2`` object of a vitals response."""

    score: int
    risk: str
    components: dict[str, int]


def chart_value(value: float, decimals: int = 0) -> Decimal:
    """Round a recorded value half up to the chart's precision.

    Parameters
    ----------
    value
        The observed value.
    decimals
        Decimal places the chart uses (0 for RR, SpO2, SBP, pulse; 1 for temperature).

    Returns
    -------
    Decimal
        The value as the chart reads it.
    """
    quantum = Decimal(1).scaleb(-decimals)
    return Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP)


def _band(value: float, bands: tuple[tuple[str, int], ...], above: int, decimals: int = 0) -> int:
    """The points of the first band whose inclusive upper edge holds the chart value, else ``above``."""
    v = chart_value(value, decimals)
    return next((points for upper, points in bands if v <= Decimal(upper)), above)


@lru_cache(maxsize=4096)  # one chart lookup per recorded value
def score_respiratory_rate(value: float) -> int:
    """Respiration rate (breaths/min): <=8:3, 9-11:1, 12-20:0, 21-24:2, >=25:3."""
    return _band(value, (("8", 3), ("11", 1), ("20", 0), ("24", 2)), 3)


@lru_cache(maxsize=4096)  # one chart lookup per recorded value
def score_spo2_scale1(value: float) -> int:
    """SpO2 scale 1 (%): <=91:3, 92-93:2, 94-95:1, >=96:0."""
    return _band(value, (("91", 3), ("93", 2), ("95", 1)), 0)


def score_oxygen(on_oxygen: bool) -> int:
    """Air or oxygen: oxygen 2, air 0."""
    return 2 if on_oxygen else 0


@lru_cache(maxsize=4096)  # one chart lookup per recorded value
def score_systolic_bp(value: float) -> int:
    """Systolic blood pressure (mmHg): <=90:3, 91-100:2, 101-110:1, 111-219:0, >=220:3."""
    return _band(value, (("90", 3), ("100", 2), ("110", 1), ("219", 0)), 3)


@lru_cache(maxsize=4096)  # one chart lookup per recorded value
def score_heart_rate(value: float) -> int:
    """Pulse (beats/min): <=40:3, 41-50:1, 51-90:0, 91-110:1, 111-130:2, >=131:3."""
    return _band(value, (("40", 3), ("50", 1), ("90", 0), ("110", 1), ("130", 2)), 3)


def score_consciousness(level: str) -> int:
    """Consciousness (ACVPU): Alert 0; new Confusion, Voice, Pain, Unresponsive 3."""
    if level not in ACVPU:
        raise ValueError(f"consciousness must be one of {', '.join(ACVPU)}")
    return 0 if level == "A" else 3


@lru_cache(maxsize=4096)  # one chart lookup per recorded value
def score_temperature(value: float) -> int:
    """Temperature (degC, one decimal): <=35.0:3, 35.1-36.0:1, 36.1-38.0:0, 38.1-39.0:1, >=39.1:2."""
    return _band(value, (("35.0", 3), ("36.0", 1), ("38.0", 0), ("39.0", 1)), 2, decimals=1)


def risk(score: int, components: Mapping[str, int]) -> str:
    """Clinical risk from the aggregate score and the single-parameter scores.

    Parameters
    ----------
    score
        Aggregate NEWS2 score.
    components
        Points per parameter.

    Returns
    -------
    str
        ``"high"`` (>=7), ``"medium"`` (5-6), ``"low-medium"`` (any single 3), else ``"low"``.
    """
    if score >= 7:
        return "high"
    if score >= 5:
        return "medium"
    if 3 in components.values():
        return "low-medium"
    return "low"


def news2(observation: Mapping[str, object]) -> News2:
    """Score one (already validated) observation.

    Parameters
    ----------
    observation
        Mapping with the seven NEWS2 fields named as in :data:`PARAMETERS`.

    Returns
    -------
    News2
        ``{"score", "risk", "components": {parameter: points}}``.
    """
    o = observation
    score, level, points = _chart(
        float(o["respiratory_rate"]),  # type: ignore[arg-type]
        float(o["spo2"]),  # type: ignore[arg-type]
        bool(o["supplemental_oxygen"]),
        float(o["systolic_bp"]),  # type: ignore[arg-type]
        float(o["heart_rate"]),  # type: ignore[arg-type]
        str(o["consciousness"]),
        float(o["temperature"]),  # type: ignore[arg-type]
    )
    return {"score": score, "risk": level, "components": dict(zip(PARAMETERS, points, strict=True))}


@lru_cache(maxsize=4096)  # one chart reading per distinct observation (a new dict is built per call)
def _chart(
    respiratory_rate: float,
    spo2: float,
    supplemental_oxygen: bool,
    systolic_bp: float,
    heart_rate: float,
    consciousness: str,
    temperature: float,
) -> tuple[int, str, tuple[int, ...]]:
    """``(score, risk, points in PARAMETERS order)`` of one observation."""
    components = {
        "respiratory_rate": score_respiratory_rate(respiratory_rate),
        "spo2": score_spo2_scale1(spo2),
        "supplemental_oxygen": score_oxygen(supplemental_oxygen),
        "systolic_bp": score_systolic_bp(systolic_bp),
        "heart_rate": score_heart_rate(heart_rate),
        "consciousness": score_consciousness(consciousness),
        "temperature": score_temperature(temperature),
    }
    total = sum(components.values())
    return total, risk(total, components), tuple(components.values())
