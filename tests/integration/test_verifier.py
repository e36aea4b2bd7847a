"""The verifiers against real Postgres and moto's SQS, driven by the committed events of ``events/``.

Each test states one row of docs/api.md or one durability rule, and checks all
three places an event can be: the response, the event log, the module queue.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine, text

from devstack.samples import DEV_SECRETS, SAMPLES, Sample, zoho_webhook
from event_router.contract import WEBHOOK_ROUTES
from event_router.verify.bodies import decode_body
from tests.conftest import Queues, closed_port
from tests.integration.conftest import Invoke, body, down_database_url, load_event, refuse_writes
from tests.integration.flow import FORM, rows

ACCEPTED = [s for s in SAMPLES.values() if s.expect == 202]
UNAUTHORISED = [s for s in SAMPLES.values() if s.expect == 401]
INVALID = [s for s in SAMPLES.values() if s.expect == 400]


def log_rows(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as connection:
        rows = connection.execute(text("SELECT * FROM integration_events_log ORDER BY id")).mappings()
        return [dict(row) for row in rows]


def rejected_rows(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as connection:
        return [dict(r) for r in connection.execute(text("SELECT * FROM rejected_requests ORDER BY id")).mappings()]


def down_sqs_endpoint() -> str:
    return f"http://127.0.0.1:{closed_port()}"


@pytest.mark.parametrize("sample", ACCEPTED, ids=lambda s: s.name)
def test_new_event_returns_202_logs_a_queued_row_and_queues_one_message(
    sample: Sample, load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    # Given the verifier of the sample's source
    invoke = load_verifier(sample.source)
    module = WEBHOOK_ROUTES[sample.route].module

    # When the committed sample event arrives
    response = invoke(load_event(sample.name))

    # Then the sender is told it was accepted
    assert response["statusCode"] == 202
    answer = body(response)
    assert answer == {
        "success": True,
        "message": "Event accepted for processing",
        "event_id": answer["event_id"],
        "status": "queued",
    }
    # and the event log holds one queued row for it
    [row] = log_rows(db)
    assert (row["event_id"], row["source"], row["module"], row["status"]) == (
        answer["event_id"],
        sample.source,
        module,
        "queued",
    )
    assert row["queued_at"] is not None
    assert "token" not in row["payload"]
    # and exactly one message waits on the module's queue, carrying the event
    [message] = queues.receive_all(queues.urls[module])
    assert {k: v["StringValue"] for k, v in message["MessageAttributes"].items()} == {
        "source": sample.source,
        "module": module,
        "event_id": answer["event_id"],
    }
    queued = json.loads(message["Body"])
    assert (queued["event_id"], queued["record_id"], queued["payload"]) == (
        row["event_id"],
        row["record_id"],
        row["payload"],
    )
    assert all(queues.depth(url) == 0 for url in queues.urls.values())


def test_duplicate_event_returns_200_and_writes_no_second_row_or_message(
    load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    invoke = load_verifier("zoho")
    event = load_event("zoho-student-full")
    first = invoke(event)

    second = invoke(event)

    assert (first["statusCode"], second["statusCode"]) == (202, 200)
    assert body(second) == {
        "success": True,
        "message": "Duplicate event ignored",
        "event_id": "zoho-notif-student-0001",
        "status": "duplicate",
    }
    assert len(log_rows(db)) == 1
    assert len(queues.receive_all(queues.urls["students"])) == 1


def test_same_change_without_an_id_resent_is_a_duplicate(
    load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    invoke = load_verifier("moodle")
    event = load_event("moodle-grade-raw")  # raw Moodle data carries no event id

    first, second = invoke(event), invoke(event)

    assert (first["statusCode"], second["statusCode"]) == (202, 200)
    assert body(first)["event_id"] == body(second)["event_id"]
    assert len(log_rows(db)) == 1


@pytest.mark.parametrize("sample", UNAUTHORISED, ids=lambda s: s.name)
def test_failed_verification_returns_401_records_the_rejection_and_stores_nothing(
    sample: Sample, load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    invoke = load_verifier(sample.source)

    response = invoke(load_event(sample.name))

    assert response["statusCode"] == 401
    assert body(response) == {
        "success": False,
        "error": "invalid_signature",
        "message": "Webhook signature verification failed",
    }
    [rejection] = rejected_rows(db)
    assert rejection["route"] == sample.route
    assert rejection["cause"] in ("missing_signature", "signature_mismatch")
    assert rejection["body_size"] == len(sample.body)
    assert str(rejection["source_ip"]) == "127.0.0.1"
    assert log_rows(db) == []
    assert all(queues.depth(url) == 0 for url in queues.urls.values())


def test_source_without_a_secret_rejects_even_a_correctly_signed_event(
    load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    invoke = load_verifier("zoho", ZOHO_WEBHOOK_SECRET="")

    response = invoke(load_event("zoho-student-full"))

    assert response["statusCode"] == 401
    assert [r["cause"] for r in rejected_rows(db)] == ["no_secret_configured"]
    assert log_rows(db) == []


def test_rotation_accepts_the_old_and_the_new_secret(load_verifier: Callable[..., Invoke], db: Engine) -> None:
    invoke = load_verifier("zoho", ZOHO_WEBHOOK_SECRET=f"new-secret-NOT-FOR-PRODUCTION,{DEV_SECRETS['zoho']}")
    signed_with_new = SAMPLES["zoho-student-minimal"].event({"zoho": "new-secret-NOT-FOR-PRODUCTION"})

    assert invoke(load_event("zoho-student-full"))["statusCode"] == 202
    assert invoke(signed_with_new)["statusCode"] == 202


def test_shared_token_is_refused_unless_the_source_opts_in(load_verifier: Callable[..., Invoke], db: Engine) -> None:
    invoke = load_verifier("moodle", MOODLE_WEBHOOK_TOKEN="")

    response = invoke(load_event("moodle-enrollment-token"))

    assert response["statusCode"] == 401
    assert [r["cause"] for r in rejected_rows(db)] == ["missing_signature"]


@pytest.mark.parametrize("sample", INVALID, ids=lambda s: s.name)
def test_invalid_body_returns_400_naming_the_field_and_stores_nothing(
    sample: Sample, load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    invoke = load_verifier(sample.source)

    response = invoke(load_event(sample.name))

    assert response["statusCode"] == 400
    answer = body(response)
    assert (answer["success"], answer["error"]) == (False, "invalid_payload")
    assert answer["details"]
    assert all(set(d) == {"field", "problem"} and d["field"] for d in answer["details"])
    assert log_rows(db) == []
    assert [r["cause"] for r in rejected_rows(db)] == ["invalid_payload"]
    assert all(queues.depth(url) == 0 for url in queues.urls.values())


def test_body_over_256_kib_returns_413_and_stores_nothing(load_verifier: Callable[..., Invoke], db: Engine) -> None:
    invoke = load_verifier("zoho")
    huge = Sample(
        "huge",
        "POST /api/v1/events/zoho/student",
        json.dumps({"event_id": "big", "padding": "x" * (256 * 1024)}).encode(),
        413,
    )

    response = invoke(huge.event())

    assert response["statusCode"] == 413
    assert body(response)["error"] == "payload_too_large"
    assert log_rows(db) == []
    assert [r["cause"] for r in rejected_rows(db)] == ["payload_too_large"]


def test_body_of_exactly_256_kib_is_accepted(load_verifier: Callable[..., Invoke], db: Engine) -> None:
    invoke = load_verifier("zoho")
    document = {"event_id": "edge", "event_type": "updated", "record_id": "1", "timestamp": 0, "padding": ""}
    document["padding"] = "x" * (256 * 1024 - len(json.dumps(document).encode()))
    raw = json.dumps(document).encode()
    assert len(raw) == 256 * 1024

    response = invoke(Sample("edge", "POST /api/v1/events/zoho/student", raw, 202).event())

    assert response["statusCode"] == 202


def test_duplicate_storm_logs_and_queues_the_event_once(
    load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    # Given one event sent 50 times from 8 threads at once
    invoke = load_verifier("zoho")
    event = load_event("zoho-grade-full")

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(r["statusCode"] for r in pool.map(invoke, [event] * 50))

    # Then exactly one was new and 49 were duplicates
    assert statuses == [200] * 49 + [202]
    assert len(log_rows(db)) == 1
    assert len(queues.receive_all(queues.urls["grades"])) == 1


def test_postgres_down_still_queues_the_event_and_answers_202(
    load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    invoke = load_verifier("zoho", DATABASE_URL=down_database_url())

    response = invoke(load_event("zoho-student-full"))

    assert response["statusCode"] == 202
    [message] = queues.receive_all(queues.urls["students"])
    assert json.loads(message["Body"])["event_id"] == "zoho-notif-student-0001"
    assert message["MessageAttributes"]["unlogged"] == {"DataType": "String", "StringValue": "true"}


def test_sqs_down_keeps_the_row_received_and_answers_202(
    load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    invoke = load_verifier("moodle", AWS_ENDPOINT_URL_SQS=down_sqs_endpoint())

    response = invoke(load_event("moodle-enrollment-raw"))

    assert response["statusCode"] == 202
    [row] = log_rows(db)
    assert (row["status"], row["queued_at"]) == ("received", None)
    assert queues.depth(queues.urls["enrollments"]) == 0


def test_both_stores_down_returns_503_with_retry_after(
    load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    invoke = load_verifier("zoho", DATABASE_URL=down_database_url(), AWS_ENDPOINT_URL_SQS=down_sqs_endpoint())

    response = invoke(load_event("zoho-payment-full"))

    assert response["statusCode"] == 503
    assert response["headers"]["retry-after"] == "30"
    assert body(response) == {
        "success": False,
        "error": "unavailable",
        "message": "The event could not be stored; retry later",
    }
    assert log_rows(db) == []


def test_rejections_are_still_answered_401_when_postgres_is_down(load_verifier: Callable[..., Invoke]) -> None:
    invoke = load_verifier("zoho", DATABASE_URL=down_database_url())

    assert invoke(load_event("zoho-student-bad-signature"))["statusCode"] == 401


def test_verifier_rejects_a_route_of_the_other_source(load_verifier: Callable[..., Invoke], db: Engine) -> None:
    invoke = load_verifier("zoho")

    response = invoke(load_event("moodle-grade-raw"))

    assert response["statusCode"] == 404
    assert log_rows(db) == []


# ------------------------------------------------------------------ hostile and odd input (issue 9)


def deeply_nested(levels: int) -> bytes:
    document = {
        "notification_id": f"deep-{levels}",
        "timestamp": "2026-11-25T09:00:00Z",
        "operation": "update",
        "record_id": "D1",
        "data": {"id": "D1", "Name": "x", "Extra": "@"},
    }
    inner = json.dumps(document).encode()
    return inner.replace(b'"@"', b'{"a": ' * levels + b"1" + b"}" * levels)


def test_signed_body_nested_too_deep_is_a_400_naming_the_limit_and_nothing_is_stored(
    load_verifier: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    # Before: written to the log, then serialising it for SQS raised, leaving the row stranded.
    sample = Sample("deep", "POST /api/v1/events/zoho/student", deeply_nested(300), 400)

    response = load_verifier("zoho")(sample.event())

    assert response["statusCode"] == 400
    assert "deeper than 32 levels" in body(response)["details"][0]["problem"]
    assert log_rows(db) == []
    assert queues.depth(queues.urls["students"]) == 0


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_unsigned_junk_is_a_401_without_being_parsed(
    source: str, load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    # Before: 100,000 nested brackets reached the JSON parser before authentication and answered 500.
    route = "POST /api/v1/events/zoho/student" if source == "zoho" else "POST /api/v1/events/moodle/grade"
    junk = Sample("junk", route, b"[" * 100_000, 401, signing="unsigned")

    with mock.patch("event_router.verify.verifier.decode_body", wraps=decode_body) as parsed:
        response = load_verifier(source)(junk.event())

    assert response["statusCode"] == 401
    # Moodle accepts shared tokens, so its body is read once for a token field; Zoho's is never read.
    assert parsed.call_count == (1 if source == "moodle" else 0)
    assert [r["cause"] for r in rejected_rows(db)] == ["missing_signature"]


def test_a_failure_to_queue_after_the_row_is_written_still_answers_202_and_the_sweep_queues_it(
    load_verifier: Callable[..., Invoke], load: Callable[..., Invoke], db: Engine, queues: Queues
) -> None:
    invoke = load_verifier("zoho")

    with mock.patch("event_router.queues.SqsPublisher.publish", side_effect=TypeError("not serialisable")):
        response = invoke(load_event("zoho-student-full"))

    assert response["statusCode"] == 202
    [row] = log_rows(db)
    assert row["status"] == "received"
    swept = load("ReplayFunction")({"mode": "sweep", "received_grace_seconds": 0})
    assert swept["replayed"] == 1
    assert len(queues.receive_all(queues.urls["students"])) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("relateduserid", 2**63), ("courseid", 2**64), ("objectid", 10**30)],
)
def test_moodle_ids_beyond_64_bits_are_a_400_not_a_dead_letter(
    field: str, value: int, load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    document = json.loads(SAMPLES["moodle-grade-raw"].body) | {field: value}
    sample = Sample("big-id", "POST /api/v1/events/moodle/grade", json.dumps(document).encode(), 400)

    response = load_verifier("moodle")(sample.event())

    assert response["statusCode"] == 400
    assert body(response)["details"][0]["field"] == field
    assert log_rows(db) == []


@pytest.mark.parametrize("grade", [b'"NaN"', b"NaN", b"Infinity", b'"-Infinity"'])
def test_grades_that_are_not_finite_numbers_are_a_400(
    grade: bytes, load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    raw = SAMPLES["moodle-grade-raw"].body.replace(b'"finalgrade": 86.5', b'"finalgrade": ' + grade)
    assert raw != SAMPLES["moodle-grade-raw"].body

    response = load_verifier("moodle")(Sample("nan", "POST /api/v1/events/moodle/grade", raw, 400).event())

    assert response["statusCode"] == 400
    assert log_rows(db) == []


def test_an_update_dated_in_the_far_future_is_a_400_with_a_clear_message(
    load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    document = json.loads(SAMPLES["zoho-student-full"].body)
    document["data"]["Modified_Time"] = "9999-12-31T23:59:59Z"
    sample = Sample("future", "POST /api/v1/events/zoho/student", json.dumps(document).encode(), 400)

    response = load_verifier("zoho")(sample.event())

    assert response["statusCode"] == 400
    assert body(response)["details"] == [
        {
            "field": "data.Modified_Time",
            "problem": "is more than 300 seconds in the future; check the sending system's clock",
        }
    ]
    assert log_rows(db) == []


def test_a_thousand_forged_requests_cost_a_bounded_number_of_database_writes(
    load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    # Given a count of every statement that writes rejected_requests
    with db.begin() as connection:
        connection.execute(text("CREATE TABLE rejection_writes (at timestamptz DEFAULT clock_timestamp())"))
        connection.execute(
            text("""CREATE FUNCTION count_rejection_write() RETURNS trigger SECURITY DEFINER AS $$
                    BEGIN INSERT INTO rejection_writes DEFAULT VALUES; RETURN NULL; END $$ LANGUAGE plpgsql""")
        )
        connection.execute(
            text(
                "CREATE TRIGGER count_rejection_write AFTER INSERT OR UPDATE ON rejected_requests "
                "FOR EACH STATEMENT EXECUTE FUNCTION count_rejection_write()"
            )
        )
    invoke = load_verifier("zoho")
    forged = load_event("zoho-student-bad-signature")
    try:
        # When 1,000 requests with a bad signature arrive at one container
        statuses = {invoke(forged)["statusCode"] for _ in range(1000)}

        # Then each is answered 401, and the database is written a handful of times, not 1,000
        assert statuses == {401}
        with db.connect() as connection:
            writes = connection.execute(text("SELECT count(*) FROM rejection_writes")).scalar_one()
        [row] = rejected_rows(db)
        assert 1 <= writes <= 10
        assert (row["cause"], row["route"]) == ("signature_mismatch", "POST /api/v1/events/zoho/student")
        assert 1 <= row["count"] <= 1000
    finally:
        with db.begin() as connection:
            connection.execute(text("DROP TABLE rejection_writes"))
            connection.execute(text("DROP FUNCTION count_rejection_write() CASCADE"))


def test_rejection_counts_are_written_once_the_flush_interval_has_passed(
    load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    invoke = load_verifier("zoho", REJECTION_FLUSH_SECONDS="0")
    forged = load_event("zoho-student-bad-signature")

    for _ in range(25):
        invoke(forged)

    [row] = rejected_rows(db)
    assert row["count"] == 25


def test_a_form_webhook_without_modified_time_is_a_400_saying_how_to_add_it(
    load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    body = urlencode({"id": "F1", "Name": "Ada"}).encode()

    response = load_verifier("zoho")(
        Sample("no-time", "POST /api/v1/events/zoho/student", body, 400, content_type=FORM).event()
    )

    assert response["statusCode"] == 400
    [detail] = json.loads(response["body"])["details"]
    assert detail["field"] == "Modified_Time"
    assert "Modified Time" in detail["problem"]


def test_the_event_log_records_how_each_event_was_authenticated_and_a_token_opens_only_its_route(
    load_verifier: Callable[..., Invoke], db: Engine, secrets_manager: Any
) -> None:
    # The stack's Zoho webhook secret, with a token for the grade route only (docs/connect-zoho.md)
    secrets = secrets_manager
    document = {"secrets": [DEV_SECRETS["zoho"]], "tokens": {"grade": "grade-route-token-NOT-A-SECRET"}}
    arn = secrets.create_secret(Name=f"zoho-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(document))["ARN"]
    verifier = load_verifier("zoho", ZOHO_WEBHOOK_SECRET_ARN=arn)
    grade = zoho_webhook("grades", "5725767000000740099", signing="unsigned", Name="G", Student={"id": "1"}, Grade="P")
    by_token = grade.event()
    by_token["headers"]["x-webhook-token"] = "grade-route-token-NOT-A-SECRET"
    student = zoho_webhook("students", "5725767000000412099", signing="unsigned", Name="S").event()
    student["headers"]["x-webhook-token"] = "grade-route-token-NOT-A-SECRET"

    answers = [verifier(SAMPLES["zoho-student-full"].event()), verifier(by_token), verifier(student)]

    assert [a["statusCode"] for a in answers] == [202, 202, 401]
    logged = rows(db, "SELECT module, auth_method FROM integration_events_log ORDER BY id")
    assert logged == [{"module": "students", "auth_method": "signature"}, {"module": "grades", "auth_method": "token"}]


def test_a_value_the_log_refuses_on_a_containers_first_request_leaves_the_container_working(
    load_verifier: Callable[..., Invoke], db: Engine
) -> None:
    # Given a fresh container whose very first statement Postgres refuses with a data error (as it
    # refuses a value out of range), the verifier's checks having let the value through
    lift = refuse_writes(
        db, "5725767000000000201", "numeric_value_out_of_range", table="integration_events_log", column="record_id"
    )
    invoke = load_verifier("zoho")
    refused = zoho_webhook("students", "5725767000000000201", notification_id="refused-first", Name="Ada Example")
    good = zoho_webhook("students", "5725767000000000202", notification_id="after-refused", Name="Grace Example")

    try:
        first, then = invoke(refused.event()), invoke(good.event())
    finally:
        lift()

    # Then that request is refused as bad input, and the container takes the next one as usual
    assert first["statusCode"] == 400, first
    assert then["statusCode"] == 202, then
    assert [r["event_id"] for r in log_rows(db)] == ["after-refused"]
