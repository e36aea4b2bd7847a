"""template.yaml agrees with the code, and grants each verifier only what it needs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.template import http_routes, load_template, resources_of_type
from event_router.routes import WEBHOOK_ROUTES, modules_of

TEMPLATE = load_template()
VERIFIERS = {"zoho": "ZohoWebhookFunction", "moodle": "MoodleWebhookFunction"}
QUEUES = {
    "students": "StudentsQueue",
    "enrollments": "EnrollmentsQueue",
    "grades": "GradesQueue",
    "payments": "PaymentsQueue",
}


def properties(logical_id: str) -> dict[str, Any]:
    return TEMPLATE["Resources"][logical_id]["Properties"]  # type: ignore[no-any-return]


def test_template_serves_exactly_the_webhook_routes_of_the_spec_with_the_right_verifier() -> None:
    webhook_routes = {
        route: fn
        for route, fn in http_routes(TEMPLATE).items()
        if "/events/zoho/" in route or "/events/moodle/" in route
    }

    assert webhook_routes == {route: VERIFIERS[r.source] for route, r in WEBHOOK_ROUTES.items()}


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_verifier_may_send_only_to_the_queues_of_its_modules(source: str) -> None:
    policies = properties(VERIFIERS[source])["Policies"]
    send_targets = [
        p["SQSSendMessagePolicy"]["QueueName"]["Fn::GetAtt"][0] for p in policies if "SQSSendMessagePolicy" in p
    ]

    assert sorted(send_targets) == sorted(QUEUES[m] for m in modules_of(source))  # type: ignore[arg-type]


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_verifier_reads_only_its_own_secret_and_has_no_other_permissions(source: str) -> None:
    policies = properties(VERIFIERS[source])["Policies"]
    secrets = [
        p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]["Ref"]
        for p in policies
        if "AWSSecretsManagerGetSecretValuePolicy" in p
    ]

    assert secrets == [f"{source.capitalize()}WebhookSecret"]
    assert {next(iter(p)) for p in policies} == {"SQSSendMessagePolicy", "AWSSecretsManagerGetSecretValuePolicy"}


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_verifier_environment_points_each_module_at_its_own_queue(source: str) -> None:
    variables = properties(VERIFIERS[source])["Environment"]["Variables"]
    queue_variables = {k: v["Ref"] for k, v in variables.items() if k.endswith("_QUEUE_URL")}

    assert queue_variables == {f"{m.upper()}_QUEUE_URL": QUEUES[m] for m in modules_of(source)}  # type: ignore[arg-type]
    assert variables[f"{source.upper()}_WEBHOOK_SECRET_ARN"] == {"Ref": f"{source.capitalize()}WebhookSecret"}


def test_every_module_queue_redrives_to_the_one_dead_letter_queue_after_max_receive_count() -> None:
    queues = resources_of_type(TEMPLATE, "AWS::SQS::Queue")

    assert set(queues) == {*QUEUES.values(), "DeadLetterQueue"}
    for name in QUEUES.values():
        redrive = queues[name]["Properties"]["RedrivePolicy"]
        assert redrive == {
            "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
            "maxReceiveCount": {"Ref": "MaxReceiveCount"},
        }
    assert TEMPLATE["Parameters"]["MaxReceiveCount"]["Default"] == 5


def test_functions_share_the_common_layer_built_for_python_3_12() -> None:
    layer = TEMPLATE["Resources"]["CommonLayer"]

    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert layer["Properties"]["ContentUri"] == "layers/common/"
    assert TEMPLATE["Globals"]["Function"]["Runtime"] == "python3.12"
    assert {"Ref": "CommonLayer"} in TEMPLATE["Globals"]["Function"]["Layers"]


PROCESSORS = {
    "students": "StudentsProcessor",
    "enrollments": "EnrollmentsProcessor",
    "grades": "GradesProcessor",
    "payments": "PaymentsProcessor",
}


@pytest.mark.parametrize("module", list(PROCESSORS))
def test_each_processor_is_triggered_by_its_own_queue_with_partial_batch_responses(module: str) -> None:
    function = properties(PROCESSORS[module])
    [trigger] = function["Events"].values()

    assert function["Environment"]["Variables"]["MODULE"] == module
    assert function["CodeUri"] == "functions/module_processor/"
    assert trigger["Type"] == "SQS"
    assert trigger["Properties"] == {
        "Queue": {"Fn::GetAtt": [QUEUES[module], "Arn"]},
        "BatchSize": {"Ref": "ProcessorBatchSize"},
        "MaximumBatchingWindowInSeconds": {"Ref": "ProcessorBatchingWindow"},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": {"Ref": "ProcessorMaxConcurrency"}},
    }
    assert function["Timeout"] == {"Ref": "ProcessorTimeout"}
    assert "Policies" not in function  # SAM grants the queue's poller rights; nothing else is needed


def test_queue_visibility_timeout_is_at_least_six_times_the_processor_timeout() -> None:
    parameters = TEMPLATE["Parameters"]

    assert parameters["QueueVisibilityTimeout"]["Default"] >= 6 * parameters["ProcessorTimeout"]["Default"]
    assert parameters["QueueVisibilityTimeout"]["MinValue"] >= 6 * parameters["ProcessorTimeout"]["MinValue"]
    for name in QUEUES.values():
        assert properties(name)["VisibilityTimeout"] == {"Ref": "QueueVisibilityTimeout"}


def test_replay_runs_the_stuck_row_sweep_every_five_minutes() -> None:
    sweep = properties("ReplayFunction")["Events"]["Sweep"]

    assert sweep["Type"] == "Schedule"
    assert sweep["Properties"]["Schedule"] == "rate(5 minutes)"
    assert json.loads(sweep["Properties"]["Input"])["statuses"] == ["received"]


def test_replay_may_send_to_module_queues_and_drain_only_the_dead_letter_queue() -> None:
    policies = properties("ReplayFunction")["Policies"]

    sends = sorted(
        p["SQSSendMessagePolicy"]["QueueName"]["Fn::GetAtt"][0] for p in policies if "SQSSendMessagePolicy" in p
    )
    polls = [p["SQSPollerPolicy"]["QueueName"]["Fn::GetAtt"][0] for p in policies if "SQSPollerPolicy" in p]
    assert sends == sorted(QUEUES.values())
    assert polls == ["DeadLetterQueue"]


def test_health_is_public_and_stats_need_iam_auth() -> None:
    events = properties("MonitorFunction")["Events"]

    assert "Auth" not in events["Health"]["Properties"]
    assert events["Stats"]["Properties"]["Auth"] == {"Authorizer": "AWS_IAM"}
    assert http_routes(TEMPLATE)["GET /api/v1/events/stats"] == "MonitorFunction"
