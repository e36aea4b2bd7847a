"""The first day's import through the stand-ins (docs/first-day.md): 10,000 students and their
enrolments already in Zoho, the course in Moodle; the reconciliation reads them, the processors
mirror them and the Moodle delivery makes every account and enrolment, as the local stack runs them
(each behind its queue, all at once). Then a rerun with nothing changed.

Reported: the time until every student is enrolled in Moodle, Zoho calls and credits (the
reconciliation's reads; each new student's Moodle id written back costs a credit per ten more, in
the Zoho delivery, not run here), Moodle calls per student, and what the rerun costs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from bench.harness import Harness, quiet, say
from devstack.invoke import LocalContext, load_function
from devstack.moodle_standin import MoodleStandIn
from devstack.poller import QueuePoller
from devstack.template import functions, load_template
from devstack.zoho_standin import ZohoStandIn
from event_router.deliver.moodle import FUNCTIONS

Row = tuple[str, str, str, str]
COURSE = "L3-IT-BENCH"
WRITES = {"core_user_create_users", "core_user_update_users", "enrol_manual_enrol_users", "enrol_manual_unenrol_users"}


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
        zoho.org.create(
            "BTEC_Enrollments",
            {
                "Name": f"Student {n} - L3",
                "Enrolled_Students": {"id": record},
                "Classes": {"id": "5725767000000520011"},
                "Enrollment_Status": "Active",
                "Moodle_Course_ID": COURSE,
            },
        )
    os.environ["AWS_ENDPOINT_URL_SQS"] = h.sqs_endpoint  # the functions' clients are made after their import
    delivery = h.sqs.create_queue(QueueName="bench-first-day-moodle", Attributes={"VisibilityTimeout": "60"})[
        "QueueUrl"
    ]
    wiring = {
        "MOODLE_DELIVERY_QUEUE_URL": delivery,
        "ZOHO_ACCOUNTS_URL": zoho.url,
        "ZOHO_CREDENTIALS": json.dumps(zoho.credentials),
        "MOODLE_URL": moodle.url,
        "MOODLE_TOKEN": moodle.site.token,
        "RETRY_BASE_SECONDS": "0",
    }
    specs = functions(load_template())

    def load(name: str, **fixed: str) -> Any:
        spec = specs[name]
        environment = h.environment(
            **{k: v for k, v in spec.environment.items() if isinstance(v, str)}, **wiring, **fixed
        )
        return load_function(spec.code_uri, spec.handler, environment, f"bench-{name}"), spec.timeout

    pollers = [
        QueuePoller(h.sqs, h.queue_urls["students"], load("StudentsProcessor")[0], "StudentsProcessor", batch_size=10),
        QueuePoller(
            h.sqs, h.queue_urls["enrollments"], load("EnrollmentsProcessor")[0], "EnrollmentsProcessor", batch_size=10
        ),
        QueuePoller(h.sqs, delivery, load("MoodleDeliveryFunction")[0], "MoodleDeliveryFunction", batch_size=10),
    ]
    reconcile, timeout = load("ReconcileFunction")
    stop = threading.Event()

    def poll(poller: QueuePoller) -> None:
        while not stop.is_set():
            if poller.poll_once(wait_seconds=1).received == 0:
                stop.wait(0.2)

    def enrolled() -> int:
        with moodle.site.lock:
            return sum(1 for (_, c), e in moodle.site.enrolments.items() if c == course and e["status"] == 0)

    try:
        with quiet():
            threads = [threading.Thread(target=poll, args=(p,), daemon=True) for p in pollers]
            for thread in threads:
                thread.start()
            started = time.perf_counter()
            run = reconcile({}, LocalContext("ReconcileFunction", timeout_seconds=timeout))
            read = time.perf_counter() - started
            while enrolled() < students:
                time.sleep(0.5)
            total = time.perf_counter() - started
            calls = len(moodle.site.calls)
            zoho_calls, zoho_credits = sum(zoho.org.calls.values()), zoho.org.credits_used
            again = reconcile({}, LocalContext("ReconcileFunction", timeout_seconds=timeout))
            time.sleep(3)  # anything the rerun queued would be delivered by now
            rerun_writes = sum(c in WRITES for c in moodle.site.calls[calls:])
            rerun_moodle = len(moodle.site.calls) - calls
            rerun_zoho = (sum(zoho.org.calls.values()) - zoho_calls, zoho.org.credits_used - zoho_credits)
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
    finally:
        zoho.stop()
        moodle.stop()
    assert run["status"] == "completed", run
    assert again["status"] == "completed", again
    assert set(moodle.site.calls) <= set(FUNCTIONS)
    per_student = calls / students
    return [
        (
            f"import of {students:,} students + enrolments: reconciliation / until all enrolled",
            f"{read:.0f} s / {total:.0f} s",
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
            _verdict(per_student <= 6),
        ),
        (
            "rerun, nothing changed: Zoho calls / credits",
            f"{rerun_zoho[0]} / {rerun_zoho[1]}",
            "<= 8 / 20",
            _verdict(rerun_zoho[0] <= 8 and rerun_zoho[1] <= 20),
        ),
        (
            "rerun, nothing changed: Moodle calls / writes",
            f"{rerun_moodle} / {rerun_writes}",
            "<= 102 / 0",
            _verdict(rerun_moodle <= students // 100 + 2 and rerun_writes == 0),
        ),
    ]


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"
