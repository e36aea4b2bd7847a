"""The hot path, warm: a verifier's request and a processor's batch against floors measured in the same
run, the round trips each takes, what the erasure register costs, and the statements a proxy would pin on."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

from bench.events import event_of, log_as_verified, pg, sqs_batch, student_webhook, verifier_log
from bench.harness import Harness, RoundTrips, Row, median, percentile, quiet, say, verdict
from devstack.invoke import environment
from event_router.core.aws import sqs_client
from event_router.queues import message_attributes
from event_router.settings import Settings
from event_router.store.eventlog import MARK_QUEUED_SQL, RECORD_SQL, record_params


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
                record.run(**record_params(event) | {"auth_method": "signature"})
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

    def handled(sqs_event: dict[str, Any]) -> float:
        started = time.perf_counter()
        response = processor(sqs_event)
        elapsed = time.perf_counter() - started
        assert response == {"batchItemFailures": []}, response
        return elapsed

    def floored(floor_events: list[Any]) -> float:
        started = time.perf_counter()
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
        return time.perf_counter() - started

    with quiet():
        for b in range(batches + 2):  # the first two batches warm up and are not counted
            events = [event_of(student_webhook(next(serial), f"p{batch_size}")) for _ in range(batch_size)]
            log_as_verified(log, events)
            sqs_event = sqs_batch(events)
            floor_events = [event_of(student_webhook(next(serial), f"q{batch_size}")) for _ in range(batch_size)]
            # Each goes first every other batch: the second finds the caches the first warmed.
            if b % 2:
                elapsed, elapsed_floor = handled(sqs_event), floored(floor_events)
            else:
                elapsed_floor, elapsed = floored(floor_events), handled(sqs_event)
            if b > 1:
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
                    return sqs_batch(events, logged=logged)

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
        unnamed.run(RECORD_SQL, **record_params(event))
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
