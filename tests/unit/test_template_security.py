"""template.yaml grants each function only what it needs, and defends the queues and the database in depth."""

from __future__ import annotations

import json

import pytest

from event_router.operate.migrate import FUNCTION_ROLES
from tests.unit.stack import (
    FUNCTIONS,
    QUEUES,
    RESOURCES,
    TEMPLATE,
    UNSCOPABLE,
    VERIFIERS,
    as_list,
    properties,
    queue_arns,
    resources_for,
    statements_of,
)


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
        (
            "ReplayFunction",
            [
                "StudentsQueue",
                "EnrollmentsQueue",
                "GradesQueue",
                "PaymentsQueue",
                "MoodleDeliveryQueue",
                "ZohoDeliveryQueue",
            ],
        ),
        ("StudentsProcessor", ["MoodleDeliveryQueue"]),
        ("EnrollmentsProcessor", ["MoodleDeliveryQueue"]),
        ("MoodleDeliveryFunction", ["MoodleDeliveryQueue", "ZohoDeliveryQueue"]),
        ("ZohoDeliveryFunction", ["ZohoDeliveryQueue"]),
        ("GradesProcessor", ["ZohoDeliveryQueue"]),
        ("PaymentsProcessor", []),
        ("MonitorFunction", []),
        ("MigrateFunction", []),
        ("PrivacyFunction", []),
        # what it reads enters the pipeline; its repairs go to Moodle; it carries on through its own queue
        (
            "ReconcileFunction",
            [
                "StudentsQueue",
                "EnrollmentsQueue",
                "GradesQueue",
                "PaymentsQueue",
                "MoodleDeliveryQueue",
                "ReconcileQueue",
            ],
        ),
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
        ("PrivacyFunction", ["DeadLetterQueue"]),  # to remove an erased student's dead letters
        ("MoodleDeliveryFunction", ["MoodleDeliveryQueue"]),
        ("ZohoDeliveryFunction", ["ZohoDeliveryQueue"]),
        ("ZohoWebhookFunction", []),
        ("MoodleWebhookFunction", []),
        ("MonitorFunction", []),
        ("MigrateFunction", []),
        ("ReconcileFunction", ["ReconcileQueue"]),  # its own follow-ups
    ],
)
def test_a_function_may_consume_only_its_own_queue(function: str, queues: list[str]) -> None:
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage"):
        assert resources_for(function, action) == queue_arns(*queues)


# Only the Zoho delivery function refreshes the shared Zoho token, so only it holds the client
# secret; the processors, the Moodle delivery and the reconciliation call Zoho with that token.
ZOHO_CREDENTIAL_HOLDERS = ("ZohoDeliveryFunction",)
# Each kind of function signs in to Postgres with a login of its own (migration 0012).
DATABASE_LOGINS = {
    "ZohoWebhookFunction": "IngestDatabaseSecret",
    "MoodleWebhookFunction": "IngestDatabaseSecret",
    "StudentsProcessor": "ProcessDatabaseSecret",
    "EnrollmentsProcessor": "ProcessDatabaseSecret",
    "GradesProcessor": "ProcessDatabaseSecret",
    "PaymentsProcessor": "ProcessDatabaseSecret",
    "MoodleDeliveryFunction": "DeliverDatabaseSecret",
    "ZohoDeliveryFunction": "DeliverDatabaseSecret",
    "ReconcileFunction": "ReconcileDatabaseSecret",
    "ReplayFunction": "AppDatabaseSecret",
    "PrivacyFunction": "AppDatabaseSecret",
    "MonitorFunction": "AppDatabaseSecret",
    "ConsoleFunction": "AppDatabaseSecret",
}
# The console's authorizer asks Cognito about a cookie: it has no database login at all.
NO_DATABASE = ("ConsoleAuthorizerFunction",)
LOGIN_ROLES = {
    "IngestDatabaseSecret": "event_router_ingest",
    "ProcessDatabaseSecret": "event_router_process",
    "DeliverDatabaseSecret": "event_router_deliver",
    "ReconcileDatabaseSecret": "event_router_reconcile",
    "AppDatabaseSecret": "event_router_app",
}
MOODLE_CALLERS = ("MoodleDeliveryFunction", "ReconcileFunction")
# The privacy function writes the erasure register; the processors of modules with students' rows read it.
ERASURE_KEY_READERS = ("PrivacyFunction", "StudentsProcessor", "EnrollmentsProcessor", "GradesProcessor")


