"""Student data (UK GDPR articles 15 and 17) against real Postgres and moto's SQS: payload
retention, the erasure of one student by each kind of identifier, a dry run, and the export.

Ada is the sample student (her values are in the suite-wide check that no log line carries a payload
value); Grace is another student whose data must survive Ada's erasure untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devstack.poller import QueuePoller
from devstack.samples import STUDENT_ID, ZOHO_RECORDS, Sample, dev_environment
from event_router.messages import EventMessage
from event_router.store.schema import metadata
from tests.conftest import Queues
from tests.integration.conftest import OFFICER, PROCESSORS, Invoke, privacy_route
from tests.integration.flow import CLASS, T1, T2, moodle, rows, zoho

_, _, ADA_FIELDS = ZOHO_RECORDS["student"]
ADA = {
    "zoho": STUDENT_ID,
    "number": ADA_FIELDS["Student_ID_Number"],
    "email": ADA_FIELDS["Academic_Email"],
    "moodle": 348,
}
GRACE = {
    "zoho": "5725767000000412777",
    "number": "BTEC-2026-0777",
    "email": "grace.hopper.777@students.example.ac.uk",
    "moodle": 777,
}


def history(who: dict[str, Any], name: str) -> list[Sample]:
    """A student's life in the router: created and changed in Zoho, enrolled, graded in Zoho and in
    Moodle."""
    student = {
        "Name": name,
        "Student_ID_Number": who["number"],
        "Academic_Email": who["email"],
        "Moodle_User_ID": str(who["moodle"]),
    }
    enrolment = {
        "Name": f"{name} - L3 IT",
        "Enrolled_Students": {"id": who["zoho"], "name": name},
        "Classes": {"id": CLASS},
        "Enrollment_Status": "Active",
    }
    grade = {"Name": f"Unit 1 - {name}", "Student": {"id": who["zoho"], "name": name}, "Grade": "Merit"}
    return [
        zoho("student", who["zoho"], "insert", T1, **student),
        zoho("student", who["zoho"], "update", T2, **{**student, "Name": f"{name} (updated)"}),
        zoho("enrollment", f"E{who['moodle']}", "insert", T1, **enrolment),
        zoho("grade", f"G{who['moodle']}", "insert", T1, **grade),
        moodle("enrollment", "user_enrolment_created", 1_764_000_000 + who["moodle"], relateduserid=who["moodle"]),
        moodle(
            "grade",
            "user_graded",
            1_764_000_100 + who["moodle"],
            relateduserid=who["moodle"],
            other={"itemid": 431, "finalgrade": 72},
        ),
    ]


@pytest.fixture
def router(
    load: Callable[..., Invoke], queues: Queues, send: Callable[[Sample], dict[str, Any]], db: Engine
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Both students' histories mirrored, one dead letter of each, and the privacy function."""
    for sample in [*history(ADA, "Ada Example"), *history(GRACE, "Grace Hopper")]:
        send(sample)
    for module, name in PROCESSORS.items():
        invoke = load(name)
        QueuePoller(queues.sqs, queues.urls[module], lambda e, _, i=invoke: i(e), name, retry_immediately=True).drain()
    with db.begin() as connection:  # each student's Moodle account, as the router made it
        for who in (ADA, GRACE):
            connection.execute(
                text(
                    "INSERT INTO moodle_accounts (student_zoho_id, moodle_user_id, origin) VALUES (:s, :u, 'created')"
                ),
                {"s": who["zoho"], "u": who["moodle"]},
            )
    for who, name in ((ADA, "Ada Example"), (GRACE, "Grace Hopper")):  # an event of each that kept failing
        sample = zoho(
            "student", who["zoho"], "update", "2026-11-25T12:00:00+00:00", Name=name, Academic_Email=who["email"]
        )
        event = send(sample)
        [message] = queues.receive_all(queues.urls["students"])
        queues.sqs.send_message(QueueUrl=queues.dlq_url, MessageBody=message["Body"])
        assert event["status"] == "queued"
    return privacy_route(load("PrivacyFunction", DEAD_LETTER_QUEUE_URL=queues.dlq_url))


