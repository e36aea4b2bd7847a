"""Functions loaded the way Lambda loads them, wired to the test database and queues."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devstack.apigw import http_api_event
from devstack.invoke import LocalContext, load_function
from devstack.moodle_standin import MoodleStandIn
from devstack.poller import QueuePoller
from devstack.samples import EVENTS_DIR, Sample, dev_environment
from devstack.template import functions, load_template
from devstack.zoho_standin import ZohoStandIn
from event_router.contract import Module
from tests.conftest import Queues, closed_port
from tests.integration.flow import rows
from tests.integration.pipelines import Invoke, ZohoPipeline

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()
FUNCTIONS = functions(TEMPLATE)  # code, handler and the fixed part of each environment
# Which database role each login secret is for, as MigrateFunction is told ({"Ref": secret} → role).
LOGIN_ROLES = {
    secret.strip("${}"): role
    for role, secret in json.loads(
        TEMPLATE["Resources"]["MigrateFunction"]["Properties"]["Environment"]["Variables"]["DATABASE_LOGINS"]["Fn::Sub"]
    ).items()
}


def login_role(function: str) -> str | None:
    """The database role ``function`` signs in with when deployed (None: the owner, MigrateFunction)."""
    secret = FUNCTIONS[function].environment.get("DATABASE_SECRET_ARN")
    return LOGIN_ROLES.get(secret["Ref"]) if isinstance(secret, dict) else None


VERIFIERS = {"zoho": "ZohoWebhookFunction", "moodle": "MoodleWebhookFunction"}
PROCESSORS: dict[Module, str] = {
    "students": "StudentsProcessor",
    "enrollments": "EnrollmentsProcessor",
    "grades": "GradesProcessor",
    "payments": "PaymentsProcessor",
}


def load_event(name: str) -> dict[str, Any]:
    """A sample event from ``events/``, exactly as committed."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())  # type: ignore[no-any-return]


def body(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])  # type: ignore[no-any-return]


OFFICER = "arn:aws:iam::123456789012:role/college-data-protection-officer"