@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_a_function_reads_its_database_login_and_at_most_its_own_webhook_secret(function: str) -> None:
    if function == "MigrateFunction":  # the owner login, to run the migrations and create the others
        expected = {json.dumps({"Ref": secret}) for secret in (*LOGIN_ROLES, "DatabaseSecretArn")}
    elif function in NO_DATABASE:
        expected = set()
    else:
        expected = {json.dumps({"Ref": DATABASE_LOGINS[function]})}
    if function in MOODLE_CALLERS:  # the Moodle web-service token
        token = {"Fn::If": ["CreateMoodleTokenSecret", {"Ref": "MoodleTokenSecret"}, {"Ref": "MoodleTokenSecretArn"}]}
        expected.add(json.dumps(token))
    if function in ZOHO_CREDENTIAL_HOLDERS:  # to refresh the shared Zoho access token
        zoho = {
            "Fn::If": [
                "CreateZohoCredentialsSecret",
                {"Ref": "ZohoCredentialsSecret"},
                {"Ref": "ZohoCredentialsSecretArn"},
            ]
        }
        expected.add(json.dumps(zoho))
    if function == "ZohoDeliveryFunction":  # the notification channel's token derives from it
        expected.add(
            json.dumps({"Fn::If": ["CreateZohoSecret", {"Ref": "ZohoWebhookSecret"}, {"Ref": "ZohoWebhookSecretArn"}]})
        )
    if function in ERASURE_KEY_READERS:  # the erasure register's key
        expected.add(json.dumps({"Ref": "ErasureKeySecret"}))
    source = next((s for s, name in VERIFIERS.items() if name == function), None)
    if source is not None:
        secret = f"{source.capitalize()}WebhookSecret"
        condition = f"Create{source.capitalize()}Secret"
        expected.add(json.dumps({"Fn::If": [condition, {"Ref": secret}, {"Ref": f"{secret}Arn"}]}))

    assert resources_for(function, "secretsmanager:GetSecretValue") == expected


def test_only_the_migrations_use_the_owner_login_and_each_kind_of_function_has_its_own() -> None:
    shared = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    migrate = properties("MigrateFunction")["Environment"]["Variables"]

    assert "DATABASE_SECRET_ARN" not in shared
    assert migrate["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}
    # The migration creates every login, each a member of the role its kind of function is given.
    assert set(LOGIN_ROLES.values()) == set(FUNCTION_ROLES)
    assert json.loads(migrate["DATABASE_LOGINS"]["Fn::Sub"]) == {
        role: f"${{{secret}}}" for secret, role in LOGIN_ROLES.items()
    }
    for name in FUNCTIONS:
        if name in NO_DATABASE:
            assert "DATABASE_SECRET_ARN" not in properties(name)["Environment"]["Variables"], name
        elif name != "MigrateFunction":
            own = properties(name)["Environment"]["Variables"]["DATABASE_SECRET_ARN"]
            assert own == {"Ref": DATABASE_LOGINS[name]}, name
    # The functions that face the internet sign in with a login of their own.
    assert {DATABASE_LOGINS[name] for name in VERIFIERS.values()} == {"IngestDatabaseSecret"}
    assert "IngestDatabaseSecret" not in {DATABASE_LOGINS.get(n) for n in FUNCTIONS if n not in VERIFIERS.values()}


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
        "ConsoleFunctionRole",  # an operator's replay from the console
        "MoodleWebhookFunctionRole",
        "ReconcileFunctionRole",  # the records it reads enter the pipeline as events
        "ReplayFunctionRole",
        "ZohoWebhookFunctionRole",
    ]
    # and the roles allowed to send are exactly those the IAM policies let send to a module queue
    module_queues = queue_arns(*QUEUES.values())
    senders_by_iam = {name for name in FUNCTIONS if resources_for(name, "sqs:SendMessage") & module_queues}
    assert {f"{name}Role" for name in senders_by_iam} == {a["Fn::GetAtt"][0] for a in allowed}
    for queue_policy in ("ModuleQueuePolicy", "DeadLetterQueuePolicy"):
        tls = {s["Sid"]: s for s in properties(queue_policy)["PolicyDocument"]["Statement"]}["TlsOnly"]
        assert tls["Effect"] == "Deny"
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_webhook_api_is_throttled_and_logs_access_without_bodies_or_headers() -> None:
    api = properties("WebhookApi")

    assert api["MethodSettings"] == [
        {
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
            "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
            "MetricsEnabled": True,
        }
    ]
    for access, destination in (
        (api["AccessLogSetting"], "WebhookAccessLogGroup"),
        (properties("OperatorApi")["AccessLogSettings"], "ApiAccessLogGroup"),
    ):
        assert access["DestinationArn"] == {"Fn::GetAtt": [destination, "Arn"]}
        line = json.loads(access["Format"].replace("\n", ""))
        assert {"requestId", "ip", "route", "status"} <= set(line)
        assert not [v for v in line.values() if "body" in v.lower() or "header" in v.lower()]


