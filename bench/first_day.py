"""The first day's import through the stand-ins (docs/first-day.md): 10,000 students and their
enrolments already in Zoho, the course in Moodle; the reconciliation reads them, the processors
mirror them and the Moodle delivery makes every account and enrolment. Then a rerun with nothing
changed.

Every function is the real one, loaded as Lambda loads it, but the hand-off between them is direct
(a batch of 10 as the SQS trigger would bring it) rather than through moto's SQS, which slows as a
queue fills (tens of milliseconds a call at a few thousand messages; AWS's does not). Reported: the
time until every student is enrolled in Moodle, Zoho calls and credits of the reads (each new
student's Moodle id written back costs a further credit per ten, in the Zoho delivery, not run
here), Moodle calls per student, and what the rerun costs.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.harness import Harness, Row, quiet, say, verdict
from devstack.invoke import LocalContext, load_function
from devstack.moodle_standin import MoodleStandIn
from devstack.poller import lambda_sqs_event
from devstack.samples import enrolled_in_zoho
from devstack.template import functions, load_template
from devstack.zoho_standin import ZohoStandIn
from event_router.deliver.moodle.client import FUNCTIONS
from event_router.deliver.outbox import DeliveryMessage
from event_router.mapping import field_mapping
from event_router.messages import EventMessage
from event_router.operate.reconcile import Budgets, Reconciler, ReconcileRequest
from event_router.settings import Settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import DeliveryStore
from event_router.store.reconcile import ReconcileStore

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
COURSE = "L3-IT-BENCH"
WRITES = {"core_user_create_users", "core_user_update_users", "enrol_manual_enrol_users", "enrol_manual_unenrol_users"}


def batch_event(bodies: list[str]) -> dict[str, Any]:
    """The SQS event a trigger brings for these message bodies (a first delivery)."""
    messages = [
        {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": "r",
            "Body": body,
            "MD5OfBody": "",
            "Attributes": {"ApproximateReceiveCount": "1"},
        }
        for body in bodies
    ]
    return lambda_sqs_event(messages, "arn:aws:sqs:eu-west-2:123456789012:bench-first-day")


class Pipeline:
    """The processors and the Moodle delivery, each handed its batches directly. The processors' messages
    for their deliveries go to a queue that is not there (a send that fails is left to the sweep, so it
    costs one refused call): the deliveries are taken from the database, in order, instead."""

    def __init__(self, processors: dict[str, Handler], deliverer: Handler, deliveries: DeliveryStore) -> None:
        self._processors, self._deliverer, self._deliveries = processors, deliverer, deliveries

    def publish_many(self, events: list[EventMessage]) -> list[EventMessage]:
        """What the reconciliation queues: processed at once, ten to a batch, as the trigger would."""
        by_module: dict[str, list[str]] = {}
        for event in events:
            by_module.setdefault(event.module, []).append(event.model_dump_json())
        for module, bodies in by_module.items():
            for start in range(0, len(bodies), 10):
                self._processors[module](batch_event(bodies[start : start + 10]), LocalContext(f"{module}-processor"))
        return events

    def send(self, deliveries: list[tuple[int, str]]) -> None:
        """A delivery the reconciliation made: delivered at once."""
        self.deliver([i for i, _ in deliveries])

    def deliver_pending(self) -> int:
        """Deliver every pending delivery, ten to a batch, oldest first; how many."""
        done = 0
        while ids := [i for i, _ in self._deliveries.matching(["pending"], "moodle", max_rows=1000)]:
            self.deliver(ids)
            done += len(ids)
        return done

    def deliver(self, ids: list[int]) -> None:
        for start in range(0, len(ids), 10):
            bodies = [DeliveryMessage(i, "moodle").body() for i in ids[start : start + 10]]
            answer = self._deliverer(batch_event(bodies), LocalContext("MoodleDeliveryFunction"))
            assert answer["batchItemFailures"] == [], answer


def first_day_import(h: Harness, students: int = 10_000) -> list[Row]:
    say(f"the first day's import of {students:,} students and enrolments ...")
    zoho, moodle = ZohoStandIn().start(), MoodleStandIn().start()
    zoho.org.credits = 10_000_000
    course = moodle.site.create_course(COURSE)
    for n in range(students):
        record = zoho.org.create(
            "BTEC_Students",
            {"Name": f"Student {n}", "Student_ID_Number": f"B-{n:06}", "Academic_Email": f"s{n}@example.ac.uk"},
        )
        enrolled_in_zoho(zoho.org, record, COURSE, f"Student {n} - L3")
    with zoho.org.lock:  # years of data: nothing was changed in the minutes before the router came
        for module_records in zoho.org.records.values():
            for stored in module_records.values():
                stored["Modified_Time"] = "2026-09-01T08:00:00+00:00"
    os.environ["AWS_ENDPOINT_URL_SQS"] = h.sqs_endpoint  # the functions' clients are made after their import
    # The processors write deliveries only for a destination with a queue: one is named (and not made).
    delivery_queue = f"{h.sqs_endpoint}/123456789012/bench-first-day-not-there"
    wiring = {
        "MOODLE_DELIVERY_QUEUE_URL": delivery_queue,
        "ZOHO_ACCOUNTS_URL": zoho.url,
        "ZOHO_CREDENTIALS": json.dumps(zoho.credentials),
        "MOODLE_URL": moodle.url,
        "MOODLE_TOKEN": moodle.site.token,
        "RETRY_BASE_SECONDS": "0",
    }
    # A database of its own: the sections before this one leave students in the shared one's mirror
    # (the verifier's and the round trips' benches, processed without a Moodle delivery), and the
    # reconciliation gives every mirrored student without a Moodle account one; a full run once
    # counted them as the import's (5.19 calls a student, and a rerun of 109 calls and a write).
    wiring["DATABASE_URL"] = h.fresh_database()
    specs = functions(load_template())

    def load(name: str) -> Handler:
        spec = specs[name]
        fixed = {k: v for k, v in spec.environment.items() if isinstance(v, str)}
        return load_function(spec.code_uri, spec.handler, h.environment(**fixed, **wiring), f"bench-{name}")

    settings = Settings.model_validate(h.environment(**wiring))
    connection = PreparedConnection(connection_params(settings, "bench-reconcile"), 30.0)
    deliveries = DeliveryStore(connection)
    pipeline = Pipeline(
        {"students": load("StudentsProcessor"), "enrollments": load("EnrollmentsProcessor")},
        load("MoodleDeliveryFunction"),
        deliveries,
    )
    from event_router.deliver.moodle.client import moodle_client
    from event_router.deliver.zoho.client import zoho_client

    reconciler = Reconciler(
        ReconcileStore(connection),
        deliveries,
        zoho_client(settings, connection),
        moodle_client(settings),
        pipeline,
        pipeline.send,
        field_mapping(settings),
        budgets=Budgets(10_000_000, 10_000_000),
        grades_to_zoho=False,
    )

    def enrolled() -> int:
        with moodle.site.lock:
            return sum(1 for (_, c), e in moodle.site.enrolments.items() if c == course and e["status"] == 0)

    try:
        with quiet():
            started = time.perf_counter()
            run = reconciler.handle(ReconcileRequest(), lambda: 900_000)
            read = time.perf_counter() - started
            pipeline.deliver_pending()
            total = time.perf_counter() - started
            all_enrolled = enrolled()
            calls = len(moodle.site.calls)
            zoho_calls, zoho_credits = sum(zoho.org.calls.values()), zoho.org.credits_used
            again_started = time.perf_counter()
            again = reconciler.handle(ReconcileRequest(), lambda: 900_000)
            pipeline.deliver_pending()
            rerun_seconds = time.perf_counter() - again_started
            rerun_writes = sum(c in WRITES for c in moodle.site.calls[calls:])
            rerun_moodle = len(moodle.site.calls) - calls
            rerun_zoho = (sum(zoho.org.calls.values()) - zoho_calls, zoho.org.credits_used - zoho_credits)
    finally:
        connection.close()
        zoho.stop()
        moodle.stop()
    assert run["status"] == "completed", run
    assert again["status"] == "completed", again
    assert all_enrolled == students
    assert set(moodle.site.calls) <= set(FUNCTIONS)
    per_student = calls / students
    rerun_ok = rerun_zoho[0] <= 8 and rerun_moodle <= students // 100 + 2 and rerun_writes == 0
    return [
        (
            f"import of {students:,} students + enrolments: read and mirrored / all enrolled",
            f"{read:.0f} s / {total:.0f} s ({students / total:.0f} students/s)",
            "",
            "",
        ),
        (
            "import: Zoho calls / credits (reads)",
            f"{run['counts']['zoho']['calls']} / {run['counts']['zoho']['credits']}",
            "",
            "",
        ),
        (
            "import: Moodle calls per student (account + enrolment)",
            f"{per_student:.2f}",
            "<= 6",
            verdict(per_student <= 6),
        ),
        (
            "rerun, nothing changed: Zoho calls / credits; Moodle calls / writes; time",
            f"{rerun_zoho[0]} / {rerun_zoho[1]}; {rerun_moodle} / {rerun_writes}; {rerun_seconds:.1f} s",
            f"<= 8; <= {students // 100 + 2} / 0",
            verdict(rerun_ok),
        ),
    ]