def privacy_route(invoke: Invoke, caller: str | None = OFFICER) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The privacy function as its callers reach it: ``POST /api/v1/privacy``, signed with IAM as
    ``caller`` (None: unsigned, as a direct invoke shaped like a request would be); the answer's body."""

    def request(payload: dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps(payload).encode()
        event = http_api_event("POST", "/api/v1/privacy", raw, {"content-type": "application/json"}, iam_caller=caller)
        return body(invoke(event))

    return request


@pytest.fixture
def function_environment(database_url: str, queues: Queues, sqs_endpoint: str) -> dict[str, str]:
    """What every function of the stack is configured with in the tests."""
    return {
        "DATABASE_URL": database_url,
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
        "DEAD_LETTER_QUEUE_URL": queues.dlq_url,
        "MAX_RECEIVE_COUNT": "5",
        **queues.environment(),
        **dev_environment(),
    }


@pytest.fixture
def load(function_environment: dict[str, str], function_logins: dict[str, str]) -> Callable[..., Invoke]:
    """``load("GradesProcessor", MODULE="grades")``: a fresh container of that function, signed in to
    the test database with its own kind's login (as deployed), unless ``DATABASE_URL`` is given."""

    def start(name: str, **overrides: str) -> Invoke:
        spec = FUNCTIONS[name]
        fixed = {key: value for key, value in spec.environment.items() if isinstance(value, str)}  # SOURCE, MODULE
        role = login_role(name)
        login = {"DATABASE_URL": function_logins[role]} if role else {}
        environment = {**fixed, **function_environment, **login, **overrides}
        if environment.get("ZOHO_CREDENTIALS") and "ZOHO_CREDENTIALS_SECRET_ARN" not in spec.environment:
            # Deployed, only the Zoho delivery function holds Zoho's client secret; the others call
            # Zoho with the token it keeps fresh in Postgres.
            environment |= {"ZOHO_CREDENTIALS": "", "ZOHO_API": "true"}
        handler = load_function(spec.code_uri, spec.handler, environment, name)

        def invoke(event: dict[str, Any]) -> dict[str, Any]:
            return handler(event, LocalContext(name, timeout_seconds=spec.timeout))  # each call its own clock

        return invoke

    return start


@pytest.fixture
def load_verifier(load: Callable[..., Invoke]) -> Callable[..., Invoke]:
    """``load_verifier("zoho", DATABASE_URL=...)``: a fresh container of that verifier."""
    return lambda source, **overrides: load(VERIFIERS[source], **overrides)


@pytest.fixture
def pollers(load: Callable[..., Invoke], queues: Queues) -> Callable[..., QueuePoller]:
    """``pollers("grades")``: the grades processor behind its queue, as Lambda's SQS trigger runs it."""

    def poller(module: Module, batch_size: int = 10) -> QueuePoller:
        name = PROCESSORS[module]
        invoke = load(name)
        return QueuePoller(
            queues.sqs,
            queues.urls[module],
            lambda event, _context: invoke(event),
            name,
            batch_size=batch_size,
            retry_immediately=True,
        )

    return poller


@pytest.fixture
def send(load_verifier: Callable[..., Invoke]) -> Callable[[Sample], dict[str, Any]]:
    verifiers = {"zoho": load_verifier("zoho"), "moodle": load_verifier("moodle")}

    def deliver(sample: Sample) -> dict[str, Any]:
        response = verifiers[sample.source](sample.event())
        assert response["statusCode"] in (200, 202), response
        return json.loads(response["body"])  # type: ignore[no-any-return]

    return deliver


@pytest.fixture
def mirror_writes(db: Engine) -> Iterator[Callable[[], dict[str, int]]]:
    """Counts every INSERT or UPDATE of a mirror row, keyed by table and row key (the counting runs
    as the test's owner login: the functions' logins may not write the test's table)."""
    tables = ("students", "enrollments", "grades", "moodle_enrolments", "moodle_grades")
    with db.begin() as connection:
        connection.execute(text("CREATE TABLE mirror_writes (table_name text, row_key text)"))
        connection.execute(
            text("""
            CREATE FUNCTION count_mirror_write() RETURNS trigger SECURITY DEFINER AS $$
            BEGIN
              INSERT INTO mirror_writes VALUES (TG_TABLE_NAME, coalesce(
                to_jsonb(NEW)->>'zoho_record_id',
                concat_ws(':', to_jsonb(NEW)->>'moodle_user_id', to_jsonb(NEW)->>'moodle_course_id',
                          to_jsonb(NEW)->>'grade_item_id')));
              RETURN NEW;
            END $$ LANGUAGE plpgsql""")
        )
        for table in tables:
            connection.execute(
                text(
                    f"CREATE TRIGGER count_writes AFTER INSERT OR UPDATE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION count_mirror_write()"
                )
            )

    def counts() -> dict[str, int]:
        found = rows(db, "SELECT table_name || '/' || row_key AS k, count(*) AS n FROM mirror_writes GROUP BY 1")
        return {r["k"]: r["n"] for r in found}

    yield counts
    with db.begin() as connection:
        for table in tables:
            connection.execute(text(f"DROP TRIGGER count_writes ON {table}"))
        connection.execute(text("DROP FUNCTION count_mirror_write() CASCADE"))
        connection.execute(text("DROP TABLE mirror_writes"))


def down_database_url() -> str:
    """A database URL where nothing listens: Postgres down."""
    return f"postgresql://postgres@127.0.0.1:{closed_port()}/event_router"


def refuse_writes(
    db: Engine, record_id: str, errcode: str, table: str = "grades", column: str = "zoho_record_id"
) -> Callable[[], None]:
    """Make every write of ``table``'s record ``record_id`` (its ``column``) fail in the database
    with SQLSTATE condition ``errcode``; returns what lifts it."""
    name = f"refuse_{record_id.lower()}"
    with db.begin() as connection:
        connection.execute(
            text(f"""
            CREATE FUNCTION {name}() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{errcode}'; END $$ LANGUAGE plpgsql""")
        )
        connection.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW "
                f"WHEN (NEW.{column} = '{record_id}') EXECUTE FUNCTION {name}()"
            )
        )

    def lift() -> None:
        with db.begin() as connection:
            connection.execute(text(f"DROP FUNCTION IF EXISTS {name}() CASCADE"))

    return lift


@pytest.fixture
def poison(db: Engine) -> Iterator[Callable[[], None]]:
    """Makes every write of grade record POISON fail (an exception raised by a trigger, which may
    pass: retried), until the returned cure is called."""
    cure = refuse_writes(db, "POISON", "raise_exception")
    yield cure
    cure()


@pytest.fixture
def refuse_values(db: Engine) -> Iterator[Callable[[], None]]:
    """Makes the database refuse grade record BADVALUE with a data error (SQLSTATE 22003), as it
    refuses a value out of range, until the returned fix is called."""
    fix = refuse_writes(db, "BADVALUE", "numeric_value_out_of_range")
    yield fix
    fix()


# ------------------------------------------------------------------ the pipeline with both stand-ins


@pytest.fixture
def zoho_standin() -> Iterator[ZohoStandIn]:
    server = ZohoStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def moodle_standin_site() -> Iterator[MoodleStandIn]:
    server = MoodleStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def pipeline(
    load: Callable[..., Invoke],
    queues: Queues,
    zoho_standin: ZohoStandIn,
    moodle_standin_site: MoodleStandIn,
    db: Engine,  # emptied first: no token of another test's Zoho
    database_url: str,
) -> ZohoPipeline:
    return ZohoPipeline(load, queues, zoho_standin, moodle_standin_site, db, database_url)
