"""Several versions of a model side by side: live selection, pinning, retired/unknown versions, batch keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from medserve.api import lambda_entry, task_app
from medserve.batch.keys import parse_key
from medserve.problems import Problem
from medserve.registry import ModelIntegrityError, Registry
from tests.conftest import FakeContext, live_folder, load_event


def versioned_models(tmp_path: Path, live: str | None = "1.0.0", retired: tuple[str, ...] = ("0.9.0",)) -> Path:
    """breast-cancer as 0.9.0, 1.0.0 and 1.1.0 (same weights), with a live.json when ``live`` is set."""
    src = live_folder("breast-cancer")
    for version in ("0.9.0", "1.0.0", "1.1.0"):
        dst = tmp_path / "breast-cancer" / version
        shutil.copytree(src, dst)
        manifest = json.loads((dst / "manifest.json").read_text())
        manifest["version"] = version
        manifest["created"] = f"2026-0{version[2] or 1}-01"
        (dst / "manifest.json").write_text(json.dumps(manifest))
    if live is not None:
        (tmp_path / "breast-cancer" / "live.json").write_text(json.dumps({"live": live, "retired": list(retired)}))
    return tmp_path


def test_the_live_version_answers_unless_one_is_pinned(tmp_path: Path) -> None:
    registry = Registry.load(versioned_models(tmp_path), task="risk")
    assert registry.get("breast-cancer").version == "1.0.0"
    assert registry.get("breast-cancer", version="1.1.0").version == "1.1.0"
    statuses = {v["version"]: v["status"] for v in registry.versions("breast-cancer")}
    assert statuses == {"0.9.0": "retired", "1.0.0": "live", "1.1.0": "candidate"}
    assert all(len(v["sha256"]) == 64 and v["created"] for v in registry.versions("breast-cancer"))
    # sessions are opened for served versions only
    assert registry.get("breast-cancer", version="1.1.0").session is not None
    assert registry.model("breast-cancer").versions["0.9.0"].session is None


@pytest.mark.parametrize(("version", "state"), [("0.9.0", "is retired"), ("7.0.0", "does not exist")])
def test_a_retired_or_unknown_version_is_404_naming_the_served_ones(tmp_path: Path, version: str, state: str) -> None:
    registry = Registry.load(versioned_models(tmp_path), task="risk", sessions=False)
    with pytest.raises(Problem) as err:
        registry.get("breast-cancer", version=version)
    assert err.value.status == 404
    assert state in err.value.detail
    assert "1.0.0, 1.1.0" in err.value.detail


def test_a_version_that_is_not_a_version_is_not_echoed(tmp_path: Path) -> None:
    registry = Registry.load(versioned_models(tmp_path), task="risk", sessions=False)
    with pytest.raises(Problem) as err:
        registry.get("breast-cancer", version="DOE^JANE")
    assert err.value.status == 404
    assert "DOE" not in err.value.detail


def test_without_live_json_the_highest_version_is_live(tmp_path: Path) -> None:
    registry = Registry.load(versioned_models(tmp_path, live=None), sessions=False)
    assert registry.get("breast-cancer").version == "1.1.0"


def test_a_live_json_naming_a_missing_version_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError):
        Registry.load(versioned_models(tmp_path, live="3.0.0"), sessions=False)


def _predict(app_handler: Any, query: dict[str, str] | None) -> tuple[int, dict[str, Any]]:
    event = load_event("risk_breast_cancer")
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()} or None
    response = app_handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def test_the_predict_route_pins_with_the_version_query_parameter(tmp_path: Path) -> None:
    handler = lambda_entry(task_app("risk", Registry.load(versioned_models(tmp_path), task="risk")))
    status, body = _predict(handler, None)
    assert status == 200 and body["model"]["version"] == "1.0.0"
    status, body = _predict(handler, {"version": "1.1.0"})
    assert status == 200 and body["model"]["version"] == "1.1.0"
    status, body = _predict(handler, {"version": "0.9.0"})
    assert status == 404 and body["status"] == 404


def test_batch_keys_may_pin_a_version() -> None:
    pinned = parse_key("incoming/breast-cancer@1.1.0/rows.csv")
    assert (pinned.model_id, pinned.version, pinned.name) == ("breast-cancer", "1.1.0", "rows.csv")
    assert pinned.result_key == "results/breast-cancer@1.1.0/rows.csv.json"
    live = parse_key("incoming/breast-cancer/rows.csv")
    assert (live.model_id, live.version) == ("breast-cancer", None)


def test_two_versions_in_one_query_is_422(tmp_path: Path) -> None:
    handler = lambda_entry(task_app("risk", Registry.load(versioned_models(tmp_path), task="risk")))
    event = load_event("risk_breast_cancer")
    event["queryStringParameters"] = {"version": "1.1.0"}
    event["multiValueQueryStringParameters"] = {"version": ["1.0.0", "1.1.0"]}
    response = handler(event, FakeContext())
    assert response["statusCode"] == 422
    assert json.loads(response["body"])["errors"][0]["field"] == "query.version"


def test_the_model_document_can_be_pinned_to_a_version() -> None:
    from tests.conftest import invoke

    event = load_event("models_get")
    event["queryStringParameters"] = {"version": "1.1.0"}
    event["multiValueQueryStringParameters"] = {"version": ["1.1.0"]}
    status, _, body = invoke("models", event)
    assert status == 200 and body["version"] == "1.1.0"
    assert {v["version"]: v["status"] for v in body["versions"]}["1.1.0"] == "candidate"
    event["queryStringParameters"] = {"version": "9.9.9"}
    event["multiValueQueryStringParameters"] = {"version": ["9.9.9"]}
    assert invoke("models", event)[0] == 404
