"""template.yaml's dashboard and alarms point at things that exist, and its parameters are documented and set."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devstack.template import resources_of_type
from event_router.observability import Metric
from tests.unit.stack import (
    PROCESSORS,
    QUEUES,
    RESOURCES,
    TEMPLATE,
    VERIFIERS,
    properties,
)


def rendered_dashboard() -> dict[str, Any]:
    """The dashboard body with every ``${...}`` replaced, after checking that it names a resource."""
    body = properties("Dashboard")["DashboardBody"]["Fn::Sub"]

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("AWS::"):
            return "eu-west-2"
        resource = name.split(".")[0]
        assert resource in RESOURCES, f"dashboard names {name}, which the template does not define"
        return f"resolved-{name}"

    return json.loads(re.sub(r"\$\{([^}]+)\}", substitute, body))  # type: ignore[no-any-return]


def test_dashboard_body_renders_to_json_with_the_widgets_of_the_spec() -> None:
    titles = " | ".join(w["properties"].get("title", "") for w in rendered_dashboard()["widgets"])

    for expected in (
        "requests, 4xx, 5xx",
        "latency",
        "Verifiers",
        "Processors",
        "Queue depth",
        "oldest message",
        "Dead-letter",
        "accepted",
        "processed",
        "Alarms",
    ):
        assert expected.lower() in titles.lower(), expected


def test_every_custom_metric_on_the_dashboard_is_one_the_code_emits() -> None:
    shown = set()
    for widget in rendered_dashboard()["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            for item in metric:
                if isinstance(item, dict) and "expression" in item:
                    assert 'Namespace="EventRouter"' in item["expression"]
                    shown |= set(re.findall(r'MetricName="(\w+)"', item["expression"]))
            if metric[0] == "EventRouter":
                shown.add(metric[1])

    assert shown
    assert shown <= {m.value for m in Metric}
    assert {
        "Accepted",
        "Duplicate",
        "Rejected",
        "Processed",
        "Skipped",
        "Failed",
        "DeadLettered",
        "Replayed",
        "EndToEndLatency",
    } <= shown


def test_every_aws_metric_on_the_dashboard_names_a_resource_of_the_right_kind() -> None:
    kinds = {
        "ApiId": "AWS::Serverless::HttpApi",
        "FunctionName": "AWS::Serverless::Function",
        "QueueName": "AWS::SQS::Queue",
    }
    # REST APIs and web ACLs are named in metrics by their names (the stack's name, rendered as the region)
    names = {"ApiName": "WebhookApi", "WebACL": "WebhookWebAcl"}
    checked = 0
    for widget in rendered_dashboard()["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            if isinstance(metric[0], str) and metric[0].startswith("AWS/"):
                dimension, value = metric[2], metric[3]
                if dimension in names:
                    named = properties(names[dimension])["Name"]["Fn::Sub"].replace("${AWS::StackName}", "eu-west-2")
                    assert value == named, metric
                else:
                    resource = value.removeprefix("resolved-").split(".")[0]
                    assert RESOURCES[resource]["Type"] == kinds[dimension], metric
                checked += 1
    assert checked > 20


ALARM_DIMENSIONS = {
    "QueueName": ("AWS::SQS::Queue", lambda v: v["Fn::GetAtt"][0] if v["Fn::GetAtt"][1] == "QueueName" else None),
    "FunctionName": ("AWS::Serverless::Function", lambda v: v["Ref"]),
    "ApiId": ("AWS::Serverless::HttpApi", lambda v: v["Ref"]),
    # A REST API is named by its name and stage: the webhook API's.
    "ApiName": ("AWS::Serverless::Api", lambda v: "WebhookApi" if v == properties("WebhookApi")["Name"] else None),
    "Stage": ("AWS::Serverless::Api", lambda v: "WebhookApi" if v == properties("WebhookApi")["StageName"] else None),
}


def alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    if "MetricName" in alarm:
        return [{"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"], "Dimensions": alarm["Dimensions"]}]
    return [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]


def test_each_alarm_watches_metrics_of_resources_that_exist_and_notifies_the_topic() -> None:
    alarms = resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm")

    assert set(alarms) == {
        "DeadLetterQueueAlarm",
        "OldestMessageAlarm",
        "VerifierErrorsAlarm",
        "ProcessorErrorsAlarm",
        "DestinationPausedAlarm",
        "WatchRenewalAlarm",
        "ConflictAlarm",
        "ReconcileFailedAlarm",
    }
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        for metric in alarm_metrics(props):
            if metric["Namespace"] == "EventRouter":
                assert metric["MetricName"] in {m.value for m in Metric}, name
                continue
            for dimension in metric["Dimensions"]:
                kind, target = ALARM_DIMENSIONS[dimension["Name"]]
                resource = target(dimension["Value"])
                assert resource is not None, (name, dimension)
                assert RESOURCES[resource]["Type"] == kind, (name, dimension)


def test_alarms_cover_the_dead_letter_queue_queue_age_verifiers_and_processors() -> None:
    alarms = resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm")

    def watched(name: str) -> set[str]:
        return {
            json.dumps(d["Value"], sort_keys=True)
            for m in alarm_metrics(alarms[name]["Properties"])
            for d in m["Dimensions"]
        }

    assert watched("DeadLetterQueueAlarm") == {json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]})}
    queues = [*QUEUES.values(), "MoodleDeliveryQueue", "ZohoDeliveryQueue"]
    assert watched("OldestMessageAlarm") == {json.dumps({"Fn::GetAtt": [q, "QueueName"]}) for q in queues}
    assert alarms["OldestMessageAlarm"]["Properties"]["Threshold"] == {"Ref": "OldestMessageAgeAlarmSeconds"}
    webhook_api = properties("WebhookApi")
    assert watched("VerifierErrorsAlarm") == {json.dumps({"Ref": v}) for v in VERIFIERS.values()} | {
        json.dumps(webhook_api["Name"], sort_keys=True),
        json.dumps(webhook_api["StageName"]),
    }
    processors = [*PROCESSORS.values(), "MoodleDeliveryFunction", "ZohoDeliveryFunction"]
    assert watched("ProcessorErrorsAlarm") == {json.dumps({"Ref": p}) for p in processors}
    paused = alarm_metrics(alarms["DestinationPausedAlarm"]["Properties"])
    assert {(m["MetricName"], m["Dimensions"][0]["Value"]) for m in paused} == {
        ("DestinationPaused", "moodle"),
        ("DestinationPaused", "zoho"),
    }
    renewal = alarms["WatchRenewalAlarm"]["Properties"]
    assert (renewal["MetricName"], renewal["Threshold"]) == ("WatchRenewalFailed", 1)


def test_alarm_email_subscription_is_optional() -> None:
    assert RESOURCES["AlarmEmailSubscription"]["Condition"] == "EmailAlarms"
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""


def test_every_parameter_is_documented_in_the_deploy_guide() -> None:
    from tests.unit.test_project_rules import ROOT

    guide = (ROOT / "docs" / "deploy.md").read_text()

    assert [p for p in TEMPLATE["Parameters"] if f"| `{p}` |" not in guide] == []


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_samconfig_environment_sets_only_real_parameters_and_every_required_one(environment: str) -> None:
    import tomllib

    from tests.unit.test_project_rules import ROOT

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())[environment]
    overrides = dict(item.split("=", 1) for item in config["deploy"]["parameters"]["parameter_overrides"])
    required = {name for name, spec in TEMPLATE["Parameters"].items() if "Default" not in spec}

    assert config["global"]["parameters"]["stack_name"].endswith(environment)
    assert set(overrides) <= set(TEMPLATE["Parameters"])
    assert required <= set(overrides)


def test_every_parameter_is_in_exactly_one_console_group_with_a_plain_label() -> None:
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [p for group in groups for p in group["Parameters"]]

    assert all(set(group["Label"]) == {"default"} and isinstance(group["Label"]["default"], str) for group in groups)
    assert sorted(grouped) == sorted(TEMPLATE["Parameters"])
