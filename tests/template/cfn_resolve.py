"""What CloudFormation would make of a (transformed) template's conditions for given parameter values.

The SAM transform leaves ``Fn::If`` and parameter ``Ref`` s for CloudFormation to resolve at
deploy time, so a test that asks "with V2Auth=COGNITO, which auth does GET /v2 have?" must
resolve them itself. This covers the condition functions CloudFormation has (``Fn::Equals``,
``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``), ``Fn::If``, ``Ref`` to a parameter and
``AWS::NoValue``; every other intrinsic is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NO_VALUE = object()


def parameter_values(template: Mapping[str, Any], **overrides: str) -> dict[str, str]:
    """Every parameter's default, with ``overrides`` on top; an unknown override is an error."""
    params = template.get("Parameters") or {}
    unknown = set(overrides) - set(params)
    assert not unknown, f"not parameters of the template: {sorted(unknown)}"
    values = {name: str(spec.get("Default", "")) for name, spec in params.items()}
    values.update(overrides)
    return values


def _ref(name: str, params: Mapping[str, str]) -> Any:
    if name == "AWS::NoValue":
        return NO_VALUE
    return params[name] if name in params else {"Ref": name}


def evaluate(condition: Any, template: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    """The boolean a condition expression (or a condition's name) has for ``params``."""
    if isinstance(condition, str):
        return evaluate(template["Conditions"][condition], template, params)
    ((function, args),) = condition.items()
    if function == "Condition":
        return evaluate(args, template, params)
    if function == "Fn::Equals":
        left, right = (resolve(arg, template, params) for arg in args)
        return str(left) == str(right)
    if function == "Fn::Not":
        return not evaluate(args[0], template, params)
    if function == "Fn::And":
        return all(evaluate(arg, template, params) for arg in args)
    if function == "Fn::Or":
        return any(evaluate(arg, template, params) for arg in args)
    raise AssertionError(f"not a condition function: {function}")


def resolve(value: Any, template: Mapping[str, Any], params: Mapping[str, str]) -> Any:
    """``value`` with its ``Fn::If`` s, parameter ``Ref`` s and ``AWS::NoValue`` s resolved."""
    if isinstance(value, list):
        items = [resolve(item, template, params) for item in value]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::If"}:
        name, when_true, when_false = value["Fn::If"]
        return resolve(when_true if evaluate(name, template, params) else when_false, template, params)
    if set(value) == {"Ref"} and isinstance(value["Ref"], str):
        return _ref(value["Ref"], params)
    resolved = {key: resolve(item, template, params) for key, item in value.items()}
    return {key: item for key, item in resolved.items() if item is not NO_VALUE}


def failed_rules(template: Mapping[str, Any], params: Mapping[str, str]) -> list[str]:
    """Names of the template's ``Rules`` whose assertions fail for ``params`` (CloudFormation refuses those)."""
    failed = []
    for name, rule in (template.get("Rules") or {}).items():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], template, params):
            continue
        if not all(evaluate(a["Assert"], template, params) for a in rule["Assertions"]):
            failed.append(name)
    return failed
