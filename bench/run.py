"""``make bench``: how fast the router accepts, processes and starts, as ratios to floors measured
in the same run, plus round trips counted, a burst through the local stack, and package sizes.

Every speed figure is a median over many runs; every ratio divides by a floor measured in the
same run, against the same database and the same queue state, so a noisy machine moves both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pg8000.core
import pg8000.native

from bench.delivery import (
    moodle_calls_and_rate,
    webhook_to_moodle_lag,
    webhook_to_zoho_lag,
    zoho_calls_per_1000_grades,
)
from bench.first_day import first_day_import
from bench.growth import health_flood, stats_growth
from bench.harness import ROOT, Harness, harness, median, percentile, quiet, say
from devstack.invoke import environment
from devstack.poller import lambda_sqs_event
from devstack.samples import Sample, zoho_webhook
from event_router.contract import Module
from event_router.messages import EventMessage
from event_router.queues import message_attributes, sqs_client
from event_router.settings import Settings
from event_router.store.connection import connect_params
from event_router.store.eventlog import MARK_QUEUED_SQL, RECORD_SQL, PgEventLog
from event_router.verify.payloads import decode_body, parse_event

STUDENT_ROUTE = "POST /api/v1/events/zoho/student"
Row = tuple[str, str, str, str]  # measure, value, target, verdict


def student_webhook(n: int, tag: str) -> Sample:
    stamp = datetime.now(UTC).isoformat()
    return zoho_webhook(
        "students",
        f"57257670{n:011d}",
        modified=stamp,
        notification_id=f"bench-{tag}-{n}",
        Name=f"Student {n}",
        Student_ID_Number=f"BTEC-{n:06d}",
        Academic_Email=f"student{n}@students.example.ac.uk",
    )


def event_of(sample: Sample) -> EventMessage:
    return parse_event("zoho", "students", decode_body(sample.body))


def sqs_batch(events: list[EventMessage]) -> dict[str, Any]:
    """The SQS event a processor receives for ``events``, first delivery."""
    messages = [
        {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": "r",
            "Body": e.model_dump_json(),
            "MD5OfBody": "",
            "Attributes": {"ApproximateReceiveCount": "1"},
        }
        for e in events
    ]
    return lambda_sqs_event(messages, "arn:aws:sqs:eu-west-2:123456789012:bench-students")


def pg(url: str) -> pg8000.native.Connection:
    return pg8000.native.Connection(
        **connect_params(url, timeout=10, statement_timeout_ms=10_000, application_name="bench-floor")
    )


def verifier_log(url: str) -> PgEventLog:
    """The verifier's event log, to leave events as a verifier does: logged and queued."""
    return PgEventLog(
        lambda: connect_params(url, timeout=10, statement_timeout_ms=10_000, application_name="bench-setup")
    )


def log_as_verified(log: PgEventLog, events: list[EventMessage]) -> None:
    for event in events:
        log.record(event)
        log.mark_queued(event)


# ------------------------------------------------------------------ 1. verifier, warm


