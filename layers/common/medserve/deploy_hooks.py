"""CodeDeploy lifecycle hooks: golden requests through the version being deployed.

PreTraffic (before any traffic moves to the new versions) and PostTraffic (after the
alias shift) run the same checks against different targets:

* every ``<models>/<id>/<version>/golden.json`` (the format in the common brief) whose
  version is not retired is replayed as an API Gateway REST proxy event; the answer
  must have the recorded status (200) and every number in ``expect.json`` must match
  within the request's ``atol``/``rtol`` (``|got - want| <= atol + rtol * |want|``);
* ``GET /v1/health`` must answer 200 with ``"status": "ok"``.

Targets come from ``MEDSERVE_HOOK_TARGETS``: a JSON object mapping a route prefix to the
function version (PreTraffic: ``!Ref Fn.Version``) or alias ARN (PostTraffic) that serves
it; the longest matching prefix wins. ``TARGET_FUNCTION_VERSION`` (one ARN for every
route) is accepted as well. The hook always reports ``Succeeded`` or ``Failed`` to
CodeDeploy, also when a check raises. Nothing from a request or response body is logged:
only request names, statuses, counts and the JSON path of a mismatch.

``python -m medserve.deploy_hooks bands [MODELS_DIR]`` prints the template's
``MonitoringBand<Model>=metric,low,high`` parameter overrides from the live manifests.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medserve.distribution import recorded_band
from medserve.golden import differences, golden_event

log = logging.getLogger("medserve.deploy_hooks")

TARGETS_ENV = "MEDSERVE_HOOK_TARGETS"
SINGLE_TARGET_ENV = "TARGET_FUNCTION_VERSION"
HEALTH = {"name": "health", "method": "GET", "path": "/v1/health", "expect": {"status": 200, "json": {"status": "ok"}}}
WIDE_BAND = ("PositiveShare", 0.0, 1.0)

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]
"""``invoke(function_arn, event) -> API Gateway proxy response`` (raises on a function error)."""


class HookError(Exception):
    """A golden check could not run (bad file, unknown route, function error)."""


@dataclass(frozen=True)
class GoldenRequest:
    """One recorded request and what it must answer."""

    model: str
    version: str
    name: str
    request: Mapping[str, Any]

    @property
    def label(self) -> str:
        """``model@version/name``: safe to log (identifiers only)."""
        return f"{self.model}@{self.version}/{self.name}"


@dataclass
class Report:
    """What a hook run found."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when something was checked and nothing failed."""
        return bool(self.passed) and not self.failed


# -- golden files ------------------------------------------------------------------------
def _retired(model_dir: Path) -> set[str]:
    live = model_dir / "live.json"
    if not live.is_file():
        return set()
    return {str(v) for v in json.loads(live.read_text(encoding="utf-8")).get("retired") or []}


def load_golden(models_dir: str | Path) -> list[GoldenRequest]:
    """Every golden request of every non-retired version under ``models_dir``.

    Parameters
    ----------
    models_dir
        The models folder (``/opt/models`` on Lambda).

    Returns
    -------
    list of GoldenRequest
        Sorted by model, version and file order.
    """
    found: list[GoldenRequest] = []
    for path in sorted(Path(models_dir).glob("*/*/golden.json")):
        if path.parent.name in _retired(path.parent.parent):
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        model, version = str(doc.get("model") or path.parent.parent.name), str(doc.get("version") or path.parent.name)
        for i, request in enumerate(doc.get("requests") or []):
            if not isinstance(request, Mapping) or "path" not in request:
                raise HookError(f"{path}: request {i} has no path")
            found.append(GoldenRequest(model, version, str(request.get("name") or i), request))
    return found


# -- API Gateway events -------------------------------------------------------------------
def to_event(request: Mapping[str, Any], *, stage: str = "prod") -> dict[str, Any]:
    """A golden request as the API Gateway REST proxy event the function would receive."""
    return golden_event(
        dict(request), request_id=f"deploy-hook-{uuid.uuid4()}", stage=stage, user_agent="medserve-deploy-hook"
    )


