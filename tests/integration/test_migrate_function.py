"""MigrateFunction: CloudFormation's custom resource runs the migrations and hears how it went."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import inspect

from event_router.engine import make_engine
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
        {"Revision": "0002"},
    )
    engine = make_engine(url)
    assert {"integration_events_log", "students", "moodle_grades"} <= set(inspect(engine).get_table_names())
    engine.dispose()


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
