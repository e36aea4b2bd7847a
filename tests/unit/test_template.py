"""template.yaml agrees with the code, grants each function only what it needs, and its
dashboard and alarms point at things that exist."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devstack.template import functions, http_routes, load_template, resources_of_type
from event_router.contract import WEBHOOK_ROUTES, modules_of
from event_router.observability import Metric

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
# The only actions allowed on every resource: neither X-Ray nor Lambda's VPC attachment can be scoped.
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


# ------------------------------------------------------------------ routes and wiring


def test_template_serves_exactly_the_webhook_routes_of_the_spec_with_the_right_verifier() -> None:
    webhook_routes = {
        r: fn for r, fn in http_routes(TEMPLATE).items() if "/events/zoho/" in r or "/events/moodle/" in r
    }

    assert webhook_routes == {route: VERIFIERS[r.source] for route, r in WEBHOOK_ROUTES.items()}


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

    assert set(queues) == {*QUEUES.values(), "DeadLetterQueue"}
    for name in QUEUES.values():
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
    from event_router.process.backoff import outage_window

    parameters = TEMPLATE["Parameters"]
    base, receives = parameters["RetryBaseDelaySeconds"]["Default"], parameters["MaxReceiveCount"]["Default"]

    assert outage_window(base, 43_200, receives) >= 2 * 3600


def test_webhook_api_is_throttled_and_logs_access_without_bodies_or_headers() -> None:
    api = properties("WebhookApi")

    assert api["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    access = api["AccessLogSettings"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    line = json.loads(access["Format"].replace("\n", ""))
    assert {"requestId", "ip", "route", "status"} <= set(line)
    assert not [v for v in line.values() if "body" in v.lower() or "header" in v.lower()]


def test_health_is_public_and_stats_need_iam_auth() -> None:
    events = properties("MonitorFunction")["Events"]

    assert "Auth" not in events["Health"]["Properties"]
    assert events["Stats"]["Properties"]["Auth"] == {"Authorizer": "AWS_IAM"}
    assert http_routes(TEMPLATE)["GET /api/v1/events/stats"] == "MonitorFunction"


# ------------------------------------------------------------------ least privilege


def test_every_function_has_a_role_of_its_own_and_a_log_group_with_retention() -> None:
    roles = [properties(name)["Role"]["Fn::GetAtt"] for name in FUNCTIONS]

    assert sorted(r[0] for r in roles) == sorted(f"{name}Role" for name in FUNCTIONS)
    for name in FUNCTIONS:
        log_group = properties(name)["LoggingConfig"]["LogGroup"]["Ref"]
        assert log_group == f"{name}LogGroup"
        assert properties(log_group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_no_policy_grants_a_wildcard_action() -> None:
    for name in FUNCTIONS:
        for statement in statements_of(name):
            for action in as_list(statement["Action"]):
                assert "*" not in action, (name, action)


def test_only_unscopable_actions_apply_to_every_resource() -> None:
    for name in FUNCTIONS:
        for statement in statements_of(name):
            if "*" in as_list(statement["Resource"]):
                assert set(as_list(statement["Action"])) <= UNSCOPABLE, (name, statement)


@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_each_function_writes_only_to_its_own_log_group(function: str) -> None:
    assert resources_for(function, "logs:PutLogEvents") == {json.dumps({"Fn::GetAtt": [f"{function}LogGroup", "Arn"]})}


@pytest.mark.parametrize(
    ("function", "queues"),
    [
        ("ZohoWebhookFunction", ["StudentsQueue", "EnrollmentsQueue", "GradesQueue", "PaymentsQueue"]),
        ("MoodleWebhookFunction", ["EnrollmentsQueue", "GradesQueue"]),
        ("ReplayFunction", ["StudentsQueue", "EnrollmentsQueue", "GradesQueue", "PaymentsQueue"]),
        ("StudentsProcessor", []),
        ("EnrollmentsProcessor", []),
        ("GradesProcessor", []),
        ("PaymentsProcessor", []),
        ("MonitorFunction", []),
        ("MigrateFunction", []),
    ],
)
def test_a_function_may_send_only_to_the_queues_it_has_business_with(function: str, queues: list[str]) -> None:
    assert resources_for(function, "sqs:SendMessage") == queue_arns(*queues)


@pytest.mark.parametrize(
    ("function", "queues"),
    [
        ("StudentsProcessor", ["StudentsQueue"]),
        ("EnrollmentsProcessor", ["EnrollmentsQueue"]),
        ("GradesProcessor", ["GradesQueue"]),
        ("PaymentsProcessor", ["PaymentsQueue"]),
        ("ReplayFunction", ["DeadLetterQueue"]),
        ("ZohoWebhookFunction", []),
        ("MoodleWebhookFunction", []),
        ("MonitorFunction", []),
        ("MigrateFunction", []),
    ],
)
def test_a_function_may_consume_only_its_own_queue(function: str, queues: list[str]) -> None:
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage"):
        assert resources_for(function, action) == queue_arns(*queues)


@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_a_function_reads_its_database_login_and_at_most_its_own_webhook_secret(function: str) -> None:
    expected = {json.dumps({"Ref": "AppDatabaseSecret"})}
    if function == "MigrateFunction":  # the owner login, to run the migrations and create the app login
        expected.add(json.dumps({"Ref": "DatabaseSecretArn"}))
    source = next((s for s, name in VERIFIERS.items() if name == function), None)
    if source is not None:
        secret = f"{source.capitalize()}WebhookSecret"
        condition = f"Create{source.capitalize()}Secret"
        expected.add(json.dumps({"Fn::If": [condition, {"Ref": secret}, {"Ref": f"{secret}Arn"}]}))

    assert resources_for(function, "secretsmanager:GetSecretValue") == expected


# ------------------------------------------------------------------ migrations on deploy


def test_migrations_run_before_any_function_that_serves_traffic() -> None:
    migration = properties("DatabaseMigration")

    assert RESOURCES["DatabaseMigration"]["Type"] == "Custom::DatabaseMigration"
    assert migration["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert migration["SchemaSource"] == {"Ref": "CommonLayer"}  # new migrations ship in a new layer version
    for name in FUNCTIONS:
        if name != "MigrateFunction":
            assert RESOURCES[name]["DependsOn"] == "DatabaseMigration", name


# ------------------------------------------------------------------ dashboard and alarms


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
    checked = 0
    for widget in rendered_dashboard()["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            if isinstance(metric[0], str) and metric[0].startswith("AWS/"):
                dimension, value = metric[2], metric[3]
                resource = value.removeprefix("resolved-").split(".")[0]
                assert RESOURCES[resource]["Type"] == kinds[dimension], metric
                checked += 1
    assert checked > 20


ALARM_DIMENSIONS = {
    "QueueName": ("AWS::SQS::Queue", lambda v: v["Fn::GetAtt"][0] if v["Fn::GetAtt"][1] == "QueueName" else None),
    "FunctionName": ("AWS::Serverless::Function", lambda v: v["Ref"]),
    "ApiId": ("AWS::Serverless::HttpApi", lambda v: v["Ref"]),
}


def alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    if "MetricName" in alarm:
        return [{"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"], "Dimensions": alarm["Dimensions"]}]
    return [m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m]


def test_each_alarm_watches_metrics_of_resources_that_exist_and_notifies_the_topic() -> None:
    alarms = resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm")

    assert set(alarms) == {"DeadLetterQueueAlarm", "OldestMessageAlarm", "VerifierErrorsAlarm", "ProcessorErrorsAlarm"}
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        for metric in alarm_metrics(props):
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
    assert watched("OldestMessageAlarm") == {json.dumps({"Fn::GetAtt": [q, "QueueName"]}) for q in QUEUES.values()}
    assert alarms["OldestMessageAlarm"]["Properties"]["Threshold"] == {"Ref": "OldestMessageAgeAlarmSeconds"}
    assert watched("VerifierErrorsAlarm") == {json.dumps({"Ref": v}) for v in [*VERIFIERS.values(), "WebhookApi"]}
    assert watched("ProcessorErrorsAlarm") == {json.dumps({"Ref": p}) for p in PROCESSORS.values()}


def test_alarm_email_subscription_is_optional() -> None:
    assert RESOURCES["AlarmEmailSubscription"]["Condition"] == "EmailAlarms"
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""


def test_every_parameter_is_documented_in_the_readme() -> None:
    from tests.unit.test_project_rules import ROOT

    readme = (ROOT / "README.md").read_text()

    assert [p for p in TEMPLATE["Parameters"] if f"`{p}`" not in readme] == []


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


def test_functions_connect_through_the_rds_proxy_when_one_is_given() -> None:
    host = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["DATABASE_HOST"]

    assert host == {"Fn::If": ["UseDatabaseProxy", {"Ref": "DatabaseProxyEndpoint"}, {"Ref": "DatabaseHost"}]}
    assert TEMPLATE["Conditions"]["UseDatabaseProxy"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DatabaseProxyEndpoint"}, ""]}]
    }


def test_only_the_migrations_use_the_owner_login_and_the_rest_connect_as_the_app_login() -> None:
    shared = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    migrate = properties("MigrateFunction")["Environment"]["Variables"]

    assert shared["DATABASE_SECRET_ARN"] == {"Ref": "AppDatabaseSecret"}
    assert migrate["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}
    assert migrate["APP_DATABASE_SECRET_ARN"] == {"Ref": "AppDatabaseSecret"}
    for name in FUNCTIONS:
        if name != "MigrateFunction":
            assert "DATABASE_SECRET_ARN" not in properties(name).get("Environment", {}).get("Variables", {})


def test_database_tls_defaults_to_verify_full() -> None:
    assert TEMPLATE["Parameters"]["DatabaseSslMode"]["Default"] == "verify-full"


def test_only_the_verifiers_and_replay_may_send_to_module_queues_and_only_over_tls() -> None:
    policy = properties("ModuleQueuePolicy")
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}

    assert sorted(q["Ref"] for q in policy["Queues"]) == sorted(QUEUES.values())
    senders = statements["OnlyVerifiersAndReplaySend"]
    assert (senders["Effect"], senders["Action"]) == ("Deny", "sqs:SendMessage")
    allowed = senders["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    assert sorted(a["Fn::GetAtt"][0] for a in allowed) == [
        "MoodleWebhookFunctionRole",
        "ReplayFunctionRole",
        "ZohoWebhookFunctionRole",
    ]
    # and the roles allowed to send are exactly those the IAM policies let send
    senders_by_iam = {name for name in FUNCTIONS if resources_for(name, "sqs:SendMessage")}
    assert {f"{name}Role" for name in senders_by_iam} == {a["Fn::GetAtt"][0] for a in allowed}
    for queue_policy in ("ModuleQueuePolicy", "DeadLetterQueuePolicy"):
        tls = {s["Sid"]: s for s in properties(queue_policy)["PolicyDocument"]["Statement"]}["TlsOnly"]
        assert tls["Effect"] == "Deny"
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_checkov_suppression_gives_its_reason() -> None:
    suppressions = [
        (name, skip)
        for name, resource in RESOURCES.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]

    assert suppressions
    assert [(name, s["id"]) for name, s in suppressions if len(s.get("comment", "")) < 30] == []
