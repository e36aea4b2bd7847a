"""``template.yaml`` as data: the single source of routes, functions, queues and wiring.

CloudFormation's short tags (``!Ref``, ``!GetAtt``, ``!Sub``...) load as their
long form (``{"Ref": ...}``), so tools and tests read the template the way
CloudFormation does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain dicts and lists."""
    with path.open() as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CloudFormationLoader)  # noqa: S506 - safe loader subclass
    return document


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


API_EVENTS = ("Api", "HttpApi")  # a REST API's route (the webhooks), an HTTP API's (the operators')


def http_routes(template: dict[str, Any]) -> dict[str, str]:
    """``"POST /path"`` → logical id of the function serving it, on either API."""
    routes = {}
    for name, function in resources_of_type(template, "AWS::Serverless::Function").items():
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] in API_EVENTS:
                routes[f"{event['Properties']['Method'].upper()} {event['Properties']['Path']}"] = name
    return routes


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says about one function: where its code is and how it is wired."""

    logical_id: str
    code_uri: Path
    handler: str
    environment: dict[str, Any]
    events: dict[str, dict[str, Any]]
    timeout: float = 30.0  # seconds, when the template gives a number (a parameter's value: the default)

    def events_of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event["Properties"] for event in self.events.values() if event["Type"] == kind]


def functions(template: dict[str, Any], root: Path = TEMPLATE.parent) -> dict[str, FunctionSpec]:
    """Every ``AWS::Serverless::Function``, with the template's Globals merged in."""
    globals_ = template.get("Globals", {}).get("Function", {})
    shared_environment = globals_.get("Environment", {}).get("Variables", {})
    specs = {}
    for name, resource in resources_of_type(template, "AWS::Serverless::Function").items():
        properties = {**globals_, **resource["Properties"]}
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        specs[name] = FunctionSpec(
            logical_id=name,
            code_uri=root / properties["CodeUri"],
            handler=properties["Handler"],
            environment={**shared_environment, **variables},
            events=properties.get("Events", {}),
            timeout=float(properties["Timeout"]) if isinstance(properties.get("Timeout"), int | float) else 30.0,
        )
    return specs


class Resolver:
    """Evaluates ``Ref``, ``Fn::GetAtt`` and ``Fn::Sub`` against locally created resources."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str], stack_name: str) -> None:
        self._template = template
        self.parameters: dict[str, Any] = {}
        for name, spec in template.get("Parameters", {}).items():
            value = str(parameters.get(name, spec.get("Default", "")))
            is_list = spec["Type"] == "CommaDelimitedList"
            self.parameters[name] = [v for v in value.split(",") if v] if is_list else value
        self.stack_name = stack_name
        self.refs: dict[str, str] = {}  # logical id → what Ref gives (queue URL, secret ARN...)
        self.attributes: dict[tuple[str, str], str] = {}  # (logical id, attribute) → value
        self.conditions = {name: bool(self.resolve(c)) for name, c in template.get("Conditions", {}).items()}

    def exists(self, resource: dict[str, Any]) -> bool:
        """False for a resource whose Condition is false with these parameters."""
        return "Condition" not in resource or self.conditions[resource["Condition"]]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            [(key, argument)] = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                return self.attributes[(argument[0], argument[1])]
            if key == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1)), argument)
            if key in _CONDITION_FUNCTIONS:
                return _CONDITION_FUNCTIONS[key](self, argument)
        return {key: self.resolve(item) for key, item in value.items()}

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": "eu-west-2",
            "AWS::AccountId": "123456789012",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        return self.refs[name]

    def _sub(self, expression: str) -> str:
        if "." in expression:
            resource, attribute = expression.split(".", 1)
            return self.attributes[(resource, attribute)]
        return self._ref(expression)


_CONDITION_FUNCTIONS: dict[str, Any] = {
    "Fn::If": lambda r, a: r.resolve(a[1] if r.conditions[a[0]] else a[2]),
    "Fn::Equals": lambda r, a: r.resolve(a[0]) == r.resolve(a[1]),
    "Fn::Not": lambda r, a: not r.resolve(a[0]),
    "Fn::And": lambda r, a: all(r.resolve(x) for x in a),
    "Fn::Or": lambda r, a: any(r.resolve(x) for x in a),
    "Fn::Join": lambda r, a: a[0].join(str(x) for x in r.resolve(a[1])),
    "Condition": lambda r, a: r.conditions[a],
}