def everything(db: Engine) -> str:
    """Every row of every table, as text, lower case (but the record of privacy requests, which every
    request adds to; the tests below look at it themselves)."""
    with db.connect() as connection:
        return "\n".join(
            str(row[0]).lower()
            for table in metadata.sorted_tables
            if table.name != "privacy_requests"
            for row in connection.execute(text(f"SELECT row_to_json(t)::text FROM {table.name} AS t"))
        )


def dead_letters(queues: Queues) -> list[str]:
    """The dead-letter queue's bodies (read, then made visible again)."""
    found = queues.sqs.receive_message(QueueUrl=queues.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
        "Messages", []
    )
    return [m["Body"] for m in found]


def values(who: dict[str, Any]) -> list[str]:
    """A student's identifiers as they appear in lower-cased text."""
    return [who["zoho"], who["number"].lower(), who["email"].lower()]


@pytest.mark.parametrize(
    "given",
    [
        {"zoho_record_id": ADA["zoho"]},
        {"student_number": ADA["number"]},
        {"email": ADA["email"].upper()},  # any case
        {"moodle_user_id": ADA["moodle"]},
    ],
    ids=["zoho_record_id", "student_number", "email", "moodle_user_id"],
)
def test_erasure_by_any_identifier_leaves_nothing_of_the_student_and_everything_of_others(
    router: Callable[[dict[str, Any]], dict[str, Any]], db: Engine, queues: Queues, given: dict[str, Any]
) -> None:
    grace_before = [v for v in values(GRACE) if v in everything(db)]

    answer = router({"action": "erase", "student": given, "requested_by": "dpo@college.example"})

    assert answer["success"] is True, answer
    stored = everything(db)
    assert [v for v in values(ADA) if v in stored] == []
    assert "ada example" not in stored
    assert rows(db, "SELECT * FROM moodle_enrolments WHERE moodle_user_id = 348") == []
    assert rows(db, "SELECT * FROM moodle_grades WHERE moodle_user_id = 348") == []
    moodle_events = rows(db, "SELECT payload FROM integration_events_log WHERE source = 'moodle'")
    assert sorted(str(p.get("relateduserid")) for p in (r["payload"] for r in moodle_events)) == [
        "777",
        "777",
        "None",
        "None",
    ]
    assert all(v not in body.lower() for body in dead_letters(queues) for v in values(ADA))
    assert [v for v in values(GRACE) if v in stored] == grace_before  # Grace untouched
    assert any(GRACE["email"] in body for body in dead_letters(queues))
    counts = answer["counts"]
    assert counts["students_deleted"] == 1
    assert counts["dead_letters_removed"] == 1
    assert counts["events_redacted"] == 7  # her 6 events and the one that failed
    [erasure] = rows(db, "SELECT * FROM erasures")
    assert erasure["requested_by"] == OFFICER  # who asked, as API Gateway verified; not what they claimed
    assert json.dumps(erasure["identifiers"]).count('"') > 0
    assert all(v not in json.dumps(erasure["identifiers"]).lower() for v in values(ADA))  # hashed, never in clear


def test_a_dry_run_reports_the_counts_and_changes_nothing(
    router: Callable[[dict[str, Any]], dict[str, Any]], db: Engine, queues: Queues
) -> None:
    before, dlq_before = everything(db), sorted(dead_letters(queues))

    dry = router({"action": "erase", "student": {"email": ADA["email"]}, "dry_run": True})

    assert everything(db) == before
    assert sorted(dead_letters(queues)) == dlq_before
    real = router({"action": "erase", "student": {"email": ADA["email"]}})
    assert dry["counts"] == real["counts"]


