"""Faults injected for real: Postgres stopped and restarted, SQS unreachable, a processor killed.

Figure proved in every test: after recovery, every accepted event (answered 202) is
``completed`` exactly once — one completed log row each, and one write of its mirror row
(a trigger counts every write). Postgres here is a server of the tests' own, so it can stop.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devstack.invoke import LocalContext, load_function
from devstack.poller import QueuePoller
from devstack.postgres import StoppablePostgres, create_database
from devstack.process import RunningStack
from devstack.samples import Sample, dev_environment, zoho_webhook
from event_router.operate.migrate import make_engine, upgrade
from tests.conftest import Queues, closed_port
from tests.integration.conftest import FUNCTIONS

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def postgres() -> Iterator[StoppablePostgres]:
    data_dir = Path(tempfile.mkdtemp(prefix="event-router-faults-"))
    server = StoppablePostgres(data_dir / "data")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def database(postgres: StoppablePostgres) -> Iterator[tuple[str, Engine]]:
    """A fresh database on the stoppable server, with every mirror write counted."""
    url = create_database(postgres.admin_url, f"faults_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    engine = make_engine(url, pool_pre_ping=True)
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE mirror_writes (record_id text, at timestamptz DEFAULT clock_timestamp())")
        )
        connection.execute(text("CREATE TABLE fault_settings (delay float)"))
        connection.execute(text("INSERT INTO fault_settings VALUES (0)"))
        connection.execute(
            text("""CREATE FUNCTION count_write() RETURNS trigger AS $$
                    BEGIN
                      PERFORM pg_sleep((SELECT delay FROM fault_settings));
                      INSERT INTO mirror_writes (record_id) VALUES (NEW.zoho_record_id);
                      RETURN NEW;
                    END $$ LANGUAGE plpgsql""")
        )
        connection.execute(
            text(
                "CREATE TRIGGER count_write AFTER INSERT OR UPDATE ON students "
                "FOR EACH ROW EXECUTE FUNCTION count_write()"
            )
        )
    yield url, engine
    engine.dispose()


def slow_writes(engine: Engine, seconds: float) -> None:
    """Make every mirror write take a while, so that faults land while processors are busy."""
    with engine.begin() as connection:
        connection.execute(text("UPDATE fault_settings SET delay = :d"), {"d": seconds})


def webhook(n: int, run: str) -> Sample:
    return zoho_webhook(
        "students",
        f"F{run}{n:05d}",
        modified="2026-11-25T09:00:00Z",
        notification_id=f"fault-{run}-{n}",
        name=f"fault-{n}",
        Name=f"Student {n}",
    )


def load(name: str, environment: dict[str, str], **overrides: str) -> Invoke:
    """A fresh container of a function of the template, as the integration tests' ``load``."""
    spec = FUNCTIONS[name]
    fixed = {key: value for key, value in spec.environment.items() if isinstance(value, str)}
    handler = load_function(spec.code_uri, spec.handler, {**fixed, **environment, **overrides}, name)
    return lambda event: handler(event, LocalContext(name))


@pytest.fixture
def stack(database: tuple[str, Engine], queues: Queues, sqs_endpoint: str) -> dict[str, Any]:
    url, _ = database
    environment = {
        "DATABASE_URL": url,
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
        "DEAD_LETTER_QUEUE_URL": queues.dlq_url,
        "MAX_RECEIVE_COUNT": "50",
        **queues.environment(),
        **dev_environment(),
    }
    processor = load("StudentsProcessor", environment)
    return {
        "environment": environment,
        "verifier": load("ZohoWebhookFunction", environment),
        "verifier_without_sqs": lambda: load(
            "ZohoWebhookFunction",
            environment,
            AWS_ENDPOINT_URL_SQS=f"http://127.0.0.1:{closed_port()}",
        ),
        "replay": load("ReplayFunction", environment),
        "poller": QueuePoller(
            queues.sqs, queues.urls["students"], lambda e, _c: processor(e), "StudentsProcessor", retry_immediately=True
        ),
    }


