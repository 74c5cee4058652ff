"""Shadow scoring (issue 11, item 5): a candidate scores a sample of live requests; only agreement leaves.

The handlers are built as the functions build them (``task_app`` on the functions' own
registries) with the two environment variables the template sets; the metrics are read
from the Embedded Metric Format lines Powertools prints, as CloudWatch would.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pytest

from medserve import tasks
from medserve.api import lambda_entry, task_app
from medserve.shadow import SAMPLE_ENV, SHADOW_ENV, Shadow, agreement
from tests.conftest import MODELS, FakeContext, live_folder, load_event, load_handler, with_body


def _handler(task: str, monkeypatch: pytest.MonkeyPatch, shadow: str, rate: str) -> Any:
    monkeypatch.setenv(SHADOW_ENV, shadow)
    monkeypatch.setenv(SAMPLE_ENV, rate)
    return lambda_entry(task_app(task, load_handler(task).REGISTRY))


def _call(handler: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def _emf(out: str) -> list[dict[str, Any]]:
    """The EMF blobs printed, metrics named ``Shadow*`` only."""
    blobs = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [b for b in blobs if any(k.startswith("Shadow") for k in b if k != "_aws")]


def _merged(blobs: list[dict[str, Any]]) -> dict[str, Any]:
    """One dict of every ``Shadow*`` metric value (each blob holds one metric, as a one-item list)."""
    out: dict[str, Any] = {}
    for b in blobs:
        for k, v in b.items():
            if k.startswith("Shadow") and k != "ShadowVersion":
                assert k not in out, k
                out[k] = v[0] if isinstance(v, list) else v
            elif k in ("ModelId", "ShadowVersion"):
                out[k] = v
    return out


def _strip(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


def test_a_sampled_vitals_request_is_scored_by_the_shadow_and_answered_by_the_live_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    event = load_event("vitals_predict")
    plain = _handler("vitals", monkeypatch, "", "0")
    shadowed = _handler("vitals", monkeypatch, "vitals-deterioration@2.0.0", "1")
    pinned_v2 = _call(plain, {**event, "queryStringParameters": {"version": "2.0.0"}})[1]
    capsys.readouterr()
    # When the live version answers with a shadow configured at a 100% sample
    status, body = _call(shadowed, event)
    out = capsys.readouterr().out
    # Then the answer is the live version's, exactly as without a shadow
    assert status == 200
    assert body["model"]["version"] == "1.0.0"
    assert _strip(body) == _strip(_call(plain, event)[1])
    # And EMF blobs carry the agreement with 2.0.0, per model and shadow version, and nothing else
    blobs = _emf(out)
    assert sorted(k for b in blobs for k in b if k.startswith("Shadow") and k != "ShadowVersion") == [
        "ShadowAgreement",
        "ShadowScoreDelta",
    ]
    for b in blobs:
        assert (b["ModelId"], b["ShadowVersion"]) == ("vitals-deterioration", "2.0.0")
        assert b["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["ModelId", "ShadowVersion", "service"]]
        assert set(b) - {"_aws", "ModelId", "ShadowVersion", "service"} <= {"ShadowAgreement", "ShadowScoreDelta"}
    blob = _merged(blobs)
    # whose values are those of the two versions' own answers to the same request
    live_p, v2_p = body["prediction"]["probability"], pinned_v2["prediction"]["probability"]
    assert blob["ShadowScoreDelta"] == pytest.approx(abs(live_p - v2_p), abs=1e-6)
    assert blob["ShadowAgreement"] == float(body["prediction"]["label"] == pinned_v2["prediction"]["label"])


def test_a_risk_request_of_many_instances_reports_the_share_of_agreeing_labels(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 40 real held-out WDBC cases (the locked test split), benign and malignant
    names = [f["name"] for f in json.loads((live_folder("breast-cancer") / "manifest.json").read_text())["inputs"]]
    with np.load(MODELS / "breast-cancer" / "locked_test.npz") as z:
        rows, y = z["in:features"][:40].tolist(), z["y"][:40]
    assert 0 < y.sum() < len(y)
    event = with_body(load_event("risk_breast_cancer"), {"instances": [dict(zip(names, r, strict=True)) for r in rows]})
    plain = _handler("risk", monkeypatch, "", "0")
    v11 = _call(plain, {**event, "queryStringParameters": {"version": "1.1.0"}})[1]["predictions"]
    shadowed = _handler("risk", monkeypatch, "breast-cancer@1.1.0", "1")
    capsys.readouterr()
    status, body = _call(shadowed, event)
    assert status == 200, body
    blob = _merged(_emf(capsys.readouterr().out))
    live = body["predictions"]
    agree = sum(a["label"] == b["label"] for a, b in zip(live, v11, strict=True)) / len(live)
    delta = sum(abs(a["probability"] - b["probability"]) for a, b in zip(live, v11, strict=True)) / len(live)
    assert blob["ShadowAgreement"] == pytest.approx(agree)
    assert blob["ShadowScoreDelta"] == pytest.approx(delta, abs=1e-6)
    assert blob["ModelId"] == "breast-cancer" and blob["ShadowVersion"] == "1.1.0"


@pytest.mark.parametrize(
    ("shadow", "rate", "query"),
    [
        ("vitals-deterioration@2.0.0", "0", None),  # off
        ("vitals-deterioration@2.0.0", "1", {"version": "1.0.0"}),  # a pinned request is never shadowed
        ("vitals-deterioration@2.0.0", "1", {"version": "2.0.0"}),
        ("vitals-deterioration@1.0.0", "1", None),  # the live version cannot shadow itself
        ("breast-cancer@1.1.0", "1", None),  # another model's shadow
        ("vitals-deterioration@2.0.0", "2", None),  # a malformed rate switches it off
        ("vitals-deterioration", "1", None),  # as does a malformed model list
    ],
)
def test_no_shadow_scoring_when_not_sampled_or_not_configured(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    shadow: str,
    rate: str,
    query: dict[str, str] | None,
) -> None:
    handler = _handler("vitals", monkeypatch, shadow, rate)
    capsys.readouterr()
    status, _ = _call(handler, {**load_event("vitals_predict"), "queryStringParameters": query})
    assert status == 200
    assert _emf(capsys.readouterr().out) == []


def test_a_failing_shadow_never_changes_the_answer_and_logs_no_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    event = load_event("vitals_predict")
    plain = _handler("vitals", monkeypatch, "", "0")
    expected = _strip(_call(plain, event)[1])
    # A shadow version whose model raises (a message that quotes a value, as libraries do)
    task = tasks.get("vitals")
    real_predict = task.predict

    def predict(entry: Any, parsed: list[Any]) -> list[dict[str, Any]]:
        if entry.version == "2.0.0":
            raise RuntimeError("bad value 37.2 for Jane")
        return real_predict(entry, parsed)

    broken = _handler("vitals", monkeypatch, "vitals-deterioration@2.0.0", "1")
    monkeypatch.setattr(task, "predict", predict)
    capsys.readouterr()
    caplog.set_level(logging.DEBUG)
    status, body = _call(broken, event)
    out = capsys.readouterr().out
    assert status == 200
    assert _strip(body) == expected
    blob = _merged(_emf(out))
    assert blob["ShadowErrors"] == 1.0 and blob["ShadowVersion"] == "2.0.0"
    # the failure is logged once, by exception type only (no exception message, no traceback)
    records = [r for r in caplog.records if r.getMessage() == "shadow scoring failed"]
    assert len(records) == 1, records
    (record,) = records
    assert record.levelno == logging.WARNING and record.error == "RuntimeError"  # type: ignore[attr-defined]
    assert record.exc_info is None and not record.args
    assert "Jane" not in caplog.text and "37.2" not in caplog.text and "Jane" not in out


def test_a_shadow_that_is_not_served_or_reads_other_inputs_is_dropped_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for shadow in ("vitals-deterioration@9.9.9", "breast-cancer@1.1.0"):  # unknown; another task's model
        handler = _handler("vitals", monkeypatch, shadow, "1")
        capsys.readouterr()
        assert _call(handler, load_event("vitals_predict"))[0] == 200
        assert _emf(capsys.readouterr().out) == []
    dropped = [r for r in caplog.records if r.getMessage().startswith("shadow version dropped")]
    assert [r.shadow_model for r in dropped] == ["vitals-deterioration", "breast-cancer"]  # type: ignore[attr-defined]
    # a candidate whose inputs differ from the live version's (another feature order) is dropped too
    registry = load_handler("risk").REGISTRY
    candidate = registry.get("breast-cancer", version="1.1.0")
    swapped = json.loads(json.dumps(candidate.manifest))
    swapped["inputs"][0], swapped["inputs"][1] = swapped["inputs"][1], swapped["inputs"][0]
    monkeypatch.setattr(candidate, "manifest", swapped)
    assert not Shadow.from_env(registry, "risk", {SHADOW_ENV: "breast-cancer@1.1.0", SAMPLE_ENV: "1"}).on
    monkeypatch.undo()
    assert Shadow.from_env(registry, "risk", {SHADOW_ENV: "breast-cancer@1.1.0", SAMPLE_ENV: "1"}).on


def test_the_shadow_never_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    task = tasks.get("vitals")
    real_predict = task.predict
    seen: list[tuple[str, bool]] = []

    def predict(entry: Any, parsed: list[Any]) -> list[dict[str, Any]]:
        seen.extend((entry.version, p.explain) for p in parsed)
        return real_predict(entry, parsed)

    handler = _handler("vitals", monkeypatch, "vitals-deterioration@2.0.0", "1")
    monkeypatch.setattr(task, "predict", predict)
    status, body = _call(handler, load_event("vitals_predict_explain"))
    assert status == 200 and "contributions" in body
    assert seen == [("1.0.0", True), ("2.0.0", False)]
    # and risk's parsed pair loses its explain flag the same way
    risk = tasks.get("risk")
    x = np.zeros((1, 3))
    assert risk.unexplained((x, True))[1] is False and risk.unexplained((x, True))[0] is x


def test_sampling_follows_the_rate() -> None:
    draws = iter([0.05, 0.5, 0.09, 0.95])
    scored: list[str] = []
    shadow = Shadow({"m": "2.0.0"}, 0.1, draw=lambda: next(draws), emit=lambda v, m, ver: scored.append(ver))

    class _Task:
        name = "t"

        def unexplained(self, parsed: Any) -> Any:
            return parsed

        def predict(self, entry: Any, parsed: list[Any]) -> list[dict[str, Any]]:
            return [{"s": 0.25}]

        def scores(self, entry: Any, result: dict[str, Any]) -> list[tuple[str | None, float]]:
            return [("x", result["s"])]

    class _Registry:
        def get(self, model_id: str, task: str | None = None, version: str | None = None) -> Any:
            return type("E", (), {"id": model_id, "version": version})()

    live = type("E", (), {"id": "m", "version": "1.0.0"})()
    results = [shadow.score(_Task(), _Registry(), live, None, {"s": 0.5}, pinned=False) for _ in range(4)]  # type: ignore[arg-type]
    assert results == [True, False, True, False]
    assert scored == ["2.0.0", "2.0.0"]


def test_agreement_of_two_answers() -> None:
    assert agreement([("a", 0.9), ("b", 0.2)], [("a", 0.7), ("a", 0.6)]) == pytest.approx(
        {"ShadowAgreement": 0.5, "ShadowScoreDelta": 0.3}
    )
    # a regression has no labels: the mean absolute difference in the output's units alone
    assert agreement([(None, 150.0), (None, 100.0)], [(None, 140.0), (None, 130.0)]) == {"ShadowScoreDelta": 20.0}
    with pytest.raises(ValueError, match="same number"):
        agreement([("a", 0.1)], [])


def test_configuration_from_the_environment() -> None:
    assert not Shadow.from_env(environ={}).on
    cfg = Shadow.from_env(environ={SHADOW_ENV: "a@2.0.0, b@1.1.0", SAMPLE_ENV: "0.25"})
    assert cfg.on and cfg.versions == {"a": "2.0.0", "b": "1.1.0"} and cfg.rate == 0.25
    for rate in ("-1", "nan", "x", "1.5", ""):
        assert not Shadow.from_env(environ={SHADOW_ENV: "a@2.0.0", SAMPLE_ENV: rate}).on, rate
    assert not Shadow.from_env(environ={SAMPLE_ENV: "1"}).on  # no version named
