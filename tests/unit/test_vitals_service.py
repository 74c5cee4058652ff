"""The vitals library without the handler: encoding, windows, warnings, FHIR times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from medserve.registry import Registry
from medserve.tasks.vitals import features, service
from medserve.tasks.vitals import fhir as vitals_fhir
from medserve.tasks.vitals.validation import validate_request
from tests.builders import observation
from tests.conftest import MODELS

ENTRY = Registry.load(MODELS, task="vitals").get("vitals-deterioration", task="vitals")


def obs(t: datetime, **changes: object) -> dict[str, object]:
    return observation(t, **changes)


T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)


@pytest.mark.parametrize(("t", "n_windows", "size"), [(1, 1, 1), (12, 12, 1), (24, 24, 1), (25, 13, 2), (500, 24, 21)])
def test_windows_cover_the_sequence_in_order_without_overlap(t: int, n_windows: int, size: int) -> None:
    wins = service.windows(t)
    assert len(wins) == n_windows
    assert wins[0][0] == 0
    assert wins[-1][1] == t
    assert all(e == s2 for (_, e), (s2, _) in zip(wins, wins[1:], strict=False))
    assert all(e - s == size for s, e in wins[:-1])


def test_encode_columns_and_time_deltas() -> None:
    o = [
        obs(T0),
        obs(T0 + timedelta(minutes=90), consciousness="P", supplemental_oxygen=True),
        obs(T0 + timedelta(days=3)),
    ]
    req = validate_request({"observations": o})
    x = features.encode(req.observations, req.times)
    assert x.dtype == np.float32
    assert x.shape == (3, len(features.COLUMNS))
    assert x[:, 7].tolist() == [0.0, 1.5, features.DT_CAP_HOURS]  # capped at 24 h
    assert x[1, 5] == 3  # P
    assert x[1, 6] == 1.0
    assert x[0, :5].tolist() == pytest.approx([80, 16, 97, 36.9, 125])


def test_pad_batch_right_pads_with_a_zero_mask() -> None:
    a, b = np.ones((3, 8), np.float32), np.full((1, 8), 2, np.float32)
    x, m = features.pad_batch([a, b])
    assert x.shape == (2, 3, 8)
    assert m.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert (x[1, 1:] == 0).all()


def test_values_outside_the_training_range_are_warned_about_by_name_only() -> None:
    req = validate_request({"observations": [obs(T0, heart_rate=290, spo2=99)]})
    result = service.predict(ENTRY, req)
    [warning] = result["warnings"]
    assert "heart_rate" in warning
    assert "spo2" not in warning
    assert "290" not in warning


def test_no_warnings_key_for_an_ordinary_request() -> None:
    req = validate_request({"observations": [obs(T0), obs(T0 + timedelta(hours=4))]})
    assert "warnings" not in service.predict(ENTRY, req)


def test_fhir_times_of_naive_and_offset_requests_are_utc_instants() -> None:
    naive = validate_request({"observations": [obs(T0, time="2026-11-23T08:00:00")]})
    offset = validate_request({"observations": [obs(T0, time="2026-11-23T09:00:00+01:00")]})
    for req in (naive, offset):
        bundle = vitals_fhir.bundle(ENTRY, req, service.predict(ENTRY, req), "rid")
        ra = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
        assert datetime.fromisoformat(ra["occurrenceDateTime"]) == T0
        assert ra["occurrenceDateTime"].endswith(("Z", "+01:00"))