def test_after_erasure_a_resend_is_still_a_duplicate_unless_its_event_id_named_the_student(
    router: Callable[[dict[str, Any]], dict[str, Any]], send: Callable[[Sample], dict[str, Any]]
) -> None:
    opaque = zoho(
        "student", ADA["zoho"], "update", "2026-11-25T11:00:00+00:00", "zoho-notification-81726354", Name="Ada"
    )
    send(opaque)
    router({"action": "erase", "student": {"zoho_record_id": ADA["zoho"]}})

    resent = send(opaque)  # Zoho's own notification id: the row keeps it, so a resend changes nothing
    named = send(history(ADA, "Ada Example")[0])  # an id derived from her record id went with her
    later = send(zoho("student", ADA["zoho"], "update", "2026-11-25T13:00:00+00:00", Name="Ada Example"))

    assert resent["status"] == "duplicate"
    assert named["status"] == "queued"
    assert later["status"] == "queued"  # Zoho may still send her: the guide says how to stop it at the source


def test_the_export_holds_every_value_stored_about_the_student_and_nothing_about_others(
    router: Callable[[dict[str, Any]], dict[str, Any]], db: Engine
) -> None:
    answer = router({"action": "export", "student": {"student_number": ADA["number"]}})

    document = json.dumps(answer["data"]).lower()
    assert all(v in document for v in values(ADA))
    assert "ada example (updated)" in document  # the mirror's current name, and the history's payloads
    assert [v for v in values(GRACE) if v in document] == []
    assert len(answer["data"]["events"]) == 7
    assert {
        t: len(answer["data"][t]) for t in ("students", "enrollments", "grades", "moodle_enrolments", "moodle_grades")
    } == {
        "students": 1,
        "enrollments": 1,
        "grades": 1,
        "moodle_enrolments": 1,
        "moodle_grades": 1,
    }
    # the export changes nothing
    assert ADA["email"] in everything(db)