def verifier_warm(h: Harness, rounds: int = 8, per_round: int = 75) -> list[Row]:
    say("verifier, warm ...")
    verifier = h.function("functions/webhook_verifier", "ZohoWebhookFunction", SOURCE="zoho")
    floor_db = pg(h.database_url)
    record, mark = floor_db.prepare(RECORD_SQL), floor_db.prepare(MARK_QUEUED_SQL)
    with environment({"AWS_ENDPOINT_URL_SQS": h.sqs_endpoint}):
        sqs = sqs_client(Settings.model_validate({}))  # the verifier's own client settings
    url = h.queue_urls["students"]
    handler_ms: list[float] = []
    floor_ms: list[float] = []
    with quiet():
        verifier(student_webhook(0, "warmup").event())
        for r in range(rounds):
            webhooks = [student_webhook(i, f"h{r}").event() for i in range(per_round)]
            floor_events = [event_of(student_webhook(i, f"f{r}")) for i in range(per_round)]
            h.drain("students")
            for webhook in webhooks:
                started = time.perf_counter()
                response = verifier(webhook)
                handler_ms.append((time.perf_counter() - started) * 1000)
                assert response["statusCode"] == 202, response
            h.drain("students")
            for event in floor_events:
                started = time.perf_counter()
                record.run(
                    event_id=event.event_id,
                    source=event.source,
                    module=event.module,
                    event_type=event.event_type,
                    record_id=event.record_id,
                    occurred_at=event.occurred_at,
                    payload=json.dumps(event.payload, ensure_ascii=False),
                    auth_method="signature",
                )
                sqs.send_message(
                    QueueUrl=url, MessageBody=event.model_dump_json(), MessageAttributes=message_attributes(event)
                )
                mark.run(source=event.source, event_id=event.event_id)
                floor_ms.append((time.perf_counter() - started) * 1000)
    h.drain("students")
    floor_db.close()
    ratio = median(handler_ms) / median(floor_ms)
    return [
        (
            "verifier warm: handler per request",
            f"{median(handler_ms):.2f} ms (p99 {percentile(handler_ms, 0.99):.2f})",
            "",
            "",
        ),
        ("verifier warm: floor (its SQL via pg8000 + send_message)", f"{median(floor_ms):.2f} ms", "", ""),
        ("verifier warm: handler / floor", f"{ratio:.2f}", "<= 1.3", verdict(ratio <= 1.3)),
    ]


# ------------------------------------------------------------------ 2. processor throughput

FLOOR_UPSERT = """
INSERT INTO students (zoho_record_id, student_id_number, academic_email, name, moodle_user_id, data,
                      source_modified_at, deleted_at, last_event_id, updated_at)
VALUES (:id, :number, :email, :name, NULL, CAST(:data AS jsonb), :modified, NULL, :event_id, now())
ON CONFLICT (zoho_record_id) DO UPDATE SET
    student_id_number = EXCLUDED.student_id_number, academic_email = EXCLUDED.academic_email,
    name = EXCLUDED.name, moodle_user_id = EXCLUDED.moodle_user_id, data = EXCLUDED.data,
    source_modified_at = EXCLUDED.source_modified_at, deleted_at = NULL,
    last_event_id = EXCLUDED.last_event_id, updated_at = now()
WHERE students.source_modified_at IS NULL OR students.source_modified_at < EXCLUDED.source_modified_at
   OR (students.source_modified_at = EXCLUDED.source_modified_at AND students.deleted_at IS NULL)"""


def processor_throughput(h: Harness, batch_size: int, batches: int) -> list[Row]:
    say(f"processor, batches of {batch_size} ...")
    # A database of its own, checkpointed: earlier measures' writes must not be flushed during this one.
    url = h.fresh_database()
    processor = h.function("functions/module_processor", "StudentsProcessor", MODULE="students", DATABASE_URL=url)
    log = verifier_log(url)
    floor_db = pg(url)
    floor_db.run("CHECKPOINT")
    upsert = floor_db.prepare(FLOOR_UPSERT)
    handler_s: list[float] = []
    floor_s: list[float] = []
    serial = iter(range(10**9))
    with quiet():
        for b in range(batches + 1):  # the first batch warms up and is not counted
            events = [event_of(student_webhook(next(serial), f"p{batch_size}")) for _ in range(batch_size)]
            log_as_verified(log, events)
            sqs_event = sqs_batch(events)
            started = time.perf_counter()
            response = processor(sqs_event)
            elapsed = time.perf_counter() - started
            assert response == {"batchItemFailures": []}, response
            floor_events = [event_of(student_webhook(next(serial), f"q{batch_size}")) for _ in range(batch_size)]
            started_floor = time.perf_counter()
            floor_db.run("BEGIN")
            for e in floor_events:
                data = e.payload["data"]
                upsert.run(
                    id=e.record_id,
                    number=data["Student_ID_Number"],
                    email=data["Academic_Email"],
                    name=data["Name"],
                    data=json.dumps(data),
                    modified=e.occurred_at,
                    event_id=e.event_id,
                )
            floor_db.run("COMMIT")
            elapsed_floor = time.perf_counter() - started_floor
            if b:
                handler_s.append(elapsed)
                floor_s.append(elapsed_floor)
    log.close()
    floor_db.close()
    rate = batch_size / median(handler_s)
    floor_rate = batch_size / median(floor_s)
    ratio = floor_rate / rate
    return [
        (f"processor, batch {batch_size}: events/s", f"{rate:,.0f}", ">= 1,000", verdict(rate >= 1000)),
        (
            f"processor, batch {batch_size}: floor events/s (same upserts, pg8000, one txn)",
            f"{floor_rate:,.0f}",
            "",
            "",
        ),
        (f"processor, batch {batch_size}: time / floor time", f"{ratio:.2f}", "<= 1.5", verdict(ratio <= 1.5)),
    ]


