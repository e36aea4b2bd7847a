"""Shared fixtures: a Postgres database of the run's own, moto's SQS server, fresh queues.

Postgres comes from ``TEST_DATABASE_URL`` when set, otherwise from an embedded
server (``pgserver``) started for the run. Either way the run creates a
database of its own, migrates it, and drops only that database at the end.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import Engine, text

from devstack.moodle_standin import MoodleStandIn
from devstack.postgres import create_database, drop_database, start_embedded
from devstack.server import free_port
from event_router.contract import MODULES
from event_router.core.secrets import forget_secrets
from event_router.observability import logger
from event_router.operate.migrate import FUNCTION_ROLES, ensure_login, make_engine, upgrade
from event_router.store.schema import metadata
from tests.moodle_sites import SITES, MoodleSite, StandInSite, real_moodle, real_moodles

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-2",
    "AWS_REGION": "eu-west-2",
    "POWERTOOLS_SERVICE_NAME": "event-router",
}


# moto's server logs every request it serves; the tests' own output is more useful.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    return free_port()


@pytest.fixture(scope="session", autouse=True)
def aws_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_TEST_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Admin URL of the Postgres server the run uses: TEST_DATABASE_URL's, or an embedded one."""
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if admin_url:
        yield admin_url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="event-router-pg-"))
    admin_url, server = start_embedded(data_dir / "data")
    try:
        yield admin_url
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def fresh_database(postgres_server: str) -> Iterator[Callable[[str], str]]:
    """``fresh_database("purpose")``: URL of a new database, dropped when the run ends."""
    created: list[str] = []

    def create(purpose: str) -> str:
        name = f"event_router_{purpose}_{uuid.uuid4().hex[:12]}"
        created.append(name)
        return create_database(postgres_server, name)

    yield create
    for name in created:
        drop_database(postgres_server, name)


@pytest.fixture(scope="session")
def database_url(fresh_database: Callable[[str], str]) -> str:
    """URL of a freshly migrated database that this run created and will drop."""
    url = fresh_database("test")
    upgrade(url)
    return url


def login_url(url: str, username: str, password: str) -> str:
    """``url`` signing in as another login (same server, same database)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"))


@pytest.fixture(scope="session")
def function_logins(database_url: str, engine: Engine) -> Iterator[dict[str, str]]:
    """The test database's URL for each kind of function, signing in as a login of its own made by
    the migration's ``ensure_login`` (``{"event_router_ingest": url, ...}``): the functions the
    tests load run with only the rights the deployed ones have. The logins are dropped at the end."""
    suffix = uuid.uuid4().hex[:8]
    logins = {role: (f"{role}_t{suffix}", f"fake-login-{uuid.uuid4().hex}") for role in FUNCTION_ROLES}
    for role, (username, password) in logins.items():
        ensure_login(engine, username, password, role)
    yield {role: login_url(database_url, username, password) for role, (username, password) in logins.items()}
    engine.dispose()  # nothing of ours may hold a login's session
    with engine.begin() as connection:
        for username, _ in logins.values():
            connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{username}"')


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, application_name="event-router-tests")
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Engine:
    """The test database, emptied before the test."""
    tables = ", ".join(table.name for table in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    return engine


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """moto's server on a loopback port: the same SQS the local stack runs."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_SQS", endpoint)
        yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def sqs(sqs_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="eu-west-2")


class Queues:
    """A fresh set of module queues and their dead-letter queue, named for one test."""

    def __init__(self, sqs: Any, max_receive_count: int = 5) -> None:
        self.sqs = sqs
        prefix = f"t{uuid.uuid4().hex[:10]}"
        self.dlq_url = sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "{max_receive_count}"}}'
        self.urls = {
            module: sqs.create_queue(
                QueueName=f"{prefix}-{module}", Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "30"}
            )["QueueUrl"]
            for module in MODULES
        }

    def environment(self) -> dict[str, str]:
        return {f"{module.upper()}_QUEUE_URL": url for module, url in self.urls.items()}

    def receive_all(self, url: str) -> list[dict[str, Any]]:
        """Every message waiting on ``url``, deleted as it is read."""
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not batch:
                return messages
            messages += batch
            self.sqs.delete_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
            )

    def depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def queues(sqs: Any) -> Queues:
    return Queues(sqs)


