"""Read a CloudFormation/SAM YAML template and resolve the intrinsics a local run needs.

The loader turns short-form tags (``!Ref``, ``!Sub``, ``!GetAtt``, ``!If`` ...) into
their long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``) so the rest of the runner
only sees plain dicts. :class:`Resolver` then evaluates what can be known without
AWS: parameter defaults, pseudo parameters, conditions, ``Fn::If``, ``Fn::Sub``,
``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap`` and ``Ref``/``Fn::GetAtt``
of resources (to a stable local name or a fake ARN).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"
STACK_NAME = "medserve-local"
NO_VALUE = object()
"""Sentinel for ``AWS::NoValue``: the key holding it is dropped."""

_NAME_PROPERTIES = ("FunctionName", "BucketName", "TableName", "QueueName", "TopicName")


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that understands CloudFormation short-form intrinsic tags."""


def _construct_intrinsic(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    """Turn ``!Tag value`` into ``{"Fn::Tag": value}`` (``!Ref``/``!Condition`` keep their names)."""
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        logical, _, attribute = value.partition(".")
        value = [logical, attribute]
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a template file (YAML or JSON) into plain Python data.

    Parameters
    ----------
    path
        The template file.

    Returns
    -------
    dict
        The template, short-form intrinsics expanded to their long form.
    """
    text = Path(path).read_text(encoding="utf-8")
    data = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a CloudFormation template (top level is not a mapping)")
    return data


class Resolver:
    """Evaluate intrinsic functions against a template, locally.

    Parameters
    ----------
    template
        The loaded template.
    region
        The value of ``AWS::Region``.
    parameters
        Values overriding the parameters' ``Default``.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        region: str = "us-east-1",
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.region = region
        self.resources: Mapping[str, Any] = template.get("Resources") or {}
        self.mappings: Mapping[str, Any] = template.get("Mappings") or {}
        self.conditions: Mapping[str, Any] = template.get("Conditions") or {}
        self.parameters: dict[str, Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            if isinstance(spec, Mapping) and "Default" in spec:
                self.parameters[name] = spec["Default"]
        self.parameters.update(parameters or {})
        self._condition_cache: dict[str, bool] = {}

    # -- public ------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic inside ``value``; unresolvable ones become a readable string."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if isinstance(value, Mapping):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                    return self._intrinsic(key, arg)
            out: dict[str, Any] = {}
            for key, item in value.items():
                resolved = self.resolve(item)
                if resolved is not NO_VALUE:
                    out[key] = resolved
            return out
        return value

    def condition(self, name: str) -> bool:
        """Evaluate the named condition of the template."""
        if name not in self._condition_cache:
            if name not in self.conditions:
                raise KeyError(f"unknown condition {name!r}")
            self._condition_cache[name] = bool(self.resolve(self.conditions[name]))
        return self._condition_cache[name]

    def ref(self, name: str) -> Any:
        """What ``Ref`` of ``name`` gives locally (parameter, pseudo parameter or resource)."""
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": STACK_NAME,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{STACK_NAME}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self._ref_resource(name)
        return f"${{{name}}}"

    def resource_name(self, logical_id: str) -> str:
        """A stable local physical name for a resource: its name property if literal, else derived."""
        props = (self.resources.get(logical_id) or {}).get("Properties") or {}
        for prop in _NAME_PROPERTIES:
            if prop in props:
                name = self.resolve(props[prop])
                if isinstance(name, str):
                    return name
        rtype = str((self.resources.get(logical_id) or {}).get("Type", ""))
        if rtype == "AWS::S3::Bucket":
            return logical_id.lower()
        return logical_id

    def _ref_resource(self, logical_id: str) -> str:
        """``Ref`` of a resource: a queue gives its URL, a topic its ARN, the rest a name or id."""
        rtype = str((self.resources.get(logical_id) or {}).get("Type", ""))
        if rtype in ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi"):
            return logical_id
        if rtype == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{self.resource_name(logical_id)}"
        if rtype == "AWS::SNS::Topic":
            return f"arn:aws:sns:{self.region}:{ACCOUNT_ID}:{self.resource_name(logical_id)}"
        return self.resource_name(logical_id)

    def get_att(self, logical_id: str, attribute: str) -> str:
        """A fake but well-formed value for ``Fn::GetAtt``."""
        name = self.resource_name(logical_id)
        rtype = str((self.resources.get(logical_id) or {}).get("Type", ""))
        if rtype == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{name}"
        if attribute == "Arn":
            service = rtype.split("::")[1].lower() if rtype.count("::") >= 2 else "local"
            return f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{name}"
        return f"{name}.{attribute}"

    # -- intrinsics --------------------------------------------------------------
    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self.ref(str(arg))
        if key == "Condition":
            return self.condition(str(arg))
        fn = key[len("Fn::") :]
        if fn == "GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self.get_att(str(self.resolve(parts[0])), str(self.resolve(parts[1])))
        if fn == "Sub":
            return self._sub(arg)
        if fn == "If":
            cond, when_true, when_false = arg
            return self.resolve(when_true if self.condition(str(cond)) else when_false)
        if fn == "Equals":
            left, right = (self.resolve(v) for v in arg)
            return str(left) == str(right)
        if fn == "Not":
            return not bool(self.resolve(arg[0]))
        if fn == "And":
            return all(bool(self.resolve(v)) for v in arg)
        if fn == "Or":
            return any(bool(self.resolve(v)) for v in arg)
        if fn == "Join":
            sep, items = arg
            resolved = self.resolve(items)
            return str(sep).join(str(v) for v in resolved)
        if fn == "Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if fn == "Split":
            sep, text = arg
            return str(self.resolve(text)).split(str(sep))
        if fn == "FindInMap":
            name, top, second = (self.resolve(v) for v in arg[:3])
            return self.resolve(self.mappings[name][top][second])
        if fn == "GetAZs":
            return [f"{self.region}a", f"{self.region}b"]
        if fn == "Base64":
            import base64

            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        return f"<{key} unresolved locally>"

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = str(arg[0]), {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = str(arg), {}

        def replace(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and expr.split(".", 1)[0] in self.resources:
                logical, attribute = expr.split(".", 1)
                return self.get_att(logical, attribute)
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", replace, text)