def test_exactly_one_identifier_is_required(router: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    answer = router({"action": "erase", "student": {"email": ADA["email"], "student_number": ADA["number"]}})

    assert answer["success"] is False
    assert answer["error"] == "invalid_request"


# ------------------------------------------------------------------ retention


def test_retention_redacts_only_old_settled_payloads_and_keeps_the_dedup_key(
    load: Callable[..., Invoke], send: Callable[[Sample], dict[str, Any]], queues: Queues, db: Engine
) -> None:
    old, recent, stuck = (zoho("student", f"R{n}", "insert", T1, Name=f"Retained {n}") for n in range(3))
    for sample in (old, recent, stuck):
        send(sample)
    invoke = load("StudentsProcessor")
    QueuePoller(queues.sqs, queues.urls["students"], lambda e, _: invoke(e), "s", retry_immediately=True).drain()
    with db.begin() as connection:
        connection.execute(
            text(
                "UPDATE integration_events_log SET received_at = now() - interval '31 days' "
                "WHERE record_id IN ('R0', 'R2')"
            )
        )
        connection.execute(text("UPDATE integration_events_log SET status = 'dead_lettered' WHERE record_id = 'R2'"))

    answer = load("ReplayFunction", PAYLOAD_RETENTION_DAYS="30")({"mode": "sweep"})
    resent = send(old)

    payloads = {r["record_id"]: r["payload"] for r in rows(db, "SELECT record_id, payload FROM integration_events_log")}
    assert answer["payloads_redacted"] == 1
    assert payloads["R0"]["redacted"] is True
    assert len(payloads["R0"]["sha256"]) == 64
    assert "redacted" not in payloads["R1"]  # recent
    assert "redacted" not in payloads["R2"]  # old, but in the dead-letter queue
    assert resent["status"] == "duplicate"


def test_an_event_message_in_the_dead_letter_queue_is_recognised_by_the_moodle_user_it_is_about() -> None:
    from event_router.operate.privacy import _mentions

    event = EventMessage.from_json(
        json.dumps(
            {
                "source": "moodle",
                "module": "grades",
                "event_id": "e",
                "event_type": "update",
                "record_id": "x",
                "occurred_at": None,
                "payload": {},
                "version": 2,
                "facts": {"kind": "moodle", "event_name": "core\\event\\user_graded", "student": 348, "course": 12},
            }
        )
    )
    assert event is not None

    assert _mentions(event.model_dump_json(), {("moodle_user_id", "348")}, set()) is True
    assert _mentions(event.model_dump_json(), {("moodle_user_id", "777")}, set()) is False
    assert _mentions(event.model_dump_json(), {("student_number", "348")}, set()) is False  # a kind, not a number
    assert _mentions('{"delivery_id": 5, "destination": "moodle"}', set(), {5}) is True


# ------------------------------------------------------------------ an erasure that holds


def drain(load: Callable[..., Invoke], queues: Queues, **overrides: str) -> None:
    for module, name in PROCESSORS.items():
        invoke = load(name, **overrides)
        QueuePoller(queues.sqs, queues.urls[module], lambda e, _, i=invoke: i(e), name, retry_immediately=True).drain()


def test_an_erased_student_never_comes_back_from_a_module_queue_the_dead_letter_queue_or_a_replay(
    load: Callable[..., Invoke], queues: Queues, send: Callable[[Sample], dict[str, Any]], db: Engine
) -> None:
    """The processors are stopped while Ada's history and Grace's wait in the module queues; one event
    of Ada's waits in the dead-letter queue, in flight (someone is looking at it) when the erasure
    runs, and one was queued while Postgres was down (no row in the log). After the erasure the
    processors start, the dead letter is replayed: Grace arrives whole, nothing of Ada comes back."""
    deliveries_url = queues.sqs.create_queue(QueueName=f"moodle-deliveries-{id(queues)}")["QueueUrl"]
    for sample in [*history(ADA, "Ada Example"), *history(GRACE, "Grace Hopper")]:
        send(sample)
    failed = send(
        zoho("student", ADA["zoho"], "update", "2026-11-25T12:00:00+00:00", Name="Ada", Academic_Email=ADA["email"])
    )
    waiting = queues.receive_all(queues.urls["students"])
    [dead] = [m for m in waiting if failed["event_id"] in m["Body"]]
    queues.sqs.send_message(QueueUrl=queues.dlq_url, MessageBody=dead["Body"])
    unlogged = EventMessage.from_json(next(m["Body"] for m in waiting if m is not dead and ADA["zoho"] in m["Body"]))
    assert unlogged is not None
    for message in waiting:
        if message is not dead:
            queues.sqs.send_message(QueueUrl=queues.urls["students"], MessageBody=message["Body"])
    with db.begin() as connection:  # one of her events the verifier queued while Postgres was down
        connection.execute(text("DELETE FROM integration_events_log WHERE event_id = :e"), {"e": unlogged.event_id})
        connection.execute(  # her Moodle account, as the router made it
            text("INSERT INTO moodle_accounts (student_zoho_id, moodle_user_id, origin) VALUES (:s, 348, 'created')"),
            {"s": ADA["zoho"]},
        )
    [in_flight] = queues.sqs.receive_message(QueueUrl=queues.dlq_url, VisibilityTimeout=30)["Messages"]

    erased = privacy_route(load("PrivacyFunction", DEAD_LETTER_QUEUE_URL=queues.dlq_url))(
        {"action": "erase", "student": {"zoho_record_id": ADA["zoho"]}}
    )
    queues.sqs.change_message_visibility(
        QueueUrl=queues.dlq_url, ReceiptHandle=in_flight["ReceiptHandle"], VisibilityTimeout=0
    )
    replayed = load("ReplayFunction")({"mode": "dlq", "max_messages": 10})
    drain(load, queues, MOODLE_DELIVERY_QUEUE_URL=deliveries_url)
    drain(load, queues, MOODLE_DELIVERY_QUEUE_URL=deliveries_url)  # what the replay put back

    assert erased["success"] is True, erased
    assert erased["counts"]["dead_letters_unread"] == 1  # the one in flight: said, not hidden
    assert "could not be read" in erased["warning"]
    assert replayed["success"] is True, replayed
    stored = everything(db)
    assert [v for v in values(ADA) if v in stored] == []
    assert rows(db, "SELECT * FROM students WHERE zoho_record_id = :z", z=ADA["zoho"]) == []
    assert rows(db, "SELECT * FROM moodle_enrolments WHERE moodle_user_id = 348") == []
    assert rows(db, "SELECT * FROM moodle_grades WHERE moodle_user_id = 348") == []
    assert rows(db, "SELECT * FROM deliveries WHERE target_key = :z", z=ADA["zoho"]) == []
    grace = rows(db, "SELECT * FROM students WHERE zoho_record_id = :z", z=GRACE["zoho"])
    assert [g["name"] for g in grace] == ["Grace Hopper (updated)"]
    assert len(rows(db, "SELECT * FROM deliveries WHERE target_key = :z", z=GRACE["zoho"])) == 2  # created, changed
    reasons = rows(db, "SELECT result->>'reason' AS reason FROM integration_events_log WHERE record_id = 'erased'")
    assert {r["reason"] for r in reasons} == {"erased"}


def test_the_erasure_record_and_register_hold_keyed_hashes_only(
    router: Callable[[dict[str, Any]], dict[str, Any]], db: Engine
) -> None:
    import hashlib
    import hmac

    answer = router({"action": "erase", "student": {"student_number": ADA["number"]}})

    [erasure] = rows(db, "SELECT * FROM erasures")
    register = {r["digest"] for r in rows(db, "SELECT digest FROM erased_identities")}
    key = dev_environment()["ERASURE_KEY"].encode()
    keyed = hmac.new(key, f"student_number:{ADA['number']}".encode(), hashlib.sha256).hexdigest()
    plain = hashlib.sha256(f"student_number:{ADA['number']}".encode()).hexdigest()
    assert answer["success"] is True
    assert erasure["identifiers"]["student_number"] == [keyed]
    assert plain not in json.dumps(erasure["identifiers"])
    assert keyed in register
    assert len(register) == 4  # her Zoho record id, number, e-mail and Moodle account


def test_an_erasure_without_its_key_is_refused_and_changes_nothing(
    load: Callable[..., Invoke], queues: Queues, db: Engine, router: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    before = everything(db)

    answer = privacy_route(load("PrivacyFunction", DEAD_LETTER_QUEUE_URL=queues.dlq_url, ERASURE_KEY=""))(
        {"action": "erase", "student": {"zoho_record_id": ADA["zoho"]}}
    )

    assert answer["success"] is False
    assert answer["error"] == "erasure_key_missing"
    assert everything(db) == before


def test_identifiers_are_matched_whole_never_as_part_of_another_students_value(
    load: Callable[..., Invoke], queues: Queues, send: Callable[[Sample], dict[str, Any]], db: Engine
) -> None:
    """Erasing student number B-1200 leaves B-120012's events and dead letters alone (a substring
    match would take them), and a student number 12 is not a mark of 12."""
    short = {"zoho": "5725767000000413001", "number": "B-1200", "email": "b1200@students.example.ac.uk", "moodle": 901}
    longer = {"zoho": "5725767000000413002", "number": "B-120012", "email": "b120012@students.example.ac.uk"}
    send(zoho("student", short["zoho"], "insert", T1, Name="Short", Student_ID_Number=short["number"]))
    send(zoho("student", longer["zoho"], "insert", T1, Name="Longer", Student_ID_Number=longer["number"]))
    grade = zoho(
        "grade", "G413003", "insert", T1, Name="Unit 1", Student={"id": longer["zoho"], "name": "L"}, Grade="12"
    )
    send(grade)
    for module in ("students", "grades"):  # every waiting message: straight to the dead-letter queue
        for message in queues.receive_all(queues.urls[module]):
            queues.sqs.send_message(QueueUrl=queues.dlq_url, MessageBody=message["Body"])
    privacy = privacy_route(load("PrivacyFunction", DEAD_LETTER_QUEUE_URL=queues.dlq_url))

    by_number = privacy({"action": "erase", "student": {"student_number": short["number"]}})
    twelve = privacy({"action": "erase", "student": {"student_number": "12"}})

    assert by_number["counts"]["dead_letters_removed"] == 1
    assert by_number["counts"]["events_redacted"] == 1
    assert twelve["counts"]["dead_letters_removed"] == 0
    assert twelve["counts"]["events_redacted"] == 0
    bodies = " ".join(b for b in dead_letters_all(queues))
    assert f'"{longer["number"]}"' in bodies
    assert f'"{short["number"]}"' not in bodies
    logged = rows(db, "SELECT payload FROM integration_events_log WHERE record_id <> 'erased'")
    assert len(logged) == 2  # the longer number's student and grade, whole


def dead_letters_all(queues: Queues) -> list[str]:
    bodies = [m["Body"] for m in queues.receive_all(queues.dlq_url)]
    for body in bodies:
        queues.sqs.send_message(QueueUrl=queues.dlq_url, MessageBody=body)
    return bodies


def test_every_export_and_erasure_is_recorded_with_the_verified_caller_and_history_tells_who(
    router: Callable[[dict[str, Any]], dict[str, Any]], load: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    # Given a data-protection officer who exports Ada, and an auditor's role that erases her
    exported = router({"action": "export", "student": {"email": ADA["email"]}, "requested_by": "DSAR-0042"})
    auditor = "arn:aws:iam::123456789012:role/college-auditor"
    erasing = privacy_route(load("PrivacyFunction", DEAD_LETTER_QUEUE_URL=queues.dlq_url), auditor)
    erased = erasing({"action": "erase", "student": {"student_number": ADA["number"]}, "requested_by": "me"})
    assert exported["success"]
    assert erased["success"]

    # Then each is recorded with who asked as API Gateway verified them, and nothing of Ada in clear
    recorded = rows(db, "SELECT * FROM privacy_requests ORDER BY id")
    assert [(r["caller"], r["action"], r["reference"]) for r in recorded] == [
        (OFFICER, "export", "DSAR-0042"),
        (auditor, "erase", "me"),
    ]
    assert recorded[1]["erasure_id"] == erased["erasure_id"]
    assert all(v not in json.dumps(r["identifiers"]).lower() for r in recorded for v in values(ADA))
    # And a history about Ada (by any of her identifiers, after her erasure) names both, newest first
    history = router({"action": "history", "student": {"zoho_record_id": ADA["zoho"]}})
    assert [(r["caller"], r["action"]) for r in history["requests"]] == [(auditor, "erase"), (OFFICER, "export")]
    assert router({"action": "history", "student": {"zoho_record_id": GRACE["zoho"]}})["requests"] == []
    # And reading the record is recorded too
    assert len(rows(db, "SELECT * FROM privacy_requests WHERE action = 'history'")) == 2


def test_a_request_without_a_verified_caller_is_refused_and_exports_nothing(
    load: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    privacy = load("PrivacyFunction", DEAD_LETTER_QUEUE_URL=queues.dlq_url)
    request = {"action": "export", "student": {"email": ADA["email"]}, "requested_by": "dpo@college.example"}

    direct = privacy(request)  # a direct invoke, as `sam remote invoke` sends it
    unsigned = privacy_route(privacy, caller=None)(request)  # shaped like a request, no IAM identity

    assert direct["statusCode"] == 403
    assert json.loads(direct["body"])["error"] == "iam_required"
    assert unsigned["error"] == "iam_required"
    assert "data" not in direct["body"]
    assert "data" not in unsigned
    assert rows(db, "SELECT * FROM privacy_requests") == []
