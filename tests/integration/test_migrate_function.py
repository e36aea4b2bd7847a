"""MigrateFunction: CloudFormation's custom resource runs the migrations and hears how it went."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from scramp import ScramMechanism
from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.exc import DBAPIError

from event_router.operate.migrate import MIGRATIONS, make_engine
from tests.conftest import closed_port
from tests.integration.conftest import Invoke


class CloudFormation:
    """Stands in for the pre-signed S3 URL CloudFormation waits on: records what it was sent."""

    def __init__(self) -> None:
        self.responses: list[dict[str, Any]] = []

    def connection(self, host: str, context: Any = None) -> Any:
        recorder = self

        class Connection:
            def request(self, method: str, url: str, body: str, headers: dict[str, str]) -> None:
                assert method == "PUT"
                recorder.responses.append(json.loads(body))

            def getresponse(self) -> Any:
                return mock.Mock(status=200, reason="OK")

        return Connection()


@pytest.fixture
def cloudformation() -> Iterator[CloudFormation]:
    # crhelper answers CloudFormation over HTTPS to the ResponseURL; catch the answer instead.
    recorder = CloudFormation()
    with mock.patch("crhelper.utils.HTTPSConnection", recorder.connection):
        yield recorder


def request(kind: str) -> dict[str, Any]:
    return {
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:eu-west-2:123456789012:function:MigrateFunction",
        "ResponseURL": "https://cloudformation-custom-resource-response-euwest2.s3.amazonaws.com/signed",
        "StackId": "arn:aws:cloudformation:eu-west-2:123456789012:stack/event-router/1",
        "RequestId": f"request-{kind}",
        "LogicalResourceId": "DatabaseMigration",
        "PhysicalResourceId": "event-router-schema",
        "ResourceType": "Custom::DatabaseMigration",
        "ResourceProperties": {"SchemaSource": "arn:aws:lambda:eu-west-2:123456789012:layer:common:7"},
    }


def test_create_migrates_the_database_and_reports_success(
    load: Callable[..., Invoke], fresh_database: Callable[[str], str], cloudformation: CloudFormation
) -> None:
    url = fresh_database("migrate")

    load("MigrateFunction", DATABASE_URL=url)(request("Create"))

    [answer] = cloudformation.responses
    assert (answer["Status"], answer["PhysicalResourceId"], answer["Data"]) == (
        "SUCCESS",
        "event-router-schema",
        {"Revision": head_revision()},
    )
    engine = make_engine(url)
    assert {"integration_events_log", "students", "moodle_grades"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_create_gives_each_kind_of_function_a_login_that_may_read_and_write_but_not_change_the_schema(
    load: Callable[..., Invoke],
    fresh_database: Callable[[str], str],
    cloudformation: CloudFormation,
    sqs_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the app login's secret, as the stack generates it
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", sqs_endpoint)
    url = fresh_database("login")
    username = f"event_router_fn_{uuid.uuid4().hex[:8]}"
    secrets = boto3.client("secretsmanager", endpoint_url=sqs_endpoint, region_name="eu-west-2")
    arn = secrets.create_secret(
        Name=f"app-login-{username}", SecretString=json.dumps({"username": username, "password": "fake-pw-1"})
    )["ARN"]
    verifiers = f"event_router_ingest_fn_{uuid.uuid4().hex[:8]}"
    verifiers_arn = secrets.create_secret(
        Name=f"login-{verifiers}", SecretString=json.dumps({"username": verifiers, "password": "fake-pw-3"})
    )["ARN"]
    logins = json.dumps({"event_router_app": arn, "event_router_ingest": verifiers_arn})
    owner = make_engine(url)
    statements: list[str] = []

    def record(*args: Any) -> None:  # every statement any engine in this process sends
        statements.append(str(args[2]))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        # When CloudFormation creates the migration resource
        load("MigrateFunction", DATABASE_URL=url, DATABASE_LOGINS=logins)(request("Create"))
        assert cloudformation.responses[0]["Status"] == "SUCCESS"

        # Then the password never reached Postgres: its SCRAM verifier did, and it checks out
        assert any("ROLE" in s for s in statements)
        assert not [s for s in statements if "fake-pw-1" in s]
        with owner.connect() as connection:
            stored = connection.execute(
                text("SELECT rolpassword FROM pg_authid WHERE rolname = :n"), {"n": username}
            ).scalar_one()
        method, rest = stored.split("$", 1)
        iterations, salt = rest.split("$")[0].split(":")
        stored_key = rest.split("$")[1].split(":")[0]
        _, again, _, _ = ScramMechanism("SCRAM-SHA-256").make_auth_info(
            "fake-pw-1", iteration_count=int(iterations), salt=base64.b64decode(salt)
        )
        assert (method, base64.b64encode(again).decode()) == ("SCRAM-SHA-256", stored_key)

        # Then each kind of function's login is a member of its own role, and of no other
        with owner.connect() as connection:
            roles = dict(
                connection.execute(
                    text("""SELECT m.rolname, r.rolname FROM pg_auth_members a
                            JOIN pg_roles m ON m.oid = a.member JOIN pg_roles r ON r.oid = a.roleid
                            WHERE m.rolname IN (:app, :verifiers)"""),
                    {"app": username, "verifiers": verifiers},
                ).all()
            )
        assert roles == {username: "event_router_app", verifiers: "event_router_ingest"}
        # and Postgres closes what an idle (frozen) container leaves open
        with owner.connect() as connection:
            settings = connection.execute(
                text("""SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                        WHERE r.rolname = :name"""),
                {"name": verifiers},
            ).scalar_one()
        assert settings == ["idle_session_timeout=5min"]

        # And the operators' login may read and write the router's tables
        app = make_engine(with_user(url, username))
        with app.begin() as connection:
            connection.execute(
                text("INSERT INTO students (zoho_record_id, data) VALUES ('S1', '{}')"),
            )
            connection.execute(text("UPDATE students SET name = 'x' WHERE zoho_record_id = 'S1'"))
            connection.execute(text("DELETE FROM students"))
            assert connection.execute(text("SELECT count(*) FROM integration_events_log")).scalar_one() == 0
        # and may not change the schema or the migrations' bookkeeping
        for statement in (
            "CREATE TABLE intruder (id int)",
            "DROP TABLE students",
            "ALTER TABLE students ADD COLUMN x int",
            "DELETE FROM alembic_version",
        ):
            with pytest.raises(DBAPIError, match="42501"), app.begin() as connection:
                connection.execute(text(statement))
        app.dispose()

        # and a second deploy (a rotated password) updates the same login
        secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": username, "password": "pw-2"}))
        load(
            "MigrateFunction",
            DATABASE_URL=url,
            DATABASE_LOGINS=logins,
            AWS_ENDPOINT_URL_SECRETS_MANAGER=sqs_endpoint,
        )(request("Update"))
        assert [r["Status"] for r in cloudformation.responses] == ["SUCCESS", "SUCCESS"]
    finally:
        event.remove(Engine, "before_cursor_execute", record)
        with owner.begin() as connection:
            connection.execute(text(f'DROP ROLE IF EXISTS "{username}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{verifiers}"'))
        owner.dispose()


def with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def test_a_migration_that_cannot_run_fails_the_deploy_instead_of_hanging_it(
    load: Callable[..., Invoke], cloudformation: CloudFormation
) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{closed_port()}/event_router"

    load("MigrateFunction", DATABASE_URL=unreachable)(request("Update"))

    [answer] = cloudformation.responses
    assert answer["Status"] == "FAILED"
    assert answer["Reason"]


def test_deleting_the_stack_keeps_the_schema(
    load: Callable[..., Invoke], fresh_database: Callable[[str], str], cloudformation: CloudFormation
) -> None:
    url = fresh_database("keep")

    load("MigrateFunction", DATABASE_URL=url)(request("Delete"))

    [answer] = cloudformation.responses
    assert answer["Status"] == "SUCCESS"
    engine = make_engine(url)
    assert inspect(engine).get_table_names() == []  # nothing created, nothing dropped
    engine.dispose()