def test_one_address_is_bounded_before_the_routes_shared_throttle_and_its_logs_hold_no_secret() -> None:
    acl = properties("WebhookWebAcl")
    [rate] = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    statement = rate["Statement"]["RateBasedStatement"]

    # Per address, a minute at a time, ahead of every other rule, answered 429
    assert (statement["AggregateKeyType"], statement["EvaluationWindowSec"]) == ("IP", 60)
    assert statement["Limit"] == {"Ref": "WebhookRequestsPerAddressPerMinute"}
    assert rate["Priority"] == min(r["Priority"] for r in acl["Rules"])
    assert rate["Action"] == {"Block": {"CustomResponse": {"ResponseCode": 429}}}
    # Zoho's and Moodle's own addresses, when given, are never counted
    assert statement["ScopeDownStatement"]["Fn::If"][0] == "HasTrustedSenders"
    # The web ACL guards the webhook API's stage, the only way to its routes
    association = properties("WebhookWebAclAssociation")
    assert association["WebACLArn"] == {"Fn::GetAtt": ["WebhookWebAcl", "Arn"]}
    assert association["ResourceArn"]["Fn::Sub"].endswith("/restapis/${WebhookApi}/stages/live")
    # Samples (whole requests) are off; the logs keep blocked requests only, signatures redacted
    assert acl["VisibilityConfig"]["SampledRequestsEnabled"] is False
    assert all(r["VisibilityConfig"]["SampledRequestsEnabled"] is False for r in acl["Rules"])
    logging = properties("WebhookWebAclLogging")
    redacted = {f["SingleHeader"]["Name"] for f in logging["RedactedFields"]}
    assert {"x-zoho-signature", "x-moodle-signature", "x-webhook-token"} <= redacted
    assert logging["LoggingFilter"]["DefaultBehavior"] == "DROP"


def test_every_checkov_suppression_gives_its_reason() -> None:
    suppressions = [
        (name, skip)
        for name, resource in RESOURCES.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]

    assert suppressions
    assert [(name, s["id"]) for name, s in suppressions if len(s.get("comment", "")) < 30] == []


def test_only_the_functions_that_write_deliveries_may_send_to_the_delivery_queue() -> None:
    policy = properties("DeliveryQueuePolicy")
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    allowed = statements["OnlyProcessorsDeliveryAndReplaySend"]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    senders_by_iam = {
        f"{name}Role"
        for name in FUNCTIONS
        if resources_for(name, "sqs:SendMessage") & queue_arns("MoodleDeliveryQueue")
    }

    assert {a["Fn::GetAtt"][0] for a in allowed} == senders_by_iam
    assert statements["TlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_replay_and_privacy_may_delete_from_the_dead_letter_queue() -> None:
    deleters = {name for name in FUNCTIONS if resources_for(name, "sqs:DeleteMessage") & queue_arns("DeadLetterQueue")}

    assert deleters == {"ReplayFunction", "PrivacyFunction"}


def test_no_principal_may_send_to_the_dead_letter_queue_and_no_function_is_allowed_to() -> None:
    statements = {s["Sid"]: s for s in properties("DeadLetterQueuePolicy")["PolicyDocument"]["Statement"]}
    nobody = statements["NobodySends"]

    assert (nobody["Effect"], nobody["Principal"], nobody["Action"]) == ("Deny", "*", "sqs:SendMessage")
    assert nobody["Condition"] == {"Null": {"aws:PrincipalArn": "false"}}  # SQS's own redrive carries none
    assert not {name for name in FUNCTIONS if resources_for(name, "sqs:SendMessage") & queue_arns("DeadLetterQueue")}


def test_privacy_requests_come_only_through_an_iam_signed_route_a_named_policy_opens() -> None:
    # The privacy function's one way in is POST /api/v1/privacy, signed with IAM (API Gateway names
    # the caller); SAM's permission for that route is its resource policy.
    [event] = properties("PrivacyFunction")["Events"].values()
    assert event["Type"] == "HttpApi"
    assert (event["Properties"]["Method"], event["Properties"]["Path"]) == ("POST", "/api/v1/privacy")
    assert event["Properties"]["Auth"] == {"Authorizer": "AWS_IAM"}
    # Who may call it: whoever the college attaches PrivacyRequesterPolicy to, and for nothing else.
    [statement] = RESOURCES["PrivacyRequesterPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "execute-api:Invoke"
    assert statement["Resource"]["Fn::Sub"].endswith(":${OperatorApi}/*/POST/api/v1/privacy")
    assert TEMPLATE["Outputs"]["PrivacyRequesterPolicyArn"]["Value"] == {"Ref": "PrivacyRequesterPolicy"}
