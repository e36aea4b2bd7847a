"""The delivery stage (docs/connect-moodle.md) against the Moodle stand-in: signed webhooks in through the
verifiers, the processors writing deliveries with their mirror change, the Moodle delivery function
behind its queue, and Moodle's state checked through its own web services.

The same provisioning rules run against a real Moodle in ``tests/contract`` and, through the whole
local stack, in ``tests/e2e/test_delivery_to_moodle.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devstack.invoke import LocalContext, load_function
from devstack.moodle_standin import MoodleStandIn
from devstack.poller import QueuePoller, lambda_sqs_event
from event_router.deliver.moodle.client import MoodleRestClient
from tests.conftest import Queues, closed_port
from tests.integration.conftest import FUNCTIONS, Invoke, load_event, refuse_writes
from tests.integration.flow import CLASS, T1, T2, T3, moodle, rows, zoho

COURSE = "L3-IT-2026"
STATS = load_event("monitor-stats")
ADA, GRACE = "5725767000000412001", "5725767000000412002"
ENROLMENT, GRACE_ENROLMENT = "5725767000000630021", "5725767000000630022"


def ada(**changes: Any) -> dict[str, Any]:
    return {
        "Name": "Ada Example",
        "Student_ID_Number": "BTEC-0001",
        "Academic_Email": "Ada.Example@students.example.ac.uk",
        **changes,
    }


def grace(**changes: Any) -> dict[str, Any]:
    return {
        "Name": "Grace Hopper",
        "Student_ID_Number": "BTEC-0002",
        "Academic_Email": "grace@students.example.ac.uk",
        **changes,
    }


def enrolment(student: str, status: str = "Active", course: str = COURSE) -> dict[str, Any]:
    return {
        "Name": "Level 3 IT",
        "Enrolled_Students": {"id": student, "name": "a student"},
        "Classes": {"id": CLASS, "name": "Level 3 Extended Diploma in IT"},
        "Enrollment_Status": status,
        "Moodle_Course_ID": course,
    }


class Pipeline:
    """Verifiers, the students and enrolments processors and the Moodle delivery function, each
    behind its queue, wired to one stand-in Moodle."""

    def __init__(self, load: Callable[..., Invoke], queues: Queues, site: MoodleStandIn, db: Engine) -> None:
        self.queues, self.site, self.db, self._load = queues, site, db, load
        dlq_arn = queues.sqs.get_queue_attributes(QueueUrl=queues.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.delivery_url = queues.sqs.create_queue(
            QueueName=f"{queues.urls['students'].rsplit('/', 1)[1]}-moodle-delivery",
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
            },
        )["QueueUrl"]
        self.token = site.site.token
        self.moodle_url = site.url
        self.verifiers = {"zoho": load("ZohoWebhookFunction"), "moodle": load("MoodleWebhookFunction")}
        self.processors = [
            self._poller(f"{m.capitalize()}Processor", queues.urls[m]) for m in ("students", "enrollments")
        ]
        self.restart_delivery_function()

    def _poller(self, name: str, url: str, **overrides: str) -> QueuePoller:
        invoke = self._load(name, MOODLE_DELIVERY_QUEUE_URL=self.delivery_url, MAX_RECEIVE_COUNT="3", **overrides)
        return QueuePoller(self.queues.sqs, url, lambda event, _: invoke(event), name, retry_immediately=True)

    def restart_delivery_function(self, **overrides: str) -> None:
        """A fresh container of the delivery function (one reads its token once)."""
        settings = {"MOODLE_URL": self.moodle_url, "MOODLE_TOKEN": self.token, "RETRY_BASE_SECONDS": "0", **overrides}
        self.delivery = self._poller("MoodleDeliveryFunction", self.delivery_url, **settings)
        invoke = self._load("MoodleDeliveryFunction", MOODLE_DELIVERY_QUEUE_URL=self.delivery_url, **settings)
        self.check = lambda: invoke({"check": "moodle"})
        self.replay = lambda request: self._load(
            "ReplayFunction", MOODLE_DELIVERY_QUEUE_URL=self.delivery_url, MAX_RECEIVE_COUNT="3"
        )(request)

    def send(self, *samples: Any) -> None:
        for sample in samples:
            response = self.verifiers[sample.source](sample.event())
            assert response["statusCode"] in (200, 202), response

    def run(self) -> None:
        """Everything queued, processed and delivered, including what a delivery wakes."""
        for _ in range(20):
            moved = sum(p.drain() for p in self.processors) + self.delivery.drain()
            if moved == 0:
                return
        raise AssertionError("the pipeline did not settle")

    def moodle(self, function: str, **params: Any) -> Any:
        """Moodle's own answer, as an administrator's script would see it."""
        return MoodleRestClient(self.site.url, self.site.site.token).call(function, params)

    def user(self, idnumber: str) -> dict[str, Any] | None:
        found = self.moodle("core_user_get_users_by_field", field="idnumber", values=[idnumber])
        assert len(found) <= 1, found
        return found[0] if found else None

    def deliveries(self) -> list[dict[str, Any]]:
        return rows(self.db, "SELECT * FROM deliveries ORDER BY id")

    def statuses(self) -> list[tuple[str, str, str]]:
        return [(d["action"], d["target_key"], d["status"]) for d in self.deliveries()]


@pytest.fixture
def standin() -> Iterator[MoodleStandIn]:
    server = MoodleStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def pipeline(load: Callable[..., Invoke], queues: Queues, standin: MoodleStandIn, db: Engine) -> Pipeline:
    return Pipeline(load, queues, standin, db)


def course_id(pipeline: Pipeline) -> int:
    return pipeline.site.site.create_course(COURSE)


# ------------------------------------------------------------------ the outbox


def test_the_processor_writes_the_delivery_with_the_mirror_change_and_sends_its_id(pipeline: Pipeline) -> None:
    pipeline.send(zoho("student", ADA, "insert", T1, **ada()))
    [processor, _] = pipeline.processors
    processor.drain()

    [delivery] = pipeline.deliveries()
    [logged] = rows(pipeline.db, "SELECT id FROM integration_events_log")
    [message] = pipeline.queues.receive_all(pipeline.delivery_url)
    assert (delivery["destination"], delivery["action"], delivery["target_key"]) == ("moodle", "user", ADA)
    assert (delivery["status"], delivery["event_log_id"]) == ("pending", logged["id"])
    assert json.loads(message["Body"]) == {"delivery_id": delivery["id"], "destination": "moodle"}


def test_a_processor_without_a_delivery_queue_writes_no_delivery(
    load: Callable[..., Invoke], queues: Queues, db: Engine, send: Callable[..., Any]
) -> None:
    send(zoho("student", ADA, "insert", T1, **ada()))
    invoke = load("StudentsProcessor")
    QueuePoller(queues.sqs, queues.urls["students"], lambda e, _: invoke(e), "StudentsProcessor").drain()

    assert rows(db, "SELECT * FROM students") != []
    assert rows(db, "SELECT * FROM deliveries") == []


def test_a_mirror_change_that_fails_writes_no_delivery(pipeline: Pipeline) -> None:
    lift = refuse_writes(pipeline.db, ADA, "numeric_value_out_of_range", table="students")  # bad data
    try:
        pipeline.send(zoho("student", ADA, "insert", T1, **ada()))
        pipeline.processors[0].drain()
    finally:
        lift()

    assert [r["status"] for r in rows(pipeline.db, "SELECT status FROM integration_events_log")] == ["failed"]
    assert pipeline.deliveries() == []
    assert pipeline.queues.depth(pipeline.delivery_url) == 0


# ------------------------------------------------------------------ students → Moodle users


def test_a_new_student_becomes_one_moodle_user_with_the_mapped_fields(pipeline: Pipeline) -> None:
    pipeline.send(zoho("student", ADA, "insert", T1, **ada()))
    pipeline.run()

    user = pipeline.user("BTEC-0001")
    assert user is not None
    assert (user["username"], user["email"]) == (
        "ada.example@students.example.ac.uk",
        "Ada.Example@students.example.ac.uk",
    )
    assert (user["firstname"], user["lastname"], user["suspended"]) == ("Ada", "Example", False)
    [account] = rows(pipeline.db, "SELECT student_zoho_id, moodle_user_id, origin FROM moodle_accounts")
    [delivery] = pipeline.deliveries()
    assert account == {"student_zoho_id": ADA, "moodle_user_id": user["id"], "origin": "created"}
    assert (delivery["status"], delivery["result"]) == (
        "delivered",
        {"moodle_user_id": user["id"], "action": "created"},
    )
    assert delivery["attempts"] == 1
    assert delivery["delivered_at"] is not None


def test_an_update_changes_the_same_user_and_a_delete_suspends_it(pipeline: Pipeline) -> None:
    pipeline.send(zoho("student", ADA, "insert", T1, **ada()))
    pipeline.run()
    created = pipeline.user("BTEC-0001")
    pipeline.send(zoho("student", ADA, "update", T2, **ada(Name="Ada Lovelace")))
    pipeline.run()
    updated = pipeline.user("BTEC-0001")
    pipeline.send(zoho("student", ADA, "delete", T3))
    pipeline.run()
    deleted = pipeline.user("BTEC-0001")

    assert created
    assert updated
    assert deleted
    assert created["id"] == updated["id"] == deleted["id"]
    assert (updated["lastname"], updated["suspended"]) == ("Lovelace", False)
    assert deleted["suspended"] is True
    assert len(pipeline.site.site.users) == 3  # the admin, the web-service user and Ada: nothing created twice
    assert [d["result"]["action"] for d in pipeline.deliveries()] == ["created", "updated", "suspended"]


def test_a_student_already_in_moodle_is_found_not_created_again(pipeline: Pipeline) -> None:
    existing = pipeline.moodle(
        "core_user_create_users",
        users=[
            {
                "username": "ada.example@students.example.ac.uk",
                "email": "ada.example@students.example.ac.uk",
                "firstname": "Ada",
                "lastname": "Example",
                "createpassword": 1,
            }
        ],
    )[0]["id"]

    pipeline.send(zoho("student", ADA, "insert", T1, **ada()))
    pipeline.run()

    user = pipeline.user("BTEC-0001")  # found by e-mail, adopted, and given its idnumber
    assert user is not None
    assert user["id"] == existing
    assert len(pipeline.site.site.users) == 3
    [delivery] = pipeline.deliveries()
    assert delivery["result"] == {"moodle_user_id": existing, "action": "adopted"}


# ------------------------------------------------------------------ enrolments


def test_an_enrolment_enrols_the_student_in_the_course_with_that_idnumber(pipeline: Pipeline) -> None:
    course = course_id(pipeline)
    pipeline.send(zoho("student", ADA, "insert", T1, **ada()))
    pipeline.run()
    pipeline.send(zoho("enrollment", ENROLMENT, "insert", T1, **enrolment(ADA)))
    pipeline.run()

    user = pipeline.user("BTEC-0001")
    assert user is not None
    assert pipeline.site.site.enrolment(user["id"], course) == "active"
    assert pipeline.site.site.enrolments[user["id"], course]["roleid"] == 5
    assert pipeline.deliveries()[-1]["result"] == {
        "moodle_user_id": user["id"],
        "moodle_course_id": course,
        "state": "active",
    }


@pytest.mark.parametrize("status", ["Withdrawn", "Suspended", "Completed"])
def test_a_student_who_leaves_is_suspended_and_a_deleted_enrolment_unenrols(pipeline: Pipeline, status: str) -> None:
    course = course_id(pipeline)
    pipeline.send(
        zoho("student", ADA, "insert", T1, **ada()), zoho("enrollment", ENROLMENT, "insert", T1, **enrolment(ADA))
    )
    pipeline.run()
    user = pipeline.user("BTEC-0001")
    assert user is not None
    pipeline.send(zoho("enrollment", ENROLMENT, "update", T2, **enrolment(ADA, status)))
    pipeline.run()
    left = pipeline.site.site.enrolment(user["id"], course)
    pipeline.send(zoho("enrollment", ENROLMENT, "delete", T3))
    pipeline.run()

    assert (left, pipeline.site.site.enrolment(user["id"], course)) == ("suspended", None)


@pytest.mark.parametrize("order", ["enrolment first", "student first"])
def test_an_enrolment_and_its_student_end_right_in_either_order(pipeline: Pipeline, order: str) -> None:
    course = course_id(pipeline)
    student = zoho("student", GRACE, "insert", T1, **grace())
    enrolled = zoho("enrollment", GRACE_ENROLMENT, "insert", T1, **enrolment(GRACE))
    first, second = (enrolled, student) if order == "enrolment first" else (student, enrolled)

    pipeline.send(first)
    pipeline.run()
    between = pipeline.statuses()
    pipeline.send(second)
    pipeline.run()

    if order == "enrolment first":
        [waiting] = [d for d in pipeline.deliveries() if d["action"] == "enrolment"]
        assert between == [("enrolment", GRACE_ENROLMENT, "waiting")]
        assert waiting["result"]["state"] == "active"  # it was woken and done
    user = pipeline.user("BTEC-0002")
    assert user is not None
    assert pipeline.site.site.enrolment(user["id"], course) == "active"
    assert sorted(s for _, _, s in pipeline.statuses()) == ["delivered", "delivered"]


def test_a_waiting_enrolment_shows_why_in_stats(pipeline: Pipeline, load: Callable[..., Invoke]) -> None:
    course_id(pipeline)
    pipeline.send(zoho("enrollment", GRACE_ENROLMENT, "insert", T1, **enrolment(GRACE)))
    pipeline.run()

    stats = json.loads(load("MonitorFunction")(STATS)["body"])

    [waiting] = stats["deliveries"]["waiting"]
    assert (waiting["target_key"], waiting["last_error"]) == (
        GRACE_ENROLMENT,
        f"the student {GRACE} has no Moodle account the router manages yet",
    )
    assert stats["deliveries"]["by_status"] == {"waiting": 1}


def test_a_steady_state_enrolment_costs_one_moodle_call(pipeline: Pipeline) -> None:
    course_id(pipeline)
    pipeline.send(
        zoho("student", ADA, "insert", T1, **ada()), zoho("enrollment", ENROLMENT, "insert", T1, **enrolment(ADA))
    )
    pipeline.run()
    calls = len(pipeline.site.site.calls)

    pipeline.send(zoho("enrollment", ENROLMENT, "update", T2, **enrolment(ADA, "Withdrawn")))
    pipeline.run()

    assert pipeline.site.site.calls[calls:] == ["enrol_manual_enrol_users"]


def test_a_course_replaced_under_the_same_idnumber_is_looked_up_again(pipeline: Pipeline) -> None:
    old = course_id(pipeline)
    pipeline.send(
        zoho("student", ADA, "insert", T1, **ada()), zoho("enrollment", ENROLMENT, "insert", T1, **enrolment(ADA))
    )
    pipeline.run()
    del pipeline.site.site.courses[old]  # an administrator deleted it, and made it again
    new = course_id(pipeline)

    pipeline.send(zoho("enrollment", ENROLMENT, "update", T2, **enrolment(ADA)))
    pipeline.run()

    user = pipeline.user("BTEC-0001")
    assert user is not None
    assert pipeline.site.site.enrolment(user["id"], new) == "active"
    assert pipeline.statuses()[-1][2] == "delivered"


# ------------------------------------------------------------------ failures


def test_bad_data_fails_that_delivery_with_moodles_message_and_the_others_go_on(pipeline: Pipeline) -> None:
    course_id(pipeline)
    pipeline.send(
        zoho("student", ADA, "insert", T1, **ada(Academic_Email="not an address")),
        zoho("student", GRACE, "insert", T1, **grace()),
        zoho("enrollment", GRACE_ENROLMENT, "insert", T1, **enrolment(GRACE, course="NO-SUCH-COURSE")),
    )
    pipeline.run()

    found = {d["target_key"]: d for d in pipeline.deliveries()}
    assert found[ADA]["status"] == "failed"
    assert "invalidparameter" in found[ADA]["last_error"]
    assert found[GRACE]["status"] == "delivered"
    assert (found[GRACE_ENROLMENT]["status"], found[GRACE_ENROLMENT]["last_error"]) == (
        "failed",
        "no Moodle course has idnumber 'NO-SUCH-COURSE'",
    )
    assert pipeline.queues.depth(pipeline.queues.dlq_url) == 0


def test_a_failed_enrolment_is_delivered_by_replay_once_the_course_exists(pipeline: Pipeline) -> None:
    pipeline.send(
        zoho("student", ADA, "insert", T1, **ada()), zoho("enrollment", ENROLMENT, "insert", T1, **enrolment(ADA))
    )
    pipeline.run()
    assert pipeline.statuses()[-1] == ("enrolment", ENROLMENT, "failed")
    course = course_id(pipeline)

    answer = pipeline.replay({"mode": "deliveries", "delivery_statuses": ["failed"]})
    pipeline.run()

    user = pipeline.user("BTEC-0001")
    assert answer["replayed"] == 1
    assert user is not None
    assert pipeline.site.site.enrolment(user["id"], course) == "active"


def test_the_same_events_redelivered_or_replayed_leave_one_user_and_one_enrolment(pipeline: Pipeline) -> None:
    course = course_id(pipeline)
    events = [
        zoho("student", ADA, "insert", T1, **ada()),
        zoho("enrollment", ENROLMENT, "insert", T1, **enrolment(ADA)),
    ]
    pipeline.send(*events)
    pipeline.run()
    delivered = [(d["id"], d["status"], d["result"]) for d in pipeline.deliveries()]
    for delivery in pipeline.deliveries():  # every delivery message arrives a second time
        pipeline.queues.sqs.send_message(
            QueueUrl=pipeline.delivery_url,
            MessageBody=json.dumps({"delivery_id": delivery["id"], "destination": "moodle"}),
        )
    pipeline.send(*events)  # the same webhooks again: duplicates
    pipeline.run()
    calls = len(pipeline.site.site.calls)
    replayed = pipeline.replay({"mode": "deliveries", "delivery_statuses": ["delivered"]})
    pipeline.run()

    user = pipeline.user("BTEC-0001")
    assert user is not None
    assert len(pipeline.site.site.users) == 3
    assert [key for key in pipeline.site.site.enrolments] == [(user["id"], course)]
    assert [(d["id"], d["status"], d["result"]) for d in pipeline.deliveries()] == [
        (i, status, {**result, "action": "unchanged"} if "action" in result else result)
        for i, status, result in delivered
    ]
    assert [d["attempts"] for d in pipeline.deliveries()] == [2, 2]  # the replay's, not the duplicates'
    assert replayed["replayed"] == 2
    # the replay looked the user up and enrolled again (a no-op for Moodle); nothing was created
    assert "core_user_create_users" not in pipeline.site.site.calls[calls:]


def test_a_wrong_token_pauses_moodle_without_dead_lettering_and_resumes_when_it_is_right(pipeline: Pipeline) -> None:
    course = course_id(pipeline)
    pipeline.restart_delivery_function(MOODLE_TOKEN="0" * 32)  # a token Moodle does not know
    pipeline.send(
        zoho("student", ADA, "insert", T1, **ada()),
        zoho("student", GRACE, "insert", T1, **grace()),
        zoho("enrollment", ENROLMENT, "insert", T1, **enrolment(ADA)),
    )
    pipeline.run()
    paused = sorted(s for _, _, s in pipeline.statuses())
    still = pipeline.check()

    pipeline.restart_delivery_function()  # the right token, in a new container as after a secret change
    resumed = pipeline.check()
    pipeline.run()

    assert paused == ["paused", "paused", "paused"]
    assert {k: still[k] for k in ("destination", "healthy", "paused", "error")} == {
        "destination": "moodle",
        "healthy": False,
        "paused": True,
        "error": "invalidtoken",
    }
    assert still["checks"] == {"identity": {"ok": False, "reason": "invalidtoken"}}
    assert pipeline.queues.depth(pipeline.queues.dlq_url) == 0
    assert (resumed["healthy"], resumed["resumed"], resumed["requeued"]) == (True, True, 3)
    assert sorted(s for _, _, s in pipeline.statuses()) == ["delivered"] * 3
    ada_user = pipeline.user("BTEC-0001")
    assert ada_user is not None
    assert pipeline.site.site.enrolment(ada_user["id"], course) == "active"


def test_an_unreachable_moodle_is_retried_then_dead_lettered_and_replay_delivers_it(pipeline: Pipeline) -> None:
    pipeline.restart_delivery_function(MOODLE_URL=f"http://127.0.0.1:{closed_port()}", MOODLE_TIMEOUT_SECONDS="1")
    pipeline.send(zoho("student", ADA, "insert", T1, **ada()))
    pipeline.run()
    [gone] = pipeline.deliveries()

    pipeline.restart_delivery_function()
    answer = pipeline.replay({"mode": "dlq"})
    pipeline.run()

    assert (gone["status"], gone["attempts"]) == ("dead_lettered", 3)
    assert "unreachable" in gone["last_error"]
    assert answer["delivery_ids"] == [gone["id"]]
    assert pipeline.statuses() == [("user", ADA, "delivered")]
    assert pipeline.user("BTEC-0001") is not None


def test_the_sweep_sends_a_delivery_whose_message_was_lost(pipeline: Pipeline) -> None:
    pipeline.send(zoho("student", ADA, "insert", T1, **ada()))
    pipeline.processors[0].drain()
    pipeline.queues.receive_all(pipeline.delivery_url)  # the message is lost
    with pipeline.db.begin() as connection:
        connection.execute(text("UPDATE deliveries SET created_at = now() - interval '20 minutes'"))

    answer = pipeline.replay({"mode": "sweep"})
    pipeline.run()

    assert answer["delivery_ids"] == [pipeline.deliveries()[0]["id"]]
    assert pipeline.statuses() == [("user", ADA, "delivered")]


# ------------------------------------------------------------------ echoes


def test_a_moodle_event_the_router_caused_is_mirrored_as_an_echo(pipeline: Pipeline) -> None:
    pipeline.check()  # learns the router's web-service user
    router = pipeline.site.site.web_service_user
    pipeline.send(
        moodle("enrollment", "user_enrolment_created", 1_764_000_000, userid=router),
        moodle("enrollment", "user_enrolment_created", 1_764_000_001, userid=7),
    )
    pipeline.processors[1].drain()

    results = [r["result"] for r in rows(pipeline.db, "SELECT result FROM integration_events_log ORDER BY id")]
    assert [r.get("echo", False) for r in results] == [True, False]
    assert len(rows(pipeline.db, "SELECT * FROM moodle_enrolments")) == 1  # the same enrolment, mirrored


def test_a_slow_moodle_never_times_out_a_batch_what_is_left_is_handed_back_untried(
    pipeline: Pipeline, function_environment: dict[str, str], queues: Queues
) -> None:
    """Each Moodle call takes a quarter of a second and the invocation has 6 s: the function stops
    starting deliveries while it still has twice Moodle's call timeout in hand, and hands the rest
    back at once (visible again, not postponed, not attempted), instead of being killed mid-batch."""
    course_id(pipeline)
    students = [ada(Student_ID_Number=f"S-{n}", Academic_Email=f"s{n}@students.example.ac.uk") for n in range(10)]
    pipeline.send(*(zoho("student", f"57257670000004130{n:02}", "insert", T1, **s) for n, s in enumerate(students)))
    for processor in pipeline.processors:
        processor.drain()
    messages: list[dict[str, Any]] = []
    while len(messages) < 10:
        messages += queues.sqs.receive_message(
            QueueUrl=pipeline.delivery_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
    arn = queues.sqs.get_queue_attributes(QueueUrl=pipeline.delivery_url, AttributeNames=["QueueArn"])["Attributes"]
    spec = FUNCTIONS["MoodleDeliveryFunction"]
    fixed = {k: v for k, v in spec.environment.items() if isinstance(v, str)}
    handler = load_function(
        spec.code_uri,
        spec.handler,
        {
            **fixed,
            **function_environment,
            "MOODLE_URL": pipeline.moodle_url,
            "MOODLE_TOKEN": pipeline.token,
            "MOODLE_TIMEOUT_SECONDS": "1.5",  # three seconds in hand
            "MOODLE_DELIVERY_QUEUE_URL": pipeline.delivery_url,
            "RETRY_BASE_SECONDS": "60",
        },
        "slow-moodle",
    )
    pipeline.site.latency_seconds = 0.25

    started = time.monotonic()
    answer = handler(lambda_sqs_event(messages, arn["QueueArn"]), LocalContext("slow", timeout_seconds=6.0))
    elapsed = time.monotonic() - started

    handed_back = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    statuses = [d["status"] for d in pipeline.deliveries()]
    assert elapsed < 6.0  # it returned before Lambda would have killed it
    assert 1 <= statuses.count("delivered") <= 9
    assert len(handed_back) == 10 - statuses.count("delivered")
    assert statuses.count("pending") == len(handed_back)
    assert {d["attempts"] for d in pipeline.deliveries() if d["status"] == "pending"} == {0}
    visible = queues.sqs.get_queue_attributes(
        QueueUrl=pipeline.delivery_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    assert int(visible) == len(handed_back)  # visible again at once


def test_a_failed_delivery_waits_no_longer_than_retry_max_seconds(pipeline: Pipeline) -> None:
    pipeline.restart_delivery_function(
        MOODLE_URL=f"http://127.0.0.1:{closed_port()}",
        MOODLE_TIMEOUT_SECONDS="1",
        RETRY_BASE_SECONDS="3600",  # an hour after the first failure...
        RETRY_MAX_SECONDS="120",  # ...but the operator said two minutes at most
    )
    pipeline.send(zoho("student", ADA, "insert", T1, **ada()))
    pipeline.processors[0].drain()

    pipeline.delivery.poll_once()

    [waiting] = rows(pipeline.db, "SELECT status, extract(epoch FROM next_attempt_at - now()) AS wait FROM deliveries")
    assert waiting["status"] == "pending"
    assert 0 < waiting["wait"] <= 120
