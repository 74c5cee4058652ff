"""SnapStart hooks: warm-up before the snapshot, fresh randomness and clients after restore.

The local runner calls each function's hooks as Lambda does for a published version:
before-snapshot at load, after-restore once before the first request.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from local import LocalApi
from local.functions import restore_env
from medserve import api as medserve_api
from medserve import snapstart
from medserve.batch import storage
from medserve.golden import golden_requests
from tests.conftest import MODELS, ROOT, load_event

API_FUNCTIONS = {"RiskFunction": "risk", "ImagingFunction": "imaging", "VitalsFunction": "vitals"}


def _golden_count(task: str | None) -> int:
    total = 0
    for manifest in MODELS.glob("*/*/manifest.json"):
        if task is None or json.loads(manifest.read_text())["task"] == task:
            total += len(golden_requests(manifest.parent))
    return total


@pytest.fixture(scope="module")
def local_api() -> Iterator[LocalApi]:
    yield LocalApi(port=0, eager=False)
    # what the runner's functions left in this process: their variables, the batch S3 client
    restore_env()
    storage.reset_client()


@pytest.mark.parametrize(("logical_id", "task"), sorted(API_FUNCTIONS.items()))
def test_runner_warms_at_load_and_restores_before_the_first_request(
    local_api: LocalApi, logical_id: str, task: str
) -> None:
    # Given a function loaded by the runner (Lambda init + snapshot),
    fn = local_api.functions[logical_id]
    fn.load()
    hooks = fn.snapstart

    # then its before-snapshot hook ran once, answering every golden request of its models, and no restore yet;
    assert hooks is fn.module.SNAPSTART
    assert hooks.calls == ["before_snapshot"]
    assert hooks.warmup_requests == _golden_count(task) >= 2
    assert hooks.warmup_models == len(list(fn.module.REGISTRY.all_entries(task)))  # live and candidates

    # when two requests arrive,
    event = load_event({"risk": "risk_breast_cancer", "imaging": "imaging_png", "vitals": "vitals_predict"}[task])
    with contextlib.redirect_stdout(io.StringIO()):
        first = fn.invoke(event)
        second = fn.invoke(event)

    # then after-restore ran once, before the first.
    assert first["statusCode"] == second["statusCode"] == 200
    assert hooks.calls == ["before_snapshot", "after_restore"]


def test_models_and_batch_functions_warm_too(local_api: LocalApi) -> None:
    models = local_api.functions["ModelsFunction"]
    models.load()
    assert models.snapstart.calls == ["before_snapshot"]
    assert models.snapstart.warmup_requests == 3  # health, catalogue, OpenAPI

    batch = local_api.functions["BatchFunction"]
    batch.load()
    assert batch.snapstart.calls == ["before_snapshot"]
    assert batch.snapstart.warmup_models == len(list(batch.module.REGISTRY.all_entries())) >= 4


@pytest.mark.parametrize("through", ["handler", "app"])
def test_warm_up_leaves_no_metric_no_log_and_the_cold_start_to_the_first_request(
    through: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the risk function, fresh Powertools cold-start flags and empty metrics,
    from aws_lambda_powertools.logging import logger as powertools_logger
    from aws_lambda_powertools.metrics.provider import cold_start

    from tests.conftest import FakeContext, load_handler

    module = load_handler("risk")
    medserve_api.metrics.clear_metrics()
    cold_start.is_cold_start = powertools_logger.is_cold_start = True
    capsys.readouterr()

    # when the warm-up answers the golden requests (through the Lambda handler, as the handlers install it),
    handler = module.lambda_handler if through == "handler" else None
    hooks = snapstart.install(module.app, module.REGISTRY, task="risk", handler=handler)
    hooks.before_snapshot()

    # then it ran them, printed no metric or request line (only its own summary), left nothing to publish,
    assert hooks.warmup_requests == _golden_count("risk")
    assert not medserve_api.metrics.metric_set
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [line.get("message") for line in lines] in ([], ["snapstart before-snapshot done"])
    assert not snapstart.warming()
    # and the first real request is still reported as the cold start.
    assert cold_start.is_cold_start and powertools_logger.is_cold_start
    with contextlib.redirect_stdout(io.StringIO()) as out:
        module.lambda_handler(load_event("risk_breast_cancer"), FakeContext())
    assert '"ColdStart"' in out.getvalue()


def test_after_restore_reseeds_and_runs_restore_callbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapstart, "_restore_callbacks", [])
    calls: list[str] = []
    snapstart.on_restore(lambda: calls.append("client reset"))
    hooks = snapstart.Hooks()

    random.seed(7)
    np.random.seed(7)
    frozen = (random.random(), float(np.random.random()))
    random.seed(7)  # the state every restored copy of a snapshot would share
    np.random.seed(7)
    hooks.after_restore()

    assert (random.random(), float(np.random.random())) != frozen
    assert frozen[0] != frozen[1]
    assert calls == ["client reset"]
    assert hooks.calls == ["after_restore"] and hooks.restore_ms >= 0


def test_batch_registers_its_s3_client_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the batch handler imported afresh (its own module name: the shared test copy keeps its settings),
    monkeypatch.setenv("MEDSERVE_OUTPUT_BUCKET", "results")
    monkeypatch.setattr(snapstart, "_restore_callbacks", [])
    spec = importlib.util.spec_from_file_location("snapstart_test_batch", ROOT / "functions" / "batch" / "app.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert snapstart._restore_callbacks == [storage.reset_client]

    # when a restore happens after a client was created before the snapshot,
    monkeypatch.setattr(storage, "_CLIENT", object())
    snapstart.Hooks().after_restore()

    # then the client is gone: created afresh (new credentials, connections) on first use.
    assert storage._CLIENT is None


class _App:
    def __init__(self, status: int) -> None:
        self.status = status
        self.events: list[dict[str, Any]] = []

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": self.status}


class _Registry:
    def __init__(self, path: Path) -> None:
        self.entry = type("Entry", (), {"path": path, "session": object(), "id": "m"})()

    def all_entries(self, task: str | None = None) -> list[Any]:
        return [self.entry]


def test_a_golden_request_that_fails_fails_the_snapshot(tmp_path: Path) -> None:
    request = {"name": "one", "method": "POST", "path": "/v1/risk/m/predict", "body": {}, "expect": {"status": 200}}
    (tmp_path / "golden.json").write_text(json.dumps({"model": "m", "version": "1", "requests": [request]}))

    good = _App(200)
    snapstart.Hooks(app=good, registry=_Registry(tmp_path), task="risk").before_snapshot()
    assert good.events[0]["pathParameters"] == {"model_id": "m"}
    assert good.events[0]["resource"] == "/v1/risk/{model_id}/predict"

    with pytest.raises(snapstart.WarmupError):
        snapstart.Hooks(app=_App(500), registry=_Registry(tmp_path), task="risk").before_snapshot()
    assert not snapstart.warming()


def test_hooks_register_with_lambda_only_for_a_snapstart_init(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[Any] = []
    monkeypatch.setattr(snapstart, "register_before_snapshot", registered.append)
    monkeypatch.setattr(snapstart, "register_after_restore", registered.append)

    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    snapstart.install()
    assert registered == []

    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    hooks = snapstart.install()
    assert registered == [hooks.before_snapshot, hooks.after_restore]