@pytest.fixture
def secrets_manager(sqs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Secrets Manager (moto's server) for the functions loaded in this test; the secrets a function
    kept and its clients are dropped, so the next read sees this endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", sqs_endpoint)
    forget_secrets()
    yield boto3.client("secretsmanager", endpoint_url=sqs_endpoint, region_name="eu-west-2")
    forget_secrets()


class LogCapture:
    """Everything one test's code wrote: Powertools log lines and stdout (EMF metrics)."""

    def __init__(self, buffer: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
        self._buffer = buffer
        self._capsys = capsys
        self._printed: list[str] = []

    def lines(self) -> list[str]:
        self._printed.append(self._capsys.readouterr().out)
        return [line for line in (self._buffer.getvalue() + "".join(self._printed)).splitlines() if line.strip()]


SUITE_OUTPUT: list[str] = []  # every line every test's code logged, for the check at the end of the run


@pytest.fixture(autouse=True)
def _log_capture(capsys: pytest.CaptureFixture[str]) -> Iterator[LogCapture]:
    handler = logger.registered_handler
    buffer = io.StringIO()
    previous = handler.setStream(buffer)  # type: ignore[attr-defined]
    capture = LogCapture(buffer, capsys)
    yield capture
    handler.setStream(previous)  # type: ignore[attr-defined]
    SUITE_OUTPUT.extend(capture.lines())


@pytest.fixture
def captured_logs(_log_capture: LogCapture) -> Callable[[], list[str]]:
    """Every log line and EMF metric line the code under test writes."""
    return _log_capture.lines


def _forbidden_in_logs() -> dict[str, str]:
    """Distinctive values the suite sends through every path, which no log line may contain."""
    from devstack.samples import DEV_SECRETS, DEV_TOKENS, SAMPLES, ZOHO_RECORDS

    forbidden = {f"secret {name}": value for name, value in {**DEV_SECRETS, **DEV_TOKENS}.items()}
    for name, sample in SAMPLES.items():
        for header, value in sample.headers().items():
            if header.endswith("-signature"):
                forbidden[f"signature of {name}"] = value.lower().removeprefix("sha256=")
    for _, _, record in ZOHO_RECORDS.values():
        for field in ("Name", "Student_ID_Number", "Academic_Email"):
            if field in record:
                forbidden[f"payload value {field}"] = record[field]
    return forbidden


@pytest.fixture(scope="session", autouse=True)
def no_secret_signature_or_payload_value_in_any_log_line() -> Iterator[None]:
    """Checked once the whole suite has run: its own output and the local stacks' log files."""
    yield
    from devstack.process import RunningStack

    output = "\n".join(SUITE_OUTPUT).lower()
    for path in RunningStack.log_files:
        if path.exists():
            output += "\n" + path.read_text(errors="replace").lower()
    leaks = [what for what, value in _forbidden_in_logs().items() if value.lower() in output]
    assert leaks == [], f"log lines leak: {leaks}"


# ------------------------------------------------------------------ Moodle sites

# The Moodle plugin is PHP: only a real Moodle can run its tests (.ci/run starts one).
collect_ignore = [] if real_moodles() else ["e2e/test_moodle_plugin.py"]


@pytest.fixture(scope="session")
def moodle_standin() -> Iterator[MoodleStandIn]:
    server = MoodleStandIn().start()
    yield server
    server.stop()


@pytest.fixture(params=SITES)
def moodle_site(request: pytest.FixtureRequest, moodle_standin: MoodleStandIn) -> MoodleSite:
    """Each test runs once per site: the same assertions must hold for the stand-in and the real one."""
    if request.param == "stand-in":
        return StandInSite(moodle_standin)
    site = real_moodle()
    assert site is not None
    return site


@pytest.fixture
def unique() -> str:
    """A suffix that keeps one test's users and courses apart from every other run's (a real Moodle
    keeps what earlier runs created)."""
    return uuid.uuid4().hex[:10]