def response_json(response: Mapping[str, Any]) -> Any:
    """The JSON body of an API Gateway proxy response (``None`` when it is not JSON)."""
    body = response.get("body")
    if body is None:
        return None
    text = base64.b64decode(body).decode("utf-8") if response.get("isBase64Encoded") else str(body)
    try:
        return json.loads(text)
    except ValueError:
        return None


# -- comparison ---------------------------------------------------------------------------
def check_response(request: Mapping[str, Any], response: Mapping[str, Any]) -> list[str]:
    """Why ``response`` does not answer ``request`` as recorded (empty list: it does).

    The status must equal ``expect.status`` (and be 200); every value in ``expect.json``
    must be present, numbers within ``atol + rtol * |recorded|``. Reasons name JSON paths
    and statuses only, never values.
    """
    expect = request.get("expect") or {}
    want_status = int(expect.get("status", 200))
    status = int(response.get("statusCode") or 0)
    reasons = []
    if want_status != 200:
        reasons.append(f"golden status is {want_status}, not 200")
    if status != want_status:
        reasons.append(f"status {status}, recorded {want_status}")
        return reasons
    if "json" in expect:
        got = response_json(response)
        if got is None:
            return [*reasons, "the answer is not JSON"]
        atol, rtol = float(request.get("atol", 0.0)), float(request.get("rtol", 0.0))
        wrong = [line.split(":", 1)[0] for line in differences(got, expect["json"], atol=atol, rtol=rtol, subset=True)]
        if wrong:
            more = f" (+{len(wrong) - 5} more)" if len(wrong) > 5 else ""
            reasons.append(f"differs at {', '.join(wrong[:5])}{more} beyond atol={atol} rtol={rtol}")
    return reasons


