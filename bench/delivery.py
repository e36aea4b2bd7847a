"""The delivery stage's figures: Moodle calls per delivery and deliveries per second against the
stand-in; Zoho calls and credits per 1,000 grades; the lag from a webhook to Moodle and to Zoho
through the local stack."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import Harness, Row, median, percentile, quiet, say, verdict
from devstack.moodle_standin import MoodleStandIn
from devstack.poller import lambda_sqs_event
from devstack.samples import Sample, user_graded, zoho_webhook
from devstack.zoho_standin import ZohoStandIn

COURSE = "BENCH-COURSE"
CLASS = {"id": "5725767000000520011", "name": "Level 3 IT"}


def student(n: int, tag: str, **changes: Any) -> Sample:
    fields = {
        "Name": f"Student {n}",
        "Student_ID_Number": f"BTEC-{tag}-{n:06d}",
        "Academic_Email": f"student{n}.{tag}@students.example.ac.uk",
        **changes,
    }
    return zoho_webhook(
        "students", _id(n, 1), modified=_now(), notification_id=f"{tag}-s{n}-{uuid.uuid4().hex[:6]}", **fields
    )


def enrolment(n: int, tag: str, status: str) -> Sample:
    fields: dict[str, Any] = {
        "Name": f"Enrolment {n}",
        "Enrolled_Students": {"id": _id(n, 1), "name": "a student"},
        "Classes": CLASS,
        "Enrollment_Status": status,
        "Moodle_Course_ID": COURSE,
    }
    return zoho_webhook(
        "enrollments", _id(n, 2), modified=_now(), notification_id=f"{tag}-e{n}-{uuid.uuid4().hex[:6]}", **fields
    )


def _id(n: int, kind: int) -> str:
    return f"57257670{kind}{n:010d}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Stage:
    """Verifier, the students and enrolments processors and the Moodle delivery function, in this
    process, against one stand-in Moodle; queues drained by hand, as the SQS triggers would."""

    def __init__(self, h: Harness, moodle: MoodleStandIn) -> None:
        self.h = h
        # What sends deliveries makes its SQS client on first use, after the function's start-up
        # environment is gone: moto's endpoint must be in the process's own.
        os.environ["AWS_ENDPOINT_URL_SQS"] = h.sqs_endpoint
        self.queue = h.sqs.create_queue(QueueName=f"bench-moodle-{uuid.uuid4().hex[:6]}")["QueueUrl"]
        wiring = {"MOODLE_DELIVERY_QUEUE_URL": self.queue}
        self.verifier = h.function("functions/webhook_verifier", "ZohoWebhookFunction", SOURCE="zoho")
        self.processors = {
            m: h.function("functions/module_processor", f"{m}-processor", MODULE=m, **wiring)
            for m in ("students", "enrollments")
        }
        self.deliverer = h.function(
            "functions/delivery",
            "MoodleDeliveryFunction",
            MOODLE_URL=moodle.url,
            MOODLE_TOKEN=moodle.site.token,
            RETRY_BASE_SECONDS="0",
            **wiring,
        )

    def accept(self, samples: list[Sample]) -> None:
        for sample in samples:
            assert self.verifier(sample.event())["statusCode"] == 202

    def process(self) -> None:
        for module, processor in self.processors.items():
            while batch := receive(self.h, self.h.queue_urls[module]):
                processor(batch)

    def deliver(self) -> int:
        """Deliver everything queued, in batches of 10 as the trigger does; the deliveries done."""
        done = 0
        while batch := receive(self.h, self.queue):
            answer = self.deliverer(batch)
            assert answer["batchItemFailures"] == [], answer
            done += len(batch["Records"])
        return done


def receive(h: Harness, url: str, up_to: int = 10) -> dict[str, Any] | None:
    """Up to ``up_to`` messages of ``url`` as the SQS event a trigger delivers, deleted; None when empty."""
    messages: list[dict[str, Any]] = []
    while len(messages) < up_to:
        wanted = min(10, up_to - len(messages))
        got = h.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=wanted, AttributeNames=["All"]).get(
            "Messages", []
        )
        if not got:
            break
        messages += got
    if not messages:
        return None
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
        h.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    return lambda_sqs_event(messages, "arn:aws:sqs:eu-west-2:123456789012:bench")


def moodle_calls_and_rate(h: Harness, students: int = 300) -> list[Row]:
    say("deliveries to the Moodle stand-in ...")
    moodle = MoodleStandIn().start()
    moodle.site.create_course(COURSE)
    stage = Stage(h, moodle)

    def run(samples: list[Sample]) -> tuple[float, float]:
        """Accept and process ``samples``, then deliver them: (Moodle calls per delivery, deliveries/s)."""
        stage.accept(samples)
        stage.process()
        before = len(moodle.site.calls)
        started = time.perf_counter()
        delivered = stage.deliver()
        seconds = time.perf_counter() - started
        return (len(moodle.site.calls) - before) / delivered, delivered / seconds

    try:
        with quiet():
            per_new, new_rate = run([student(n, "new") for n in range(students)])
            per_first, _ = run([enrolment(n, "first", "Active") for n in range(students)])
            per_steady, steady_rate = run([enrolment(n, "steady", "Withdrawn") for n in range(students)])
            per_update, _ = run([student(n, "new", Name=f"Renamed {n}") for n in range(students)])
    finally:
        moodle.stop()
    return [
        ("Moodle calls per new student", f"{per_new:.2f}", "4", verdict(per_new <= 4)),
        # a look-up, the account's facts (is it still a plain learner's?), the update
        ("Moodle calls per changed student", f"{per_update:.2f}", "3", verdict(per_update <= 3)),
        ("Moodle calls per new enrolment, course known", f"{per_first:.2f}", "1", verdict(per_first <= 1.01)),
        ("Moodle calls per steady-state enrolment", f"{per_steady:.2f}", "1", verdict(per_steady <= 1)),
        (
            "deliveries per second, new students / enrolments (stand-in)",
            f"{new_rate:,.0f} / {steady_rate:,.0f}",
            "",
            "",
        ),
    ]


def webhook_to_moodle_lag(h: Harness, students: int = 200, rate: float = 20.0) -> list[Row]:
    """Zoho webhooks for new students, sent at ``rate`` a second to the local stack; the time from
    each send until its delivery is ``delivered`` (when the Moodle user exists)."""
    say(f"webhook-to-Moodle lag, {students} new students at {rate:.0f}/s through the local stack ...")
    samples = {_id(n, 1): student(n, "lag") for n in range(students)}
    lags = _lag(h, samples, "user", rate)
    return [("webhook-to-Moodle lag p50 / p99 (local stack, stand-in)", _p50_p99(lags), "", "")]


def webhook_to_zoho_lag(h: Harness, grades: int = 200, rate: float = 20.0) -> list[Row]:
    """Moodle grade webhooks at ``rate`` a second, for a student Zoho and the mirror know; the time
    from each send until its BTEC_Grades record is upserted. The Zoho delivery waits up to 5 s to
    fill a batch of 100: the price of 100 grades a call."""
    say(f"webhook-to-Zoho lag, {grades} grades at {rate:.0f}/s through the local stack ...")
    zoho = ZohoStandIn().start()
    fields: dict[str, Any] = {"Name": "Lag Student", "Student_ID_Number": "BTEC-LAG", "Moodle_User_ID": "348"}
    record = zoho.org.create("BTEC_Students", fields)
    link = zoho_webhook("students", record, operation="insert", **fields)
    samples = {f"348-{item}": user_graded(348, item, 60.0, int(time.time()) - 60) for item in range(1, grades + 1)}
    try:
        lags = _lag(h, samples, "grade", rate, zoho=zoho, first=link, account=(record, 348))
    finally:
        zoho.stop()
    return [("webhook-to-Zoho lag p50 / p99 (local stack, stand-in)", _p50_p99(lags), "", "")]


def _lag(
    h: Harness,
    samples: dict[str, Sample],
    action: str,
    rate: float,
    zoho: ZohoStandIn | None = None,
    first: Sample | None = None,
    account: tuple[str, int] | None = None,
) -> list[float]:
    """Send ``samples`` (by the delivery target each makes) at ``rate`` to a local stack; the ms from
    each send until its delivery of ``action`` is delivered."""
    from sqlalchemy import text

    from devstack.process import RunningStack
    from event_router.operate.migrate import make_engine

    url = h.fresh_database()
    engine = make_engine(url)
    moodle = MoodleStandIn().start()
    stack = RunningStack(
        Path(tempfile.mkdtemp(prefix="event-router-lag-")),
        url,
        moodle=(moodle.url, moodle.site.token),
        zoho=(zoho.url, zoho.credentials) if zoho else None,
    )
    stack.start()
    sent_at: dict[str, float] = {}

    def delivered() -> dict[str, float]:
        with engine.connect() as connection:
            found = connection.execute(
                text(
                    "SELECT target_key, extract(epoch FROM delivered_at) FROM deliveries "
                    "WHERE status = 'delivered' AND action = :action"
                ),
                {"action": action},
            ).all()
        return {key: float(at) for key, at in found}

    try:
        if first is not None:
            assert stack.send(first)[0] == 202
            time.sleep(2)
        if account is not None:
            manage(url, *account)
        for key, sample in samples.items():
            sent_at[key] = time.time()
            status, _ = stack.send(sample)
            assert status == 202
            time.sleep(max(0.0, 1 / rate))
        _wait(lambda: len(delivered()) >= len(samples), 300)
        done = delivered()
    finally:
        stack.stop()
        moodle.stop()
        engine.dispose()
    return [(done[key] - sent) * 1000 for key, sent in sent_at.items()]


def manage(database_url: str, student: str, moodle_user: int) -> None:
    """The router's record that it made the student's Moodle account (as after its provisioning)."""
    from sqlalchemy import text

    from event_router.operate.migrate import make_engine

    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO moodle_accounts (student_zoho_id, moodle_user_id, origin) VALUES (:s, :u, 'created') "
                    "ON CONFLICT DO NOTHING"
                ),
                {"s": student, "u": moodle_user},
            )
    finally:
        engine.dispose()


def _p50_p99(values: list[float]) -> str:
    return f"{median(values):.0f} / {percentile(values, 0.99):.0f} ms"


def zoho_calls_per_1000_grades(h: Harness, grades: int = 1000) -> list[Row]:
    """Moodle grades through the grades processor to the Zoho delivery function, whose trigger
    brings up to 100 deliveries: Zoho calls and credits spent per 1,000 grades."""
    say(f"Zoho calls and credits for {grades} grades ...")
    zoho = ZohoStandIn().start()
    os.environ["AWS_ENDPOINT_URL_SQS"] = h.sqs_endpoint
    queue = h.sqs.create_queue(QueueName=f"bench-zoho-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    wiring = {
        "ZOHO_DELIVERY_QUEUE_URL": queue,
        "ZOHO_ACCOUNTS_URL": zoho.url,
        "ZOHO_CREDENTIALS": json.dumps(zoho.credentials),
    }
    fields: dict[str, Any] = {"Name": "Bench Student", "Student_ID_Number": "BTEC-Z", "Moodle_User_ID": "348"}
    ada = zoho.org.create("BTEC_Students", fields)
    zoho_verifier = h.function("functions/webhook_verifier", "ZohoWebhookFunction", SOURCE="zoho")
    moodle_verifier = h.function("functions/webhook_verifier", "MoodleWebhookFunction", SOURCE="moodle")
    students = h.function("functions/module_processor", "students-processor", MODULE="students", **wiring)
    processor = h.function("functions/module_processor", "grades-processor", MODULE="grades", **wiring)
    deliverer = h.function("functions/delivery", "ZohoDeliveryFunction", DESTINATION="zoho", **wiring)
    try:
        with quiet():
            assert (
                zoho_verifier(zoho_webhook("students", ada, operation="insert", **fields).event())["statusCode"] == 202
            )
            while batch := receive(h, h.queue_urls["students"]):
                students(batch)
            manage(h.database_url, ada, 348)
            for item in range(1, grades + 1):
                assert moodle_verifier(user_graded(348, item, 60.0, int(time.time()) - 60).event())["statusCode"] == 202
            while batch := receive(h, h.queue_urls["grades"]):
                processor(batch)
            calls, credits = sum(zoho.org.calls.values()), zoho.org.credits_used
            while batch := receive(h, queue, up_to=100):
                assert deliverer(batch)["batchItemFailures"] == []
            calls, credits = sum(zoho.org.calls.values()) - calls, zoho.org.credits_used - credits
            stored = len(zoho.org.records["BTEC_Grades"])
    finally:
        zoho.stop()
    per_1000 = 1000 / grades
    return [
        ("Zoho grades upserted", f"{stored} of {grades}", "all", verdict(stored == grades)),
        (
            # Zoho charges a write per ten records: 1,000 grades are 100 credits however they are batched;
            # the calls are what batching saves.
            "Zoho calls / credits per 1,000 grades",
            f"{calls * per_1000:.0f} / {credits * per_1000:.0f}",
            "<= 12 / 102",
            verdict(calls * per_1000 <= 12 and credits * per_1000 <= 102),
        ),
    ]


def _wait(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("deliveries did not finish")
        time.sleep(0.2)
