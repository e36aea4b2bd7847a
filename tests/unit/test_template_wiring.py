"""template.yaml wires what the code expects: routes, queues, triggers, layers, schedules, migrations."""

from __future__ import annotations

import json
import re

import pytest

from devstack.template import http_routes, resources_of_type
from event_router.contract import WEBHOOK_ROUTES, ZOHO_NOTIFY_ROUTE, modules_of
from tests.unit.stack import (
    FUNCTIONS,
    PROCESSORS,
    QUEUES,
    RESOURCES,
    TEMPLATE,
    VERIFIERS,
    properties,
    queue_arns,
    resources_for,
)


def test_template_serves_exactly_the_webhook_routes_of_the_spec_with_the_right_verifier() -> None:
    webhook_routes = {
        r: fn for r, fn in http_routes(TEMPLATE).items() if "/events/zoho/" in r or "/events/moodle/" in r
    }

    assert webhook_routes == {
        **{route: VERIFIERS[r.source] for route, r in WEBHOOK_ROUTES.items()},
        ZOHO_NOTIFY_ROUTE: VERIFIERS["zoho"],  # Zoho's Notification API: ids only
    }


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_verifier_environment_points_each_module_at_its_own_queue(source: str) -> None:
    variables = FUNCTIONS[VERIFIERS[source]].environment
    assert variables["SOURCE"] == source
    assert properties(VERIFIERS[source])["CodeUri"] == "functions/webhook_verifier/"
    queue_variables = {k: v["Ref"] for k, v in variables.items() if k.endswith("_QUEUE_URL")}

    assert queue_variables == {f"{m.upper()}_QUEUE_URL": QUEUES[m] for m in modules_of(source)}  # type: ignore[arg-type]
    secret = f"{source.capitalize()}WebhookSecret"
    condition = f"Create{source.capitalize()}Secret"
    assert variables[f"{source.upper()}_WEBHOOK_SECRET_ARN"] == {
        "Fn::If": [condition, {"Ref": secret}, {"Ref": f"{secret}Arn"}]
    }


def test_every_module_queue_redrives_to_the_one_dead_letter_queue_after_max_receive_count() -> None:
    queues = resources_of_type(TEMPLATE, "AWS::SQS::Queue")

    # the reconciliation's follow-up queue has none: a follow-up lost is taken up by the next schedule
    assert set(queues) == {
        *QUEUES.values(),
        "MoodleDeliveryQueue",
        "ZohoDeliveryQueue",
        "DeadLetterQueue",
        "ReconcileQueue",
    }
    for name in [*QUEUES.values(), "MoodleDeliveryQueue", "ZohoDeliveryQueue"]:
        assert queues[name]["Properties"]["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
            "maxReceiveCount": {"Ref": "MaxReceiveCount"},
        }
    assert TEMPLATE["Parameters"]["MaxReceiveCount"]["Default"] == 5


def test_functions_share_the_common_layer_built_for_python_3_12() -> None:
    layer = RESOURCES["CommonLayer"]

    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert layer["Properties"]["ContentUri"] == "layers/common/"
    assert TEMPLATE["Globals"]["Function"]["Runtime"] == "python3.12"
    assert {"Ref": "CommonLayer"} in TEMPLATE["Globals"]["Function"]["Layers"]
    assert TEMPLATE["Globals"]["Function"]["Tracing"] == "Active"


def test_powertools_comes_from_awss_published_layer_of_the_version_the_tests_use() -> None:
    from tests.unit.test_project_rules import ROOT

    [published] = [layer for layer in TEMPLATE["Globals"]["Function"]["Layers"] if "Fn::If" in layer]
    condition, default, override = published["Fn::If"]
    pinned = re.search(r"aws-lambda-powertools==([\d.]+)", (ROOT / "requirements.txt").read_text())
    layer_requirements = (ROOT / "layers" / "common" / "requirements.txt").read_text()

    assert (condition, override) == ("UsePublishedPowertools", {"Ref": "PowertoolsLayerArn"})
    assert pinned is not None
    assert default == f"{{{{resolve:ssm:/aws/service/powertools/python/arm64/python3.12/{pinned.group(1)}}}}}"
    assert not re.search(r"^aws-lambda-powertools", layer_requirements, re.MULTILINE)


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
    assert json.loads(sweep["Properties"]["Input"])["mode"] == "sweep"
    environment = properties("ReplayFunction")["Environment"]["Variables"]
    assert environment["REJECTION_RETENTION_DAYS"] == {"Ref": "RejectedRequestRetentionDays"}