# ------------------------------------------------------------------ 3. cold start

PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""
FLOOR = "import boto3; boto3.client('sqs')"


def cold_start(runs: int = 21) -> list[Row]:
    say("cold start ...")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "layers" / "common"), str(ROOT / "functions")], check=True
    )
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{ROOT / 'layers' / 'common'}",
        # As deployed: login and webhook secrets in Secrets Manager, nothing fetched before the first request.
        "AWS_REGION": "eu-west-2",
        "AWS_DEFAULT_REGION": "eu-west-2",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "DATABASE_HOST": "db.internal",
        "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:db",
        "ZOHO_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:z",
        "MOODLE_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:m",
        "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-2.amazonaws.com/1/dlq",
        **{
            f"{m}_QUEUE_URL": f"https://sqs.eu-west-2.amazonaws.com/1/{m.lower()}"
            for m in ("STUDENTS", "ENROLLMENTS", "GRADES", "PAYMENTS")
        },
        "POWERTOOLS_SERVICE_NAME": "event-router",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }
    commands: dict[str, list[str]] = {"floor": [sys.executable, "-c", FLOOR]}
    settings_of: dict[str, dict[str, str]] = {"floor": {}}
    for name, code, setting in (
        ("ZohoWebhookFunction", "webhook_verifier", {"SOURCE": "zoho"}),
        ("MoodleWebhookFunction", "webhook_verifier", {"SOURCE": "moodle"}),
        ("StudentsProcessor", "module_processor", {"MODULE": "students"}),
    ):
        commands[name] = [sys.executable, "-c", PROBE, str(ROOT / "functions" / code / "app.py")]
        settings_of[name] = setting
    timings: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):  # interleaved, so drift hits every command alike
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, env={**environment, **settings_of[name]}, check=True)
            timings[name].append((time.perf_counter() - started) * 1000)
    floor = median(timings["floor"])
    rows: list[Row] = [("cold start floor: python + import boto3 + SQS client", f"{floor:.0f} ms", "", "")]
    for name, target in (("ZohoWebhookFunction", 1.5), ("MoodleWebhookFunction", 1.5), ("StudentsProcessor", 2.0)):
        ratio = median(timings[name]) / floor
        rows.append(
            (
                f"cold start {name} / floor",
                f"{ratio:.2f} ({median(timings[name]):.0f} ms)",
                f"<= {target}",
                verdict(ratio <= target),
            )
        )
    return rows


# ------------------------------------------------------------------ 4. round trips, counted


