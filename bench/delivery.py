"""The delivery stage's figures: Moodle calls per delivery, deliveries per second against the
stand-in, and the lag from a Zoho webhook to its Moodle user through the local stack."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import Harness, median, percentile, quiet, say
from devstack.moodle_standin import MoodleStandIn
from devstack.poller import lambda_sqs_event
from devstack.samples import Sample, zoho_webhook

Row = tuple[str, str, str, str]
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
            while batch := self._receive(self.h.queue_urls[module]):
                processor(batch)

    def deliver(self) -> int:
        """Deliver everything queued, in batches of 10 as the trigger does; the deliveries done."""
        done = 0
        while batch := self._receive(self.queue):
            answer = self.deliverer(batch)
            assert answer["batchItemFailures"] == [], answer
            done += len(batch["Records"])
        return done

    def _receive(self, url: str) -> dict[str, Any] | None:
        messages = self.h.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
            "Messages", []
        )
        if not messages:
            return None
        self.h.sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        )
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
        ("Moodle calls per new student", f"{per_new:.2f}", "4", _verdict(per_new <= 4)),
        ("Moodle calls per changed student", f"{per_update:.2f}", "2", _verdict(per_update <= 2)),
        ("Moodle calls per new enrolment, course known", f"{per_first:.2f}", "1", _verdict(per_first <= 1.01)),
        ("Moodle calls per steady-state enrolment", f"{per_steady:.2f}", "1", _verdict(per_steady <= 1)),
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
    from sqlalchemy import text

    from devstack.process import RunningStack
    from event_router.operate.migrate import make_engine

    say(f"webhook-to-Moodle lag, {students} new students at {rate:.0f}/s through the local stack ...")
    url = h.fresh_database()
    engine = make_engine(url)
    moodle = MoodleStandIn().start()
    stack = RunningStack(
        Path(tempfile.mkdtemp(prefix="event-router-lag-")), url, moodle=(moodle.url, moodle.site.token)
    )
    stack.start()
    sent_at: dict[str, float] = {}
    try:
        for n in range(students):
            sample = student(n, "lag")
            sent_at[_id(n, 1)] = time.time()
            status, _ = stack.send(sample)
            assert status == 202
            time.sleep(max(0.0, 1 / rate))

        def delivered() -> dict[str, float]:
            with engine.connect() as connection:
                found = connection.execute(
                    text(
                        "SELECT target_key, extract(epoch FROM delivered_at) FROM deliveries "
                        "WHERE status = 'delivered' AND action = 'user'"
                    )
                ).all()
            return {key: float(at) for key, at in found}

        _wait(lambda: len(delivered()) >= students, 300)
        done = delivered()
    finally:
        stack.stop()
        moodle.stop()
        engine.dispose()
    lags = [(done[key] - sent) * 1000 for key, sent in sent_at.items()]
    return [
        (
            "webhook-to-Moodle lag p50 / p99 (local stack, stand-in)",
            f"{median(lags):.0f} / {percentile(lags, 0.99):.0f} ms",
            "",
            "",
        )
    ]


def _wait(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("deliveries did not finish")
        time.sleep(0.2)


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"
