"""docs/api.md: every body shape Zoho and Moodle send, normalised; the event id rules."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.apigw import http_api_event
from event_router.errors import InvalidPayload
from event_router.messages import EventMessage, MoodleFacts
from event_router.verify.apigateway import webhook_request
from event_router.verify.bodies import MAX_NESTING, decode_body
from event_router.verify.payloads import parse_event

MODIFIED = "2026-11-25T09:15:00+00:00"


def zoho(module: str, fields: dict[str, Any]) -> EventMessage:
    return parse_event("zoho", module, fields)  # type: ignore[arg-type]


def moodle(module: str, fields: dict[str, Any]) -> EventMessage:
    return parse_event("moodle", module, fields)  # type: ignore[arg-type]


def problems_of(source: str, module: str, fields: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(InvalidPayload) as invalid:
        parse_event(source, module, fields)  # type: ignore[arg-type]
    return list(invalid.value.details)


FULL = {
    "notification_id": "n-1",
    "timestamp": 1795598100000,
    "module": "BTEC_Students",
    "operation": "insert",
    "record_id": "5725767000000412001",
    "data": {"id": "5725767000000412001", "Name": "Ada Example", "Modified_Time": MODIFIED},
}
MINIMAL = {
    "event_id": "e-1",
    "event_type": "deleted",
    "module": "BTEC_Grades",
    "record_id": 5725767000000740031,
    "timestamp": "2026-11-25T10:00:00+01:00",
}
RAW_MOODLE = {
    "eventname": "\\core\\event\\user_graded",
    "crud": "u",
    "objectid": 77001,
    "userid": 5,
    "relateduserid": 348,
    "courseid": 12,
    "timecreated": 1795598400,
    "other": {"itemid": 431, "finalgrade": 86.5},
}


# ------------------------------------------------------------------ Zoho shapes


def test_zoho_full_record_takes_the_notification_id_and_the_record_modified_time() -> None:
    event = zoho("students", FULL)

    assert (event.event_id, event.event_type, event.record_id) == ("n-1", "create", "5725767000000412001")
    assert event.occurred_at == datetime(2026, 11, 25, 9, 15, tzinfo=UTC)
    assert event.payload == FULL


def test_zoho_full_record_without_record_id_uses_data_id() -> None:
    fields = {k: v for k, v in FULL.items() if k != "record_id"}

    assert zoho("students", fields).record_id == "5725767000000412001"


def test_zoho_full_record_without_modified_time_uses_the_notification_timestamp_in_milliseconds() -> None:
    fields = {**FULL, "data": {"id": "1"}}

    assert zoho("students", fields).occurred_at == datetime(2026, 11, 25, 9, 15, tzinfo=UTC)


def test_zoho_minimal_event_with_numeric_record_id_and_offset_timestamp() -> None:
    event = zoho("grades", MINIMAL)

    assert (event.event_id, event.event_type, event.record_id) == ("e-1", "delete", "5725767000000740031")
    assert event.occurred_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_zoho_form_encoded_workflow_webhook_is_the_record_fields() -> None:
    raw = b"id=5725767000000412001&Name=Ada+Example&Academic_Email=ada%40students.example.ac.uk&Modified_Time=" + (
        MODIFIED.replace("+", "%2B").encode()
    )

    event = zoho("students", decode_body(raw))

    assert (event.record_id, event.event_type) == ("5725767000000412001", "update")
    assert event.payload["Academic_Email"] == "ada@students.example.ac.uk"
    assert event.occurred_at == datetime(2026, 11, 25, 9, 15, tzinfo=UTC)
    assert len(event.event_id) == 64


def test_zoho_flat_json_record_is_accepted_like_the_form() -> None:
    assert zoho("payments", {"id": 42, "Amount": 10, "operation": "edit", "Modified_Time": MODIFIED}).record_id == "42"


def test_zoho_record_without_modified_time_or_timestamp_is_a_400_saying_how_to_add_it() -> None:
    # Without a time, an edit back to earlier content would look like a resend of that content.
    [problem] = problems_of("zoho", "students", {"id": "1", "Name": "Ada"})

    assert problem["field"] == "Modified_Time"
    assert "Setup > Actions > Webhooks" in problem["problem"]


@pytest.mark.parametrize("module_name", ["BTEC_Students", "btec_students", "students", "Students"])
def test_zoho_module_named_like_the_route_is_accepted(module_name: str) -> None:
    assert zoho("students", {**FULL, "module": module_name}).module == "students"


@pytest.mark.parametrize("module_name", ["BTEC_Grades", "grades", "Leads"])
def test_zoho_module_contradicting_the_route_is_a_400(module_name: str) -> None:
    [problem] = problems_of("zoho", "students", {**FULL, "module": module_name})

    assert problem["field"] == "module"


@pytest.mark.parametrize(
    ("missing", "field"),
    [("notification_id", "notification_id"), ("operation", "operation"), ("timestamp", "timestamp")],
)
def test_zoho_full_record_missing_a_required_field_names_it(missing: str, field: str) -> None:
    fields = {k: v for k, v in FULL.items() if k != missing}

    assert field in [p["field"] for p in problems_of("zoho", "students", fields)]


def test_zoho_full_record_without_any_record_id_is_a_400() -> None:
    fields = {**{k: v for k, v in FULL.items() if k != "record_id"}, "data": {"Name": "x"}}

    assert problems_of("zoho", "students", fields) == [{"field": "record_id", "problem": "is required (or data.id)"}]


def test_problems_never_echo_the_submitted_value() -> None:
    problems = problems_of("zoho", "students", {**MINIMAL, "module": None, "timestamp": "secret-looking-value"})

    assert problems
    assert "secret-looking-value" not in json.dumps(problems)


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("insert", "create"),
        ("created", "create"),
        ("Create", "create"),
        ("edit", "update"),
        ("updated", "update"),
        ("UPDATE", "update"),
        ("deleted", "delete"),
        ("delete", "delete"),
    ],
)
def test_operations_are_normalised(given: str, normalised: str) -> None:
    assert zoho("grades", {**MINIMAL, "event_type": given}).event_type == normalised


def test_unknown_operation_is_a_400() -> None:
    [problem] = problems_of("zoho", "grades", {**MINIMAL, "event_type": "archived"})

    assert problem["field"] == "event_type"


@pytest.mark.parametrize("bad_id", [True, 1.5, "", "   ", None, {"id": 1}])
def test_record_ids_must_be_strings_or_integers(bad_id: Any) -> None:
    assert "record_id" in [p["field"] for p in problems_of("zoho", "grades", {**MINIMAL, "record_id": bad_id})]


# ------------------------------------------------------------------ Moodle shapes


def test_moodle_raw_event_student_is_relateduserid_not_the_acting_user() -> None:
    event = moodle("grades", RAW_MOODLE)

    assert (event.event_type, event.record_id) == ("update", "77001")
    assert event.occurred_at == datetime.fromtimestamp(1795598400, UTC)
    assert event.payload["relateduserid"] == 348


def test_moodle_plugin_event_uses_its_eventid_and_userid_as_the_student() -> None:
    fields = {
        "eventid": "m-1",
        "eventname": "\\core\\event\\user_enrolment_created",
        "courseid": "12",
        "userid": "348",
        "timecreated": "1795598100",
    }

    event = moodle("enrollments", fields)

    assert (event.event_id, event.event_type, event.record_id) == ("m-1", "create", "348:12")


@pytest.mark.parametrize("other", [None, [], [1, 2], {}, {"enrol": "manual"}, '{"enrol": "manual"}'])
def test_moodle_other_may_be_null_a_list_an_object_or_a_json_string(other: Any) -> None:
    enrolment = {**RAW_MOODLE, "eventname": "\\core\\event\\user_enrolment_created", "crud": "c", "other": other}

    assert moodle("enrollments", enrolment).payload["other"] == other


@pytest.mark.parametrize("other", [{"itemid": 431}, '{"itemid": 431}', None])
def test_moodle_grade_facts_may_be_in_other_as_an_object_or_a_json_string_or_at_the_top(other: Any) -> None:
    fields = {**RAW_MOODLE, "other": other} if other else {**RAW_MOODLE, "other": None, "itemid": 431}

    assert moodle("grades", fields).record_id == "77001"


def test_moodle_other_that_is_not_json_is_a_400() -> None:
    assert [p["field"] for p in problems_of("moodle", "grades", {**RAW_MOODLE, "other": "nope"})] == ["other"]


@pytest.mark.parametrize(
    ("name", "crud", "operation"),
    [
        ("\\core\\event\\user_enrolment_created", None, "create"),
        ("core\\event\\user_enrolment_updated", None, "update"),
        ("\\core\\event\\user_enrolment_deleted", None, "delete"),
        ("\\local_college\\event\\record_deleted", None, "delete"),
        ("\\mod_assign\\event\\submission_graded", "u", "update"),
        ("\\core\\event\\user_enrolment_created", "d", "delete"),
    ],
)
def test_moodle_operation_comes_from_crud_or_the_event_name(name: str, crud: str | None, operation: str) -> None:
    fields = {**RAW_MOODLE, "eventname": name, "crud": crud}
    module = "enrollments" if "enrolment" in name else "grades"

    assert moodle(module, fields).event_type == operation


def test_moodle_event_whose_operation_cannot_be_told_is_a_400() -> None:
    fields = {**RAW_MOODLE, "eventname": "\\mod_quiz\\event\\attempt_viewed", "crud": None}

    assert [p["field"] for p in problems_of("moodle", "grades", fields)] == ["crud"]


def test_moodle_enrolment_event_on_the_grade_route_is_a_400() -> None:
    fields = {**RAW_MOODLE, "eventname": "\\core\\event\\user_enrolment_created"}

    assert [p["field"] for p in problems_of("moodle", "grades", fields)] == ["eventname"]


@pytest.mark.parametrize(
    ("field", "value"), [("courseid", "twelve"), ("courseid", True), ("relateduserid", -1), ("userid", -2)]
)
def test_moodle_ids_must_be_non_negative_integers(field: str, value: Any) -> None:
    assert field in [p["field"] for p in problems_of("moodle", "grades", {**RAW_MOODLE, field: value})]


@pytest.mark.parametrize("actor", [-1, 0, "-1"])
def test_a_grade_moodle_computed_itself_has_a_special_actor_and_is_accepted(actor: Any) -> None:
    # A course total: Moodle fires user_graded with userid -1 (USER_OTHER); 0 is "nobody" (cron, CLI).
    event = moodle("grades", {**RAW_MOODLE, "userid": actor})

    assert isinstance(event.facts, MoodleFacts)
    assert (event.facts.student, event.facts.actor) == (348, int(actor))


@pytest.mark.parametrize("actor", [-1, 0])
def test_a_special_actor_is_never_taken_for_the_student(actor: int) -> None:
    fields = {**{k: v for k, v in RAW_MOODLE.items() if k != "relateduserid"}, "userid": actor}

    assert [p["field"] for p in problems_of("moodle", "grades", fields)] == ["relateduserid"]


def test_moodle_event_without_any_user_is_a_400() -> None:
    fields = {k: v for k, v in RAW_MOODLE.items() if k not in ("userid", "relateduserid")}

    assert [p["field"] for p in problems_of("moodle", "grades", fields)] == ["relateduserid"]


# ------------------------------------------------------------------ event ids


def test_derived_event_id_is_the_same_for_the_same_change_in_any_key_order() -> None:
    reordered = dict(reversed(list(RAW_MOODLE.items())))

    assert moodle("grades", RAW_MOODLE).event_id == moodle("grades", reordered).event_id


def test_derived_event_id_differs_for_a_different_change() -> None:
    base = moodle("grades", RAW_MOODLE).event_id

    assert moodle("grades", {**RAW_MOODLE, "timecreated": 1795598401}).event_id != base
    assert moodle("grades", {**RAW_MOODLE, "relateduserid": 349}).event_id != base
    assert moodle("grades", {**RAW_MOODLE, "crud": "d"}).event_id != base


def test_derived_event_id_is_stable_across_releases() -> None:
    # Pinned: changing the derivation turns every re-sent webhook into a new event (it last changed
    # when "other" joined the identity, so that two grades within one second are two events). Computed with
    # printf '%s' '["moodle","grades","77001","update","2026-11-25T09:20:00+00:00",
    #   ["core\\event\\user_graded",348,12,{"finalgrade":86.5,"itemid":431}]]' | sha256sum   (one line)
    assert moodle("grades", RAW_MOODLE).event_id == ("910c72f9a2d9921f57c61bb9e6bf1cc2cb07c5ac772dd9d21255738fc9e62ba5")


def test_zoho_record_edited_back_and_forth_gets_a_new_id_each_time() -> None:
    # A -> B -> A: the third is a real change, not a resend of the first.
    first = zoho("students", {"id": "1", "Name": "Ada", "Modified_Time": "2026-11-25T09:00:00Z"})
    second = zoho("students", {"id": "1", "Name": "Ada L", "Modified_Time": "2026-11-25T09:00:05Z"})
    third = zoho("students", {"id": "1", "Name": "Ada", "Modified_Time": "2026-11-25T09:00:09Z"})

    assert len({first.event_id, second.event_id, third.event_id}) == 3


def test_zoho_record_resent_is_a_duplicate_and_two_edits_in_one_second_are_not() -> None:
    first = zoho("students", {"id": "1", "Name": "Ada", "Modified_Time": MODIFIED})
    resent = zoho("students", {"Name": "Ada", "Modified_Time": MODIFIED, "id": "1"})
    same_second = zoho("students", {"id": "1", "Name": "Ada Lovelace", "Modified_Time": MODIFIED})

    assert first.event_id == resent.event_id != same_second.event_id


def test_moodle_events_of_one_second_differing_only_in_other_get_different_ids() -> None:
    graded = moodle("grades", RAW_MOODLE)
    regraded = moodle("grades", {**RAW_MOODLE, "other": {"itemid": 431, "finalgrade": 90}})

    assert graded.event_id != regraded.event_id


def test_payload_id_wins_over_the_derived_id() -> None:
    assert zoho("grades", MINIMAL).event_id == "e-1"


# ------------------------------------------------------------------ body decoding


def test_json_is_recognised_by_content_whatever_the_content_type() -> None:
    request = webhook_request(
        http_api_event("POST", "/x", b' {"id": 1}', {"content-type": "application/x-www-form-urlencoded"})
    )

    assert decode_body(request.body) == {"id": 1}


def test_form_keys_in_brackets_nest_and_repeated_keys_become_lists() -> None:
    fields = decode_body(b"courseid=12&other[itemid]=431&other[grade][final]=86.5&tags[]=a&tags[]=b&x=")

    assert fields == {
        "courseid": "12",
        "other": {"itemid": "431", "grade": {"final": "86.5"}},
        "tags": ["a", "b"],
        "x": "",
    }


def test_form_key_used_as_value_and_object_is_a_400() -> None:
    with pytest.raises(InvalidPayload):
        decode_body(b"other=1&other[itemid]=2")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "is empty"),
        (b"   ", "is empty"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"a": 1', "is not valid JSON (line 1, column 8)"),
        (b"just some text", "is neither a JSON object nor form-encoded"),
    ],
)
def test_unreadable_bodies_are_400_with_the_reason(raw: bytes, problem: str) -> None:
    with pytest.raises(InvalidPayload) as invalid:
        decode_body(raw)

    assert invalid.value.details == [{"field": "body", "problem": problem}]


def test_base64_body_is_decoded_before_anything_reads_it() -> None:
    raw = json.dumps(RAW_MOODLE).encode()
    event = http_api_event("POST", "/x", raw, {"content-type": "application/json"}, force_base64=True)

    assert event["body"] == base64.b64encode(raw).decode()
    assert webhook_request(event).body == raw


def test_invalid_base64_body_is_a_400() -> None:
    event = {**http_api_event("POST", "/x", b"{}", {}), "isBase64Encoded": True, "body": "***"}

    with pytest.raises(InvalidPayload):
        webhook_request(event)


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        (b'{"event_id": "e", "data": {"Name": "A\\u0000B"}}', "data.Name", "contains a NUL character"),
        (b'{"event_id": "e\\ud800"}', "event_id", "is not valid Unicode"),
        (b'{"a\\u0000": 1}', "a\\x00", "contains a NUL character"),
        (b"id=1&Name=A%00B", "Name", "contains a NUL character"),
        (b'{"other": [1, "\\udfff"]}', "other[1]", "is not valid Unicode"),
    ],
)
def test_text_postgres_cannot_store_is_a_400_naming_the_field(raw: bytes, field: str, problem: str) -> None:
    with pytest.raises(InvalidPayload) as invalid:
        decode_body(raw)

    assert invalid.value.details == [{"field": field, "problem": problem}]


# ------------------------------------------------------------------ hostile and odd input (issue 9)


def test_json_nested_deeper_than_the_limit_is_a_400_naming_the_limit() -> None:
    deep = b'{"data": ' + b'{"a": ' * 300 + b"1" + b"}" * 300 + b"}"

    with pytest.raises(InvalidPayload) as invalid:
        decode_body(deep)

    [problem] = invalid.value.details
    assert problem["problem"] == f"nests objects or lists deeper than {MAX_NESTING} levels"


def test_json_nested_at_the_limit_is_accepted() -> None:
    body = b'{"a": ' * (MAX_NESTING - 1) + b"[1]" + b"}" * (MAX_NESTING - 1)

    assert decode_body(body)


def test_a_hundred_thousand_brackets_are_a_400_not_a_crash() -> None:
    with pytest.raises(InvalidPayload) as invalid:
        decode_body(b"[" * 100_000)

    assert invalid.value.details[0]["field"] == "body"


def test_form_keys_nested_deeper_than_the_limit_are_a_400() -> None:
    with pytest.raises(InvalidPayload):
        decode_body(b"a" + b"[b]" * 40 + b"=1")


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_json_numbers_are_a_400(token: bytes) -> None:
    with pytest.raises(InvalidPayload):
        decode_body(b'{"other": {"finalgrade": ' + token + b"}}")


@pytest.mark.parametrize("grade", ["NaN", "Infinity", "-inf", "a lot", True])
def test_moodle_grade_that_is_not_a_finite_number_is_a_400(grade: Any) -> None:
    fields = {**RAW_MOODLE, "other": {"itemid": 431, "finalgrade": grade}}

    assert problems_of("moodle", "grades", fields)[0]["field"] == "other.finalgrade"


def test_moodle_grade_without_item_id_is_a_400() -> None:
    assert problems_of("moodle", "grades", {**RAW_MOODLE, "other": {"finalgrade": 5}})[0]["field"] == "other.itemid"


@pytest.mark.parametrize("field", ["courseid", "relateduserid", "objectid"])
def test_moodle_ids_beyond_the_64_bit_range_are_a_400(field: str) -> None:
    [problem] = problems_of("moodle", "grades", {**RAW_MOODLE, field: 2**63})

    assert problem["field"] == field


@pytest.mark.parametrize(
    ("source", "module", "fields", "field"),
    [
        (
            "zoho",
            "students",
            {**FULL, "data": {**FULL["data"], "Modified_Time": "9999-12-31T00:00:00Z"}},
            "data.Modified_Time",
        ),
        ("zoho", "grades", {**MINIMAL, "timestamp": "2026-11-25T12:00:00Z"}, "timestamp"),
        ("moodle", "grades", {**RAW_MOODLE, "timecreated": 1795598400 + 3 * 3600}, "timecreated"),
    ],
)
def test_an_event_dated_beyond_the_clock_skew_is_a_400_naming_the_field(
    source: str, module: str, fields: dict[str, Any], field: str
) -> None:
    now = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)

    with pytest.raises(InvalidPayload) as invalid:
        parse_event(source, module, fields, received_at=now)  # type: ignore[arg-type]

    [problem] = invalid.value.details
    assert problem == {
        "field": field,
        "problem": "is more than 300 seconds in the future; check the sending system's clock",
    }


def test_an_event_within_the_clock_skew_is_accepted() -> None:
    now = datetime(2026, 11, 25, 9, 18, tzinfo=UTC)  # RAW_MOODLE is dated 09:20, two minutes ahead

    assert parse_event("moodle", "grades", RAW_MOODLE, received_at=now).occurred_at > now