class RoundTrips:
    """Counts pg8000's flushes: each one is a message sent that waits for Postgres' answer."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._original = pg8000.core._flush

    def __enter__(self) -> RoundTrips:
        def counting(sock: Any) -> None:
            with self._lock:
                self.count += 1
            self._original(sock)

        pg8000.core._flush = counting
        return self

    def __exit__(self, *exc: object) -> None:
        pg8000.core._flush = self._original

    def measure(self, action: Callable[[], Any]) -> int:
        before = self.count
        action()
        return self.count - before


def round_trips(h: Harness) -> list[Row]:
    say("round trips ...")
    verifier = h.function("functions/webhook_verifier", "ZohoWebhookFunction", SOURCE="zoho")
    processor = h.function("functions/module_processor", "StudentsProcessor", MODULE="students")
    rows: list[Row] = []
    with quiet(), RoundTrips() as counter:
        verifier(student_webhook(0, "rt-warm").event())  # connect and prepare first, as a warm container has
        new = student_webhook(1, "rt").event()
        new_trips = counter.measure(lambda: verifier(new))
        duplicate_trips = counter.measure(lambda: verifier(new))
        rows.append(("round trips: verifier, new event", str(new_trips), "<= 2", verdict(new_trips <= 2)))
        rows.append(("round trips: verifier, duplicate", str(duplicate_trips), "1", verdict(duplicate_trips == 1)))
        log = verifier_log(h.database_url)
        for logged, label in ((True, ""), (False, ", unlogged (queued while Postgres was down)")):
            for size in (1, 10, 100):

                def batch(n: int = size, tag: str = "", logged: bool = logged) -> dict[str, Any]:
                    events = [event_of(student_webhook(i, f"rt{n}{logged}{tag}")) for i in range(n)]
                    if logged:
                        log_as_verified(log, events)
                    return sqs_batch(events)

                processor(batch(tag="warm"))
                event = batch()
                trips = counter.measure(partial(processor, event)) / size
                rows.append(
                    (
                        f"round trips: processor per event, batch {size}{label}",
                        f"{trips:.2f}",
                        "<= 3",
                        verdict(trips <= 3),
                    )
                )
        log.close()
    h.drain("students")
    return rows


# ------------------------------------------------------------------ 5. burst through the local stack


def burst(h: Harness, total: int = 5000, clients: int = 16) -> list[Row]:
    from sqlalchemy import text

    from devstack.process import RunningStack
    from event_router.operate.migrate import make_engine

    say(f"burst of {total} webhooks from {clients} clients through the local stack ...")
    url = h.fresh_database()
    engine = make_engine(url)
    with engine.begin() as connection:  # count every write of every mirror row
        connection.execute(text("CREATE TABLE mirror_writes (record_id text)"))
        connection.execute(
            text(
                "CREATE FUNCTION count_write() RETURNS trigger AS $$ BEGIN "
                "INSERT INTO mirror_writes VALUES (NEW.zoho_record_id); RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        for table in ("students", "enrollments", "grades"):
            connection.execute(
                text(
                    f"CREATE TRIGGER count_write AFTER INSERT OR UPDATE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION count_write()"
                )
            )
    modules: list[Module] = ["students", "enrollments", "grades", "payments"]
    lookups: dict[str, Any] = {
        "Enrolled_Students": "S1",
        "Classes": "C1",
        "Student": "S1",
        "Grade": "P",
        "Amount": "10",
    }
    webhooks = [
        zoho_webhook(
            modules[n % 4],
            f"B{n:06d}",
            modified="2026-11-25T09:00:00Z",
            notification_id=f"burst-{n}",
            name=f"burst-{n}",
            Name=f"Record {n}",
            **lookups,
        )
        for n in range(total)
    ]
    stack = RunningStack(Path(tempfile.mkdtemp(prefix="event-router-burst-")), url)
    stack.start()
    latencies: list[float] = []
    retries: list[int] = []
    accepted: set[str] = set()
    try:
        started = time.perf_counter()

        def send(sample: Sample) -> None:
            for _ in range(5):  # as a real sender: retry a request that got no answer
                sent = time.perf_counter()
                try:
                    status, answer = stack.send(sample)
                except OSError:
                    retries.append(1)
                    continue
                latencies.append((time.perf_counter() - sent) * 1000)
                if status == 202:
                    accepted.add(answer["event_id"])
                return

        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(send, webhooks))
        sent_s = time.perf_counter() - started

        def completed() -> int:
            with engine.connect() as connection:
                return int(
                    connection.execute(
                        text("SELECT count(*) FROM integration_events_log WHERE status = 'completed'")
                    ).scalar_one()
                )

        while completed() < len(accepted) and time.perf_counter() - started < 600:
            time.sleep(0.2)
        drained_s = time.perf_counter() - started
        with engine.connect() as connection:
            done = set(
                connection.execute(
                    text("SELECT event_id FROM integration_events_log WHERE status = 'completed'")
                ).scalars()
            )
            doubled = connection.execute(
                text(
                    "SELECT count(*) FROM (SELECT record_id FROM mirror_writes "
                    "GROUP BY record_id HAVING count(*) > 1) d"
                )
            ).scalar_one()
    finally:
        stack.stop()
        engine.dispose()
    lost = len(accepted - done)
    return [
        (
            f"burst: {total} webhooks, {clients} clients, accepted",
            f"{len(accepted)} (sent in {sent_s:.1f} s, {total / sent_s:,.0f}/s)",
            "all",
            verdict(len(accepted) == total),
        ),
        (
            "burst: acceptance latency p50 / p99",
            f"{median(latencies):.1f} / {percentile(latencies, 0.99):.1f} ms",
            "",
            "",
        ),
        ("burst: requests retried after a connection error", str(len(retries)), "", ""),
        ("burst: time until all completed", f"{drained_s:.1f} s", "", ""),
        (
            "burst: lost events / doubly-applied events",
            f"{lost} / {doubled}",
            "0 / 0",
            verdict(lost == 0 and doubled == 0),
        ),
    ]


# ------------------------------------------------------------------ 6. package sizes


def package_sizes() -> list[Row]:
    say("package sizes (make build) ...")
    subprocess.run(["make", "--no-print-directory", "build"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    build = ROOT / ".aws-sam" / "build"

    def size(path: Path) -> float:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1_000_000

    layer = build / "CommonLayer"
    rows: list[Row] = [("common layer, unzipped", f"{size(layer):.1f} MB", "< 15 MB", verdict(size(layer) < 15))]
    rows.append(
        (
            "boto3 packaged in the layer",
            "yes" if (layer / "python" / "boto3").exists() else "no",
            "no",
            verdict(not (layer / "python" / "boto3").exists()),
        )
    )
    for function in sorted(p.name for p in build.iterdir() if p.is_dir() and p.name != "CommonLayer"):
        rows.append((f"function {function}, unzipped", f"{size(build / function):.2f} MB", "", ""))
    return rows


# ------------------------------------------------------------------ the table


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def erasure_register_cost(h: Harness, batches: int = 60) -> list[Row]:
    """What the erasure register's look-up costs a processor: the same batches through a processor
    with the register's key and one without (no look-up), taken in turns so both see the same
    machine, with 1,000 students already in the register."""
    say("processor, with and without the erasure register ...")
    url = h.fresh_database()
    connection = pg(url)
    connection.run(  # four identifiers each, hashes of the register's length
        "INSERT INTO erased_identities (digest) "
        "SELECT md5(g::text) || md5((g + 1)::text) FROM generate_series(1, 4000) AS g"
    )
    connection.close()
    log = verifier_log(url)
    with_key = h.function("functions/module_processor", "StudentsProcessor", MODULE="students", DATABASE_URL=url)
    without = h.function(
        "functions/module_processor", "StudentsProcessor", MODULE="students", DATABASE_URL=url, ERASURE_KEY=""
    )
    serial = iter(range(10**9))
    rows: list[Row] = []
    for size in (1, 10):
        times: dict[str, list[float]] = {"with": [], "without": []}
        with quiet():
            for b in range(2 * batches + 2):  # the first of each warms up
                name, processor = ("with", with_key) if b % 2 else ("without", without)
                events = [event_of(student_webhook(next(serial), f"e{size}")) for _ in range(size)]
                log_as_verified(log, events)
                started = time.perf_counter()
                response = processor(sqs_batch(events))
                elapsed = time.perf_counter() - started
                assert response == {"batchItemFailures": []}, response
                if b >= 2:
                    times[name].append(elapsed * 1000)
        ratio = median(times["with"]) / median(times["without"])
        value = f"{median(times['with']):.2f} ms vs {median(times['without']):.2f} ms: x{ratio:.2f}"
        rows.append((f"erasure register, batch of {size}", value, "<= x1.5", verdict(ratio <= 1.5)))
    log.close()
    return rows


def proxy_statements(h: Harness, events: int = 300) -> list[Row]:
    """What RDS Proxy's multiplexing would cost the hot path: a proxy can share a connection between
    containers only if no session state is left on it, so every statement would go unnamed (parsed
    and planned each time) instead of prepared once per container. The verifier's two statements
    for a new event, both ways, taken in turns on the same database."""
    say("verifier statements, prepared once vs unnamed (what a proxy could multiplex) ...")
    url = h.fresh_database()
    named = verifier_log(url)
    unnamed = pg(url)
    serial = iter(range(10**9))

    def by_name() -> None:
        event = event_of(student_webhook(next(serial), "proxy"))
        named.record(event)
        named.mark_queued(event)

    def unnamed_statements() -> None:
        event = event_of(student_webhook(next(serial), "proxy"))
        payload = json.dumps(event.payload, ensure_ascii=False)
        unnamed.run(
            RECORD_SQL,
            event_id=event.event_id,
            source=event.source,
            module=event.module,
            event_type=event.event_type,
            record_id=event.record_id,
            occurred_at=event.occurred_at,
            payload=payload,
            auth_method=event.auth_method,
        )
        unnamed.run(MARK_QUEUED_SQL, source=event.source, event_id=event.event_id)

    times: dict[str, list[float]] = {"named": [], "unnamed": []}
    trips: dict[str, int] = {}
    with RoundTrips() as counter:
        for name, action in (("named", by_name), ("unnamed", unnamed_statements)):
            action()  # connect and prepare first, as a warm container has
            trips[name] = counter.measure(action)
        for n in range(2 * events):
            name, action = ("named", by_name) if n % 2 else ("unnamed", unnamed_statements)
            started = time.perf_counter()
            action()
            times[name].append((time.perf_counter() - started) * 1000)
    named.close()
    unnamed.close()
    ratio = median(times["unnamed"]) / median(times["named"])
    return [
        (
            "verifier statements: round trips, prepared / unnamed",
            f"{trips['named']} / {trips['unnamed']}",
            "",
            "",
        ),
        (
            "verifier statements: median, prepared / unnamed",
            f"{median(times['named']):.2f} / {median(times['unnamed']):.2f} ms: x{ratio:.2f}",
            "",
            "",
        ),
    ]


def main(argv: list[str]) -> None:
    only = set(argv)
    rows: list[Row] = []
    started = time.perf_counter()
    with harness() as h:
        if not only or "verifier" in only:
            rows += verifier_warm(h)
        if not only or "processor" in only:
            rows += processor_throughput(h, 10, 120)
            rows += processor_throughput(h, 100, 40)
        if not only or "erasure" in only:
            rows += erasure_register_cost(h)
        if not only or "roundtrips" in only:
            rows += round_trips(h)
        if not only or "proxy" in only:
            rows += proxy_statements(h)
        if not only or "burst" in only:
            rows += burst(h)
        if not only or "growth" in only:
            rows += health_flood(h)
            rows += stats_growth(h)
        if not only or "delivery" in only:
            rows += moodle_calls_and_rate(h)
            rows += webhook_to_moodle_lag(h)
            rows += zoho_calls_per_1000_grades(h)
            rows += webhook_to_zoho_lag(h)
        if not only or "firstday" in only:
            rows += first_day_import(h)
    if not only or "coldstart" in only:
        rows += cold_start()
    if not only or "sizes" in only:
        rows += package_sizes()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':<40} {'target':<10} verdict")
    for measure, value, target, outcome in rows:
        print(f"{measure:<{width}}  {value:<40} {target:<10} {outcome}")
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
