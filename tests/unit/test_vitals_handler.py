"""VitalsFunction fed real-shaped API Gateway events (Given/When/Then)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from medserve.tasks.vitals.news2 import news2
from tests.conftest import invoke, live_folder, load_event, with_body

EVENT = load_event("vitals_predict")
EXPLAIN = load_event("vitals_predict_explain")
FHIR = load_event("vitals_predict_fhir")
INVALID = load_event("vitals_predict_invalid")
FOLDER = live_folder("vitals-deterioration")
MANIFEST = json.loads((FOLDER / "manifest.json").read_text())
ACVPU = "ACVPU"


def observations(event: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(event["body"])["observations"]


def sequence(n: int, start: str = "2026-11-20T00:00:00+00:00") -> list[dict[str, Any]]:
    """``n`` plausible observations, 30-90 min apart, slowly worsening."""
    rng = np.random.default_rng(n)
    t = datetime.fromisoformat(start)
    out = []
    for i in range(n):
        s = i / max(1, n - 1)
        out.append(
            {
                "time": t.isoformat(),
                "heart_rate": round(float(80 + 30 * s + rng.normal(0, 4))),
                "respiratory_rate": round(float(16 + 8 * s + rng.normal(0, 1))),
                "spo2": round(float(min(100, 97 - 4 * s + rng.normal(0, 1)))),
                "temperature": round(float(36.8 + 1.2 * s + rng.normal(0, 0.2)), 1),
                "systolic_bp": round(float(125 - 25 * s + rng.normal(0, 6))),
                "consciousness": "A",
                "supplemental_oxygen": bool(s > 0.7),
            }
        )
        t += timedelta(minutes=int(rng.integers(30, 91)))
    return out


def raw_probability(batch: np.ndarray) -> np.ndarray:
    """The ONNX file run directly, no MedServe code."""
    sess = ort.InferenceSession(str(FOLDER / MANIFEST["onnx"]["file"]), providers=["CPUExecutionProvider"])
    mask = np.ones(batch.shape[:2], dtype=np.float32)
    return sess.run(["probability"], {"observations": batch, "mask": mask})[0].reshape(-1)


def encode_independently(obs: list[dict[str, Any]]) -> np.ndarray:
    """Encode by the column list in the manifest (written out here, not via medserve)."""
    assert MANIFEST["vitals"]["columns"] == [
        "heart_rate", "respiratory_rate", "spo2", "temperature", "systolic_bp",
        "consciousness", "supplemental_oxygen", "dt_hours",
    ]  # fmt: skip
    rows, prev = [], None
    for o in obs:
        t = datetime.fromisoformat(o["time"])
        dt = 0.0 if prev is None else min(24.0, (t - prev).total_seconds() / 3600)
        prev = t
        rows.append(
            [o["heart_rate"], o["respiratory_rate"], o["spo2"], o["temperature"], o["systolic_bp"],
             ACVPU.index(o["consciousness"]), float(o["supplemental_oxygen"]), dt]
        )  # fmt: skip
    return np.asarray(rows, dtype=np.float32)[None]


def test_predict_answers_the_contract() -> None:
    # Given a 12-observation sequence, When it is posted, Then the response is the contract's shape
    status, headers, body = invoke("vitals", EVENT)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert set(body) == {"model", "request_id", "prediction", "news2", "warnings"}
    assert body["model"] == {
        "id": "vitals-deterioration",
        "version": MANIFEST["version"],
        "task": "vitals",
        "sha256": MANIFEST["onnx"]["sha256"],
        "synthetic": True,
        "intended_use": MANIFEST["intended_use"],
    }
    assert body["request_id"] == EVENT["requestContext"]["requestId"]
    assert any("SYNTHETIC" in w for w in body["warnings"])
    pred = body["prediction"]
    assert set(pred) == {"probability", "label", "horizon_hours"}
    assert pred["horizon_hours"] == MANIFEST["vitals"]["horizon_hours"] == 24
    assert 0.0 <= pred["probability"] <= 1.0
    threshold = MANIFEST["outputs"]["threshold"]
    assert pred["label"] == ("deterioration" if pred["probability"] >= threshold else "no_deterioration")


def test_news2_is_that_of_the_last_observation() -> None:
    _, _, body = invoke("vitals", EVENT)
    last = observations(EVENT)[-1]
    assert body["news2"] == news2(last)
    # the event's last row: RR 25 (3), SpO2 92 (2), O2 (2), SBP 98 (2), HR 112 (2), C (3), 38.5 (1)
    assert body["news2"]["score"] == 15
    assert body["news2"]["risk"] == "high"


def test_probability_equals_raw_onnx_runtime_on_the_same_arrays() -> None:
    _, _, body = invoke("vitals", EVENT)
    expected = raw_probability(encode_independently(observations(EVENT)))[0]
    assert body["prediction"]["probability"] == pytest.approx(float(expected), abs=1e-6)


def test_worsening_sequence_scores_higher_than_a_stable_one() -> None:
    obs = observations(EVENT)
    stable = [dict(o, **{k: obs[0][k] for k in o if k != "time"}) for o in obs]
    _, _, worse = invoke("vitals", EVENT)
    _, _, calm = invoke("vitals", with_body(EVENT, {"observations": stable}))
    assert worse["prediction"]["probability"] > calm["prediction"]["probability"]
    assert calm["news2"]["risk"] == "low"


def test_explain_returns_ordered_windows_with_occlusion_weights() -> None:
    status, _, body = invoke("vitals", EXPLAIN)
    assert status == 200, body
    obs = observations(EXPLAIN)
    contribs = body["contributions"]
    assert len(contribs) == len(obs)  # 12 observations: one window each
    assert [c["start"] for c in contribs] == [o["time"] for o in obs]
    assert [c["end"] for c in contribs] == [o["time"] for o in obs]
    assert all(set(c) == {"start", "end", "weight"} and math.isfinite(c["weight"]) for c in contribs)
    # Window 5 replaced by observation 4 carried forward, checked on raw ONNX Runtime
    x = encode_independently(obs)
    occluded = x.copy()
    occluded[0, 5, :7] = x[0, 4, :7]
    base, p5 = raw_probability(np.concatenate([x, occluded]))
    assert contribs[5]["weight"] == pytest.approx(float(base - p5), abs=1e-5)
    # the first window has nothing before it: the observation after it is carried backward
    first = x.copy()
    first[0, 0, :7] = x[0, 1, :7]
    assert contribs[0]["weight"] == pytest.approx(float(base - raw_probability(first)[0]), abs=1e-5)


def test_explain_false_has_no_contributions() -> None:
    _, _, body = invoke("vitals", EVENT)
    assert "contributions" not in body


@pytest.mark.parametrize("n", [1, 12, 500])
def test_variable_lengths(n: int) -> None:
    obs = sequence(n)
    status, _, body = invoke("vitals", with_body(EVENT, {"observations": obs, "explain": True}))
    assert status == 200, body
    assert body["prediction"]["probability"] == pytest.approx(
        float(raw_probability(encode_independently(obs))[0]), abs=1e-6
    )
    contribs = body["contributions"]
    assert contribs[0]["start"] == obs[0]["time"]
    assert contribs[-1]["end"] == obs[-1]["time"]
    assert len(contribs) == min(n, 24)
    starts = [datetime.fromisoformat(c["start"]) for c in contribs]
    ends = [datetime.fromisoformat(c["end"]) for c in contribs]
    assert starts == sorted(starts)
    assert all(s <= e for s, e in zip(starts, ends, strict=True))
    assert all(e < s for e, s in zip(ends, starts[1:], strict=False))  # windows do not overlap
    if n > MANIFEST["training_data"]["observations_per_patient"]["max"]:
        assert any("longer than any training sequence" in w for w in body["warnings"])


def test_single_observation_explained_against_the_reference_normal() -> None:
    obs = sequence(1)
    _, _, body = invoke("vitals", with_body(EVENT, {"observations": obs, "explain": True}))
    ref = MANIFEST["vitals"]["reference_observation"]
    normal = encode_independently([dict(ref, time=obs[0]["time"])])
    base, p_ref = raw_probability(np.concatenate([encode_independently(obs), normal]))
    assert body["contributions"] == [
        {
            "start": obs[0]["time"],
            "end": obs[0]["time"],
            "weight": pytest.approx(float(base - p_ref), abs=1e-5),
        }
    ]


def test_fhir_bundle() -> None:
    status, headers, bundle = invoke("vitals", FHIR)
    assert status == 200, bundle
    assert headers["content-type"] == "application/fhir+json"
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    by_type = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
    assert set(by_type) == {"Device", "Observation", "RiskAssessment", "Provenance"}
    for e in bundle["entry"]:
        assert e["fullUrl"] == f"urn:uuid:{e['resource']['id']}"
    device, obs, ra = (by_type[k]["resource"] for k in ("Device", "Observation", "RiskAssessment"))
    assert any(MANIFEST["onnx"]["sha256"] in i["value"] for i in device["identifier"])
    _, _, plain = invoke("vitals", EVENT)
    assert obs["code"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "1104051000000101",
        "display": "Royal College of Physicians National Early Warning Score 2 - total score",
    }
    assert obs["valueQuantity"]["value"] == plain["news2"]["score"]
    assert sorted(c["valueInteger"] for c in obs["component"]) == sorted(plain["news2"]["components"].values())
    last = observations(FHIR)[-1]["time"]
    assert obs["effectiveDateTime"] == last
    assert ra["status"] == "preliminary"  # an unreviewed machine result, as for risk and imaging
    assert ra["method"]["text"].startswith("vitals-deterioration")
    assert ra["occurrenceDateTime"] == last
    assert ra["basis"] == [{"reference": by_type["Observation"]["fullUrl"]}]
    assert ra["performer"]["reference"] == by_type["Device"]["fullUrl"]
    p = ra["prediction"][0]
    assert p["probabilityDecimal"] == plain["prediction"]["probability"]
    assert p["whenRange"]["low"]["value"] == 0
    assert p["whenRange"]["high"] == {
        "value": 24,
        "unit": "h",
        "system": "http://unitsofmeasure.org",
        "code": "h",
    }
    assert "deterioration" in p["outcome"]["text"]


def test_invalid_event_reports_every_violation() -> None:
    status, headers, body = invoke("vitals", INVALID)
    assert status == 422
    assert headers["content-type"] == "application/problem+json"
    assert body["status"] == 422
    assert body["request_id"] == INVALID["requestContext"]["requestId"]
    assert [e["field"] for e in body["errors"]] == [
        "observations[1].spo2",
        "observations[2].supplemental_oxygen",
        "observations[3].time",
        "observations[3].consciousness",
    ]


def _ok_obs(**changes: Any) -> dict[str, Any]:
    return dict(observations(EVENT)[0], **changes)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ("{not json", 400, "body"),
        ("", 400, "body"),
        ("[1, 2]", 422, "body"),
        ({"observations": []}, 422, "observations"),
        ({"observations": [_ok_obs()] * 501}, 422, "observations"),
        ({"instances": [_ok_obs()]}, 422, "instances"),
        ({"observations": [_ok_obs()], "explain": "true"}, 422, "explain"),
        ({"observations": [_ok_obs()], "explain": 1}, 422, "explain"),
        ({"observations": [_ok_obs(spo2=101)]}, 422, "observations[0].spo2"),
        ({"observations": [_ok_obs(temperature=50)]}, 422, "observations[0].temperature"),
        ({"observations": [_ok_obs(heart_rate=True)]}, 422, "observations[0].heart_rate"),
        ({"observations": [_ok_obs(heart_rate="90")]}, 422, "observations[0].heart_rate"),
        ({"observations": [_ok_obs(supplemental_oxygen=1)]}, 422, "observations[0].supplemental_oxygen"),
        ({"observations": [_ok_obs(consciousness="alert")]}, 422, "observations[0].consciousness"),
        ({"observations": [_ok_obs(time="23/11/2026 08:00")]}, 422, "observations[0].time"),
        ({"observations": [_ok_obs(), _ok_obs()]}, 422, "observations[1].time"),
        ({"observations": [_ok_obs(gcs=15)]}, 422, "observations[0].gcs"),
        (
            {"observations": [{k: v for k, v in _ok_obs().items() if k != "spo2"}]},
            422,
            "observations[0].spo2",
        ),
        (json.dumps({"observations": [_ok_obs(heart_rate=float("nan"))]}), 422, "observations[0].heart_rate"),
        # a key given twice is refused, not last-one-wins
        (f'{{"observations": [{json.dumps(_ok_obs())[:-1]}, "heart_rate": 80}}]}}', 422, "observations[0].heart_rate"),
    ],
)
def test_bad_input_is_a_4xx_problem_naming_the_field(body: Any, status: int, field: str) -> None:
    got, headers, problem = invoke("vitals", with_body(EVENT, body))
    assert got == status, problem
    assert headers["content-type"] == "application/problem+json"
    assert problem["status"] == status
    assert field in [e["field"] for e in problem["errors"]]


def test_unknown_model_wrong_task_method_and_media_type() -> None:
    unknown = with_body(EVENT, json.loads(EVENT["body"]))
    unknown["path"] = "/v1/vitals/nope/predict"
    unknown["pathParameters"] = {"model_id": "nope"}
    assert invoke("vitals", unknown)[0] == 404
    other_task = dict(unknown, path="/v1/vitals/breast-cancer/predict", pathParameters={"model_id": "breast-cancer"})
    assert invoke("vitals", other_task)[0] == 404
    get = dict(EVENT, httpMethod="GET", body=None)
    status, headers, _ = invoke("vitals", get)
    assert status == 405
    assert "POST" in headers["allow"]
    xml = with_body(EVENT, "<a/>", Content_Type="application/xml")
    assert invoke("vitals", xml)[0] == 415


def test_same_request_same_answer() -> None:
    a = invoke("vitals", EXPLAIN)[2]
    b = invoke("vitals", EXPLAIN)[2]
    assert a["prediction"] == b["prediction"]
    assert a["contributions"] == b["contributions"]
