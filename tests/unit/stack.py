"""``template.yaml`` as the template tests read it: its resources, and who may do what to which."""

from __future__ import annotations

import json
from typing import Any

from devstack.template import functions, load_template

TEMPLATE = load_template()

RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]

FUNCTIONS = functions(TEMPLATE)

VERIFIERS = {"zoho": "ZohoWebhookFunction", "moodle": "MoodleWebhookFunction"}

QUEUES = {
    "students": "StudentsQueue",
    "enrollments": "EnrollmentsQueue",
    "grades": "GradesQueue",
    "payments": "PaymentsQueue",
}

PROCESSORS = {
    "students": "StudentsProcessor",
    "enrollments": "EnrollmentsProcessor",
    "grades": "GradesProcessor",
    "payments": "PaymentsProcessor",
}

UNSCOPABLE = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


def properties(logical_id: str) -> dict[str, Any]:
    return RESOURCES[logical_id]["Properties"]  # type: ignore[no-any-return]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements_of(function: str) -> list[dict[str, Any]]:
    """Every IAM statement that applies to ``function``: its role's inline and managed policies."""
    role_ref = properties(function)["Role"]["Fn::GetAtt"]
    role = properties(role_ref[0])
    found = [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
    for managed in role.get("ManagedPolicyArns", []):
        for statement in properties(managed["Ref"])["PolicyDocument"]["Statement"]:
            # a statement under Fn::If applies in one branch: check the branch that grants
            found.append(statement["Fn::If"][1] if "Fn::If" in statement else statement)
    return found


def resources_for(function: str, action: str) -> set[str]:
    """Logical ids of the resources ``function`` may apply ``action`` to."""
    targets = set()
    for statement in statements_of(function):
        if action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                targets.add(json.dumps(resource, sort_keys=True))
    return targets


def queue_arns(*names: str) -> set[str]:
    return {json.dumps({"Fn::GetAtt": [name, "Arn"]}) for name in names}