def drain_until_done(poller: QueuePoller, engine: Engine, expected: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        poller.poll_once()
        if completed(engine) >= expected:
            return
    raise AssertionError(f"not completed: {sorted(expected - completed(engine))[:5]}")


def completed(engine: Engine) -> set[str]:
    try:
        with engine.connect() as connection:
            query = text("SELECT event_id FROM integration_events_log WHERE status = 'completed'")
            return set(connection.execute(query).scalars())
    except Exception:  # noqa: BLE001 - the database may be the thing that is down
        return set()


def assert_exactly_once(engine: Engine, accepted: set[str]) -> None:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT event_id, status FROM integration_events_log")).all()
        writes = connection.execute(text("SELECT record_id, count(*) FROM mirror_writes GROUP BY 1")).all()
    assert {e for e, s in rows if s == "completed"} == accepted
    assert len(writes) == len(accepted)
    assert {n for _, n in writes} == {1}, [w for w in writes if w[1] != 1]


def test_postgres_stopped_mid_burst_loses_nothing(
    stack: dict[str, Any], database: tuple[str, Engine], postgres: StoppablePostgres
) -> None:
    _, engine = database
    accepted = set()
    for n in range(40):
        if n == 20:
            postgres.stop()  # the event log is gone: the verifier must queue without it
        response = stack["verifier"](webhook(n, "pgdown").event())
        assert response["statusCode"] == 202
        accepted.add(json.loads(response["body"])["event_id"])
    postgres.start()

    drain_until_done(stack["poller"], engine, accepted)

    assert_exactly_once(engine, accepted)


def test_sqs_unavailable_leaves_rows_the_sweep_queues(stack: dict[str, Any], database: tuple[str, Engine]) -> None:
    _, engine = database
    offline = stack["verifier_without_sqs"]()
    accepted = set()
    for n in range(30):
        response = (offline if n % 2 else stack["verifier"])(webhook(n, "sqsdown").event())
        assert response["statusCode"] == 202
        accepted.add(json.loads(response["body"])["event_id"])

    stack["poller"].drain()
    assert len(completed(engine)) == 15  # the other half waits in the log, received
    swept = stack["replay"]({"mode": "log", "statuses": ["received"], "received_grace_seconds": 0})
    assert swept["replayed"] == 15
    drain_until_done(stack["poller"], engine, accepted)

    assert_exactly_once(engine, accepted)


def test_both_down_answers_503_and_the_retried_events_complete_once(
    stack: dict[str, Any], database: tuple[str, Engine], postgres: StoppablePostgres, queues: Queues
) -> None:
    _, engine = database
    offline = stack["verifier_without_sqs"]()
    postgres.stop()
    refused = [webhook(n, "bothdown") for n in range(10)]
    statuses = [offline(sample.event())["statusCode"] for sample in refused]
    assert statuses == [503] * 10
    postgres.start()
    assert queues.depth(queues.urls["students"]) == 0
    assert completed(engine) == set()

    # the senders retry, as a 503 with Retry-After asks them to
    accepted = {json.loads(stack["verifier"](s.event())["body"])["event_id"] for s in refused}
    drain_until_done(stack["poller"], engine, accepted)

    assert_exactly_once(engine, accepted)


def backed_off_poller(stack: dict[str, Any], queues: Queues, base_seconds: str) -> QueuePoller:
    """The students processor behind its queue as Lambda runs it: a failed message comes back when its
    visibility timeout ends (no shortcut), which the processor extends by its retry schedule."""
    processor = load("StudentsProcessor", stack["environment"], MAX_RECEIVE_COUNT="4", RETRY_BASE_SECONDS=base_seconds)
    return QueuePoller(queues.sqs, queues.urls["students"], lambda e, _c: processor(e), "StudentsProcessor")


def fast_redrive(queues: Queues, max_receive_count: int = 4) -> None:
    """The students queue with a 1-second visibility timeout and a short redrive: retries come fast."""
    dlq_arn = queues.sqs.get_queue_attributes(QueueUrl=queues.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
    queues.sqs.set_queue_attributes(
        QueueUrl=queues.urls["students"], Attributes={"VisibilityTimeout": "1", "RedrivePolicy": redrive}
    )


def test_database_restarted_while_processors_run_loses_nothing(
    stack: dict[str, Any], database: tuple[str, Engine], postgres: StoppablePostgres, queues: Queues
) -> None:
    # Before: the test's poller retried failed messages at once, so a restart that took a few seconds
    # used up the queue's five receives and dead-lettered events (2 of 2 fresh clones on 2 cores).
    # The processors now space their retries out; the poller retries only when SQS would.
    _, engine = database
    accepted = {json.loads(stack["verifier"](webhook(n, "restart").event())["body"])["event_id"] for n in range(120)}
    fast_redrive(queues)
    poller = backed_off_poller(stack, queues, base_seconds="1")
    slow_writes(engine, 0.01)
    busy = threading.Thread(target=lambda: drain_until_done(poller, engine, accepted, timeout=90))
    busy.start()
    time.sleep(0.5)  # processors are mid-way through the backlog

    postgres.stop()
    time.sleep(0.5)
    postgres.start()
    busy.join()

    assert len(accepted) > 0
    assert queues.depth(queues.dlq_url) == 0
    assert_exactly_once(engine, accepted)


@pytest.mark.parametrize(("base_seconds", "dead_lettered"), [("1", False), ("0", True)], ids=["backoff", "none"])
def test_a_database_outage_within_the_retry_window_dead_letters_nothing(
    base_seconds: str,
    dead_lettered: bool,
    stack: dict[str, Any],
    database: tuple[str, Engine],
    postgres: StoppablePostgres,
    queues: Queues,
) -> None:
    # Given retries 1, 4 and 16 seconds apart and four receives (the template's schedule scaled down:
    # 2, 8 and 32 minutes apart, then 128, with five receives), the last receive comes 21 s after the first
    _, engine = database
    accepted = {
        json.loads(stack["verifier"](webhook(n, f"outage{base_seconds}").event())["body"])["event_id"]
        for n in range(20)
    }
    fast_redrive(queues)
    poller = backed_off_poller(stack, queues, base_seconds)

    # When Postgres is down for a few seconds while the processor keeps trying
    postgres.stop()
    outage_ends = time.monotonic() + 4
    while time.monotonic() < outage_ends:
        poller.poll_once()
        time.sleep(0.2)
    postgres.start()

    # Then, with the back-off, every event completes once and nothing is dead-lettered;
    # without it (the queue's 1-second timeout alone), the same outage dead-letters them
    if dead_lettered:
        deadline = time.monotonic() + 30
        while queues.depth(queues.dlq_url) < len(accepted) and time.monotonic() < deadline:
            poller.poll_once()
        assert queues.depth(queues.dlq_url) == len(accepted)
    else:
        drain_until_done(poller, engine, accepted, timeout=60)
        assert queues.depth(queues.dlq_url) == 0
        assert_exactly_once(engine, accepted)


def test_processor_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    database: tuple[str, Engine], tmp_path: Path
) -> None:
    url, engine = database
    slow_writes(engine, 0.02)
    local = tmp_path / "local"
    samples = [webhook(n, "kill") for n in range(150)]
    first = RunningStack(local, url, "QueueVisibilityTimeout=2 ProcessorBatchingWindow=0 RetryBaseDelaySeconds=1")
    first.start()
    accepted: set[str] = set()

    def send(sample: Sample) -> None:
        try:
            status, answer = first.send(sample)
        except OSError:
            return  # no answer: the sender will retry
        if status == 202:
            accepted.add(answer["event_id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, samples))
    deadline = time.monotonic() + 30
    while len(completed(engine)) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 0 < len(completed(engine)) < len(accepted)  # killed while processing
    assert first.process is not None
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)

    # When the stack starts again, the events left on its (in-memory) queues are queued again
    second = RunningStack(local, url, "QueueVisibilityTimeout=2 ProcessorBatchingWindow=0 RetryBaseDelaySeconds=1")
    second.start()
    try:
        for sample in samples:  # senders without an answer retry; the others' retries are duplicates
            status, answer = second.send(sample)
            assert status in (200, 202)
            accepted.add(answer["event_id"])
        deadline = time.monotonic() + 90
        while completed(engine) < accepted and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        second.stop()

    assert_exactly_once(engine, accepted)