def test_processors_back_off_on_their_own_queue() -> None:
    for module, name in PROCESSORS.items():
        environment = properties(name)["Environment"]["Variables"]
        assert environment[f"{module.upper()}_QUEUE_URL"] == {"Ref": QUEUES[module]}
        assert environment["RETRY_BASE_SECONDS"] == {"Ref": "RetryBaseDelaySeconds"}
        assert resources_for(name, "sqs:ChangeMessageVisibility") == queue_arns(QUEUES[module])


def test_default_retry_schedule_outlasts_a_two_hour_database_outage() -> None:
    from event_router.core.backoff import retry_delay

    def outage_window(base_seconds: int, max_seconds: int, max_receive_count: int) -> int:
        """The longest outage that dead-letters nothing: the time of the last receive, counted from the
        first (a message is dead-lettered only when its last receive fails)."""
        return sum(retry_delay(n, base_seconds, max_seconds) for n in range(1, max_receive_count))

    parameters = TEMPLATE["Parameters"]
    base, receives = parameters["RetryBaseDelaySeconds"]["Default"], parameters["MaxReceiveCount"]["Default"]

    assert outage_window(base, 43_200, receives) >= 2 * 3600


def test_health_is_public_and_stats_need_iam_auth() -> None:
    events = properties("MonitorFunction")["Events"]

    assert "Auth" not in events["Health"]["Properties"]
    assert events["Stats"]["Properties"]["Auth"] == {"Authorizer": "AWS_IAM"}
    assert http_routes(TEMPLATE)["GET /api/v1/events/stats"] == "MonitorFunction"


def test_migrations_run_before_any_function_that_serves_traffic() -> None:
    migration = properties("DatabaseMigration")

    assert RESOURCES["DatabaseMigration"]["Type"] == "Custom::DatabaseMigration"
    assert migration["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert migration["SchemaSource"] == {"Ref": "CommonLayer"}  # new migrations ship in a new layer version
    for name in FUNCTIONS:
        if name != "MigrateFunction":
            assert RESOURCES[name]["DependsOn"] == "DatabaseMigration", name


def test_functions_connect_through_the_rds_proxy_when_one_is_given() -> None:
    host = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["DATABASE_HOST"]

    assert host == {"Fn::If": ["UseDatabaseProxy", {"Ref": "DatabaseProxyEndpoint"}, {"Ref": "DatabaseHost"}]}
    assert TEMPLATE["Conditions"]["UseDatabaseProxy"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DatabaseProxyEndpoint"}, ""]}]
    }


def test_the_moodle_delivery_function_drains_its_queue_at_a_bounded_concurrency_and_checks_every_minute() -> None:
    function = properties("MoodleDeliveryFunction")
    queue, check = function["Events"]["Queue"], function["Events"]["HealthCheck"]

    assert queue["Properties"]["Queue"] == {"Fn::GetAtt": ["MoodleDeliveryQueue", "Arn"]}
    assert queue["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MoodleDeliveryMaxConcurrency"}}
    assert (check["Properties"]["Schedule"], json.loads(check["Properties"]["Input"])) == (
        "rate(1 minute)",
        {"check": "moodle"},
    )
    assert properties("MoodleDeliveryQueue")["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
    }
    for processor in ("StudentsProcessor", "EnrollmentsProcessor"):
        assert properties(processor)["Environment"]["Variables"]["MOODLE_DELIVERY_QUEUE_URL"] == {
            "Fn::If": ["DeliverToMoodle", {"Ref": "MoodleDeliveryQueue"}, ""]
        }