# -- targets and runs --------------------------------------------------------------------
def targets_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Route prefix -> function ARN from ``MEDSERVE_HOOK_TARGETS`` (or one ``TARGET_FUNCTION_VERSION``)."""
    env = os.environ if env is None else env
    if env.get(TARGETS_ENV):
        targets = json.loads(env[TARGETS_ENV])
        if not isinstance(targets, dict) or not targets:
            raise HookError(f"{TARGETS_ENV} must be a non-empty JSON object")
        return {str(k): str(v) for k, v in targets.items()}
    if env.get(SINGLE_TARGET_ENV):
        return {"/": env[SINGLE_TARGET_ENV]}
    raise HookError(f"set {TARGETS_ENV} or {SINGLE_TARGET_ENV}")


def target_for(path: str, targets: Mapping[str, str]) -> str:
    """The function serving ``path``: the longest matching route prefix."""
    matches = [prefix for prefix in targets if path.startswith(prefix)]
    if not matches:
        raise HookError("no target function for a golden route")
    return targets[max(matches, key=len)]


def run_checks(golden: list[GoldenRequest], targets: Mapping[str, str], invoke: Invoke) -> Report:
    """Health on its target, then every golden request on the function serving its route."""
    report = Report()
    cases: list[tuple[str, Mapping[str, Any]]] = []
    if any("/v1/health".startswith(prefix) for prefix in targets):
        cases.append(("health", HEALTH))
    cases += [(g.label, g.request) for g in golden]
    for label, request in cases:
        try:
            response = invoke(target_for(str(request["path"]), targets), to_event(request))
            reasons = check_response(request, response)
        except HookError as exc:
            reasons = [str(exc)]
        except Exception as exc:  # a check that cannot run fails the deployment, never the hook
            reasons = [f"invocation failed ({type(exc).__name__})"]
        if reasons:
            report.failed.append(f"{label}: {'; '.join(reasons)}")
        else:
            report.passed.append(label)
    return report


def lambda_invoker(client: Any) -> Invoke:
    """An :data:`Invoke` that calls ``client.invoke`` (a boto3 Lambda client) synchronously."""

    def invoke(function_arn: str, event: dict[str, Any]) -> dict[str, Any]:
        answer = client.invoke(FunctionName=function_arn, InvocationType="RequestResponse", Payload=json.dumps(event))
        payload = answer["Payload"].read()
        if answer.get("FunctionError"):
            raise HookError(f"the function raised ({answer['FunctionError']})")
        result = json.loads(payload)
        if not isinstance(result, dict):
            raise HookError("the function did not answer an API Gateway proxy response")
        return result

    return invoke


def handle(
    event: Mapping[str, Any],
    *,
    codedeploy: Any,
    invoke: Invoke,
    models_dir: str | Path,
    targets: Mapping[str, str] | None = None,
    hook: str = "PreTraffic",
) -> Report:
    """Run the checks and report the outcome to CodeDeploy (always, even when a check raises).

    Parameters
    ----------
    event
        CodeDeploy's hook event (``DeploymentId``, ``LifecycleEventHookExecutionId``).
    codedeploy
        A boto3 CodeDeploy client.
    invoke
        How to call a function (:func:`lambda_invoker`).
    models_dir
        Where the golden files are (``/opt/models``).
    targets
        Route prefix -> function ARN (default: :func:`targets_from_env`).
    hook
        ``PreTraffic`` or ``PostTraffic`` (for the log).
    """
    try:
        report = run_checks(load_golden(models_dir), targets or targets_from_env(), invoke)
    except Exception as exc:  # unreadable golden files or targets: the deployment must not go on
        report = Report(failed=[f"the checks could not run ({type(exc).__name__}: {exc})"])
    status = "Succeeded" if report.ok else "Failed"
    log.info(
        "%s hook: %s (%d passed, %d failed)",
        hook,
        status,
        len(report.passed),
        len(report.failed),
        extra={"failures": report.failed[:20]},
    )
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
    return report


# -- monitoring bands --------------------------------------------------------------------
def _live_band(model_dir: Path) -> Mapping[str, Any] | None:
    """The live version's band: ``live.json``'s ``band`` (recorded by the promotion gate for that version),
    else the live manifest's ``monitoring.band``; ``None`` when neither is recorded."""
    versions = sorted(
        (p for p in model_dir.iterdir() if (p / "manifest.json").is_file()),
        key=lambda p: tuple(int(x) if x.isdigit() else 0 for x in p.name.split(".")),
    )
    if not versions:
        return None
    live_path = model_dir / "live.json"
    release = json.loads(live_path.read_text(encoding="utf-8")) if live_path.is_file() else {}
    name = str(release.get("live") or "")
    chosen = next((p for p in versions if p.name == name), versions[-1])
    band = recorded_band(release, chosen.name)
    if band is not None:
        return band
    manifest = json.loads((chosen / "manifest.json").read_text(encoding="utf-8"))
    band = ((manifest or {}).get("monitoring") or {}).get("band")
    return band if isinstance(band, Mapping) else None


def band_overrides(models_dir: str | Path) -> dict[str, str]:
    """``MonitoringBand<Model>`` -> ``"metric,low,high"`` of each model's live version.

    The band is the one the promotion gate recorded in ``live.json`` for the version live now
    (``model_export.promote``), else the live manifest's ``monitoring.band``. Models without a
    band for their live version are left out (the template's wide defaults apply): a band
    recorded for an earlier live version is never applied to a later one.
    """
    out = {}
    for model_dir in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()):
        band = _live_band(model_dir)
        if band is None:
            continue
        name = "MonitoringBand" + "".join(part.capitalize() for part in model_dir.name.split("-"))
        out[name] = f"{band['metric']},{float(band['low']):.10g},{float(band['high']):.10g}"
    return out


def main(argv: list[str] | None = None) -> int:
    """``bands [MODELS_DIR]``: print ``--parameter-overrides`` values for ``sam deploy``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "bands":
        print("usage: python -m medserve.deploy_hooks bands [MODELS_DIR]", file=sys.stderr)
        return 2
    models_dir = args[1] if len(args) > 1 else os.environ.get("MEDSERVE_MODELS_DIR", "layers/models")
    print(" ".join(f"{k}={v}" for k, v in band_overrides(models_dir).items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
