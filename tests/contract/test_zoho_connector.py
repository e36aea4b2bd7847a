"""The Zoho CRM connector against the Zoho stand-in: OAuth with one shared token, the record calls
the router makes, and every error answer the connector acts on. No real Zoho runs here; the stand-in
keeps to Zoho's documentation (``devstack/zoho_standin.py``), and these tests hold it to the
answers the connector relies on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devstack.zoho_limits import API_USER, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN
from devstack.zoho_standin import ZohoStandIn
from event_router.deliver.zoho.client import (
    AccessToken,
    Credentials,
    ZohoClient,
    ZohoError,
    record_error,
)
from tests.conftest import closed_port
from tests.fakes import InMemoryZohoState

GOOD = Credentials(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)


@pytest.fixture
def zoho() -> Iterator[ZohoStandIn]:
    server = ZohoStandIn().start()
    yield server
    server.stop()


def record_problem(result: dict[str, Any]) -> str | None:
    """None for a record Zoho took; otherwise what it said about it (code, message, field)."""
    error = record_error(result)
    return str(error) if error is not None else None


def client(zoho: ZohoStandIn, credentials: Credentials = GOOD, state: InMemoryZohoState | None = None) -> ZohoClient:
    """A client of the stand-in, which names itself (on loopback) as the API domain."""
    return ZohoClient(
        zoho.url,
        lambda: credentials,
        state or InMemoryZohoState(),
        state or InMemoryZohoState(),
        api_domains=frozenset({zoho.url}),
    )


def grade(key: str, student: str, letter: str = "Pass") -> dict[str, Any]:
    return {"Name": f"Grade {key}", "Moodle_Grade_Key": key, "Student": {"id": student}, "Grade": letter}


def student(zoho: ZohoStandIn, number: str = "BTEC-1") -> str:
    return zoho.org.create("BTEC_Students", {"Name": "Ada Example", "Student_ID_Number": number})


# ------------------------------------------------------------------ OAuth


def test_one_refresh_gives_a_token_for_the_api_domain_the_answer_names(zoho: ZohoStandIn) -> None:
    crm = client(zoho)

    crm.current_user()
    user = crm.current_user()

    assert user["id"] == API_USER
    assert (crm.refreshes, crm.calls) == (1, 2)


def test_calls_from_one_container_share_a_kept_alive_connection(zoho: ZohoStandIn) -> None:
    crm = client(zoho)

    for _ in range(5):
        crm.current_user()

    assert (crm.refreshes, crm.calls) == (1, 5)
    assert zoho.connections == 1


def test_a_token_zoho_refuses_is_refreshed_once_and_the_call_retried(zoho: ZohoStandIn) -> None:
    crm = client(zoho)
    crm.current_user()
    zoho.org.expire_tokens()  # revoked or expired early: Zoho answers 401 INVALID_TOKEN

    assert crm.current_user()["id"] == API_USER
    assert (crm.refreshes, crm.calls, zoho.org.refused["INVALID_TOKEN"]) == (2, 3, 1)


def test_containers_share_one_token_so_refreshes_stay_under_zohos_cap(zoho: ZohoStandIn) -> None:
    zoho.org.max_concurrent = 20
    shared = InMemoryZohoState()
    containers = [client(zoho, state=shared) for _ in range(20)]

    threads = [threading.Thread(target=c.current_user) for c in containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(c.refreshes for c in containers) == 1
    assert zoho.org.tokens_issued == 1


def test_more_than_ten_refreshes_in_ten_minutes_is_a_transient_refusal(zoho: ZohoStandIn) -> None:
    for _ in range(10):
        client(zoho).current_user()  # separate states: each refreshes

    with pytest.raises(ZohoError) as refused:
        client(zoho).current_user()

    assert (refused.value.kind, refused.value.code) == ("transient", "Access Denied")


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        (Credentials(CLIENT_ID, CLIENT_SECRET, "1000.revoked"), "invalid_code"),
        (Credentials("1000.WRONGCLIENT", CLIENT_SECRET, REFRESH_TOKEN), "invalid_client"),
    ],
)
def test_a_refused_refresh_is_a_configuration_error(zoho: ZohoStandIn, credentials: Credentials, code: str) -> None:
    with pytest.raises(ZohoError) as refused:
        client(zoho, credentials).current_user()

    assert (refused.value.kind, refused.value.code) == ("configuration", code)
    assert CLIENT_SECRET not in str(refused.value)


def test_a_revoked_refresh_token_is_a_configuration_error_even_with_a_live_token(zoho: ZohoStandIn) -> None:
    crm = client(zoho)
    crm.current_user()
    zoho.org.revoke()

    with pytest.raises(ZohoError) as refused:
        crm.current_user()

    assert (refused.value.kind, refused.value.code) == ("configuration", "invalid_code")


def test_the_refresh_carries_the_client_secret_and_refresh_token_in_its_body_never_in_its_url(
    zoho: ZohoStandIn,
) -> None:
    client(zoho).current_user()

    assert zoho.org.tokens_issued == 1
    assert zoho.org.secrets_in_url == 0


def test_a_token_for_an_api_domain_outside_zohos_list_is_refused_and_never_sent(zoho: ZohoStandIn) -> None:
    # The stand-in names itself (http://127.0.0.1:...) as the API domain: not one of Zoho's.
    crm = ZohoClient(zoho.url, lambda: GOOD, InMemoryZohoState(), InMemoryZohoState())

    with pytest.raises(ZohoError) as refused:
        crm.current_user()

    assert (refused.value.kind, refused.value.code) == ("configuration", "untrusted_api_domain")
    assert sum(zoho.org.calls.values()) == 0  # the API never saw the token


def test_a_kept_token_for_an_untrusted_api_domain_is_not_used_but_replaced(zoho: ZohoStandIn) -> None:
    state = InMemoryZohoState()
    state.save(AccessToken("1000.stolen", "http://127.0.0.1:9", time.time() + 3600, zoho.url))

    assert client(zoho, state=state).current_user()["id"] == API_USER
    current = state.current()
    assert current is not None
    assert current.api_domain == zoho.url


def test_a_token_issued_by_another_accounts_server_is_refreshed_not_used(zoho: ZohoStandIn) -> None:
    state = InMemoryZohoState()
    first = ZohoStandIn().start()
    try:
        client(first, state=state).current_user()
    finally:
        first.stop()  # as a local stack restarted on another port

    assert client(zoho, state=state).current_user()["id"] == API_USER
    assert zoho.org.tokens_issued == 1


def test_credentials_come_from_the_secrets_json() -> None:
    text = json.dumps({"client_id": "a", "client_secret": "b", "refresh_token": "c"})

    assert Credentials.from_json(text) == Credentials("a", "b", "c")
    with pytest.raises(ZohoError) as refused:
        Credentials.from_json('{"client_id": "a"}')
    assert refused.value.kind == "configuration"


# ------------------------------------------------------------------ records


def test_upsert_inserts_then_updates_the_same_record_by_its_key_and_starts_no_workflow(zoho: ZohoStandIn) -> None:
    crm = client(zoho)
    ada = student(zoho)

    [first] = crm.upsert("BTEC_Grades", [grade("348-17", ada, "Pass")], ["Moodle_Grade_Key"])
    [second] = crm.upsert("BTEC_Grades", [grade("348-17", ada, "Merit")], ["Moodle_Grade_Key"])

    assert (first["action"], second["action"]) == ("insert", "update")
    assert first["details"]["id"] == second["details"]["id"]
    [stored] = zoho.org.find("BTEC_Grades", "Moodle_Grade_Key", "348-17")
    assert stored["Grade"] == "Merit"
    assert stored["Modified_By"]["id"] == API_USER
    assert zoho.org.workflow_runs == 0


def test_upsert_reports_record_by_record_when_some_fail(zoho: ZohoStandIn) -> None:
    crm = client(zoho)
    ada = student(zoho)

    results = crm.upsert(
        "BTEC_Grades",
        [grade("1-1", ada), grade("1-2", "5725767999999999999"), {"Moodle_Grade_Key": "1-3", "Student": {"id": ada}}],
        ["Moodle_Grade_Key"],
    )

    assert [record_problem(r) for r in results] == [
        None,
        "INVALID_DATA: invalid data (Student)",
        "MANDATORY_NOT_FOUND: required field not found (Name)",
    ]


def test_upsert_where_every_record_fails_still_reports_each(zoho: ZohoStandIn) -> None:
    results = client(zoho).upsert("BTEC_Grades", [grade("2-1", "5725767999999999999")], ["Moodle_Grade_Key"])

    assert record_problem(results[0]) == "INVALID_DATA: invalid data (Student)"


def test_a_duplicate_check_field_that_is_not_unique_is_a_data_error(zoho: ZohoStandIn) -> None:
    with pytest.raises(ZohoError) as refused:
        client(zoho).upsert("BTEC_Grades", [grade("3-1", student(zoho))], ["Grade"])

    assert (refused.value.kind, refused.value.code) == ("data", "INVALID_DATA")


def test_update_by_id_writes_the_field_and_reports_an_unknown_id(zoho: ZohoStandIn) -> None:
    ada = student(zoho)

    results = client(zoho).update(
        "BTEC_Students", [{"id": ada, "Moodle_User_ID": "348"}, {"id": "5725767999999999999", "Moodle_User_ID": "9"}]
    )

    assert [record_problem(r) for r in results] == [None, "INVALID_DATA: the id given seems to be invalid (id)"]
    assert zoho.org.records["BTEC_Students"][ada]["Moodle_User_ID"] == "348"


def test_records_by_ids_return_those_that_exist_with_the_fields_asked(zoho: ZohoStandIn) -> None:
    ada = student(zoho)
    crm = client(zoho)

    found = crm.records("BTEC_Students", [ada, "5725767999999999999"], ["Name", "Modified_By"])
    none = crm.records("BTEC_Students", ["5725767999999999999"], ["Name"])  # Zoho answers 204

    assert [(r["id"], r["Name"], "Student_ID_Number" in r) for r in found] == [(ada, "Ada Example", False)]
    assert none == []


def test_an_unknown_module_is_a_configuration_error(zoho: ZohoStandIn) -> None:
    with pytest.raises(ZohoError) as refused:
        client(zoho).records("BTEC_Nothing", ["1"], ["Name"])

    assert (refused.value.kind, refused.value.code) == ("configuration", "INVALID_MODULE")


def test_a_missing_scope_is_a_configuration_error(zoho: ZohoStandIn) -> None:
    zoho.org.scopes = frozenset({"ZohoCRM.modules.custom.READ", "ZohoCRM.users.READ"})  # no CREATE

    with pytest.raises(ZohoError) as refused:
        client(zoho).upsert("BTEC_Grades", [grade("4-1", student(zoho))], ["Moodle_Grade_Key"])

    assert (refused.value.kind, refused.value.code) == ("configuration", "OAUTH_SCOPE_MISMATCH")


def test_a_locked_record_is_retried_later_and_the_others_of_the_call_are_taken(zoho: ZohoStandIn) -> None:
    ada, grace = student(zoho, "BTEC-1"), student(zoho, "BTEC-2")
    zoho.org.locked.add(grace)  # in an approval process or a blueprint transition

    results = client(zoho).update(
        "BTEC_Students", [{"id": ada, "Moodle_User_ID": "1"}, {"id": grace, "Moodle_User_ID": "2"}]
    )

    [taken, locked] = [record_error(r) for r in results]
    assert taken is None
    assert locked is not None
    assert (locked.kind, locked.code) == ("transient", "RECORD_LOCKED")


def test_a_profile_without_permission_to_write_is_a_configuration_error(zoho: ZohoStandIn) -> None:
    zoho.org.denied.add("BTEC_Grades")

    with pytest.raises(ZohoError) as refused:
        client(zoho).upsert("BTEC_Grades", [grade("5-1", student(zoho))], ["Moodle_Grade_Key"])

    assert (refused.value.kind, refused.value.code) == ("configuration", "NO_PERMISSION")


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("NO_PERMISSION", "configuration"),
        ("AUTHORIZATION_FAILED", "configuration"),
        ("OAUTH_SCOPE_MISMATCH", "configuration"),
        ("RECORD_LOCKED", "transient"),
        ("INVALID_DATA", "data"),
        ("DUPLICATE_DATA", "data"),
        ("MANDATORY_NOT_FOUND", "data"),
    ],
)
def test_zohos_error_codes_are_sorted_as_zoho_means_them(code: str, kind: str) -> None:
    error = record_error({"code": code, "details": {"api_name": "Student"}, "message": "m", "status": "error"})

    assert error is not None
    assert (error.kind, error.code) == (kind, code)
    assert "(Student)" in str(error)  # the field Zoho names, in the reason


def test_a_write_costs_one_credit_per_ten_records(zoho: ZohoStandIn) -> None:
    crm = client(zoho)
    crm.current_user()
    before = zoho.org.credits_used
    ada = student(zoho)

    crm.upsert("BTEC_Grades", [grade(f"6-{n}", ada) for n in range(100)], ["Moodle_Grade_Key"])

    assert zoho.org.credits_used - before == 10


def test_a_value_another_record_holds_in_a_unique_field_is_reported_for_that_record(zoho: ZohoStandIn) -> None:
    ada, grace = student(zoho, "BTEC-1"), student(zoho, "BTEC-2")

    results = client(zoho).update("BTEC_Students", [{"id": grace, "Student_ID_Number": "BTEC-1"}])

    assert record_problem(results[0]) == "DUPLICATE_DATA: duplicate data (Student_ID_Number)"
    assert zoho.org.records["BTEC_Students"][ada]["Student_ID_Number"] == "BTEC-1"


# ------------------------------------------------------------------ limits


def test_past_the_credits_zoho_answers_429_which_is_transient_and_credits_are_tracked(zoho: ZohoStandIn) -> None:
    zoho.org.credits = 3
    crm = client(zoho)
    crm.current_user()
    crm.current_user()
    remaining = crm.credits_remaining
    crm.current_user()

    with pytest.raises(ZohoError) as refused:
        crm.current_user()

    assert remaining == 1
    assert crm.credits_remaining == 0
    assert (refused.value.kind, refused.value.code) == ("transient", "TOO_MANY_REQUESTS")


def test_past_the_concurrency_limit_zoho_answers_429(zoho: ZohoStandIn) -> None:
    zoho.org.max_concurrent = 1
    shared = InMemoryZohoState()
    client(zoho, state=shared).current_user()  # one token for all
    errors: list[str] = []

    def call() -> None:
        try:
            client(zoho, state=shared).records("BTEC_Students", ["1"], ["Name"])
        except ZohoError as error:
            errors.append(error.code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors
    assert set(errors) == {"TOO_MANY_REQUESTS"}
    assert zoho.org.peak_concurrent == 1


def test_an_unreachable_zoho_is_transient() -> None:
    crm = ZohoClient(f"http://127.0.0.1:{closed_port()}", lambda: GOOD, InMemoryZohoState(), InMemoryZohoState())

    with pytest.raises(ZohoError) as refused:
        crm.current_user()

    assert (refused.value.kind, refused.value.code) == ("transient", "unreachable")


# ------------------------------------------------------------------ notifications


class Listener(ThreadingHTTPServer):
    """Where a watch channel's notify_url points: keeps what Zoho posts."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                listener.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def channel(url: str, days: float = 6) -> dict[str, Any]:
    expiry = (datetime.now(UTC) + timedelta(days=days)).isoformat(timespec="seconds")
    return {
        "channel_id": "1000000068001",
        "events": ["BTEC_Students.all", "BTEC_Enrollments.all"],
        "channel_expiry": expiry,
        "token": "channel-token-of-the-test",
        "notify_url": url,
    }


def test_a_watch_channel_calls_back_with_ids_only_when_a_record_changes(zoho: ZohoStandIn) -> None:
    listener = Listener()
    crm = client(zoho)
    results = crm.watch("POST", channel(f"http://127.0.0.1:{listener.server_address[1]}/notify"))
    ada = student(zoho)
    zoho.org.change("BTEC_Students", ada, {"Name": "Ada Lovelace"})
    crm.update("BTEC_Students", [{"id": ada, "Moodle_User_ID": "348"}])  # the API's changes too

    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while len(listener.received) < 3 and datetime.now(UTC) < deadline:
        threading.Event().wait(0.05)
    listener.shutdown()

    assert [r["code"] for r in results] == ["SUCCESS"]
    assert [(n["operation"], n["ids"], n["token"]) for n in listener.received] == [
        ("insert", [ada], "channel-token-of-the-test"),
        ("update", [ada], "channel-token-of-the-test"),
        ("update", [ada], "channel-token-of-the-test"),
    ]
    assert all("Name" not in json.dumps(n) or n["affected_fields"] for n in listener.received)  # ids, not values


def test_a_channel_token_longer_than_fifty_characters_is_refused(zoho: ZohoStandIn) -> None:
    [refused] = client(zoho).watch("POST", {**channel("http://127.0.0.1:9/notify"), "token": "t" * 64})

    assert refused["code"] == "INVALID_DATA"
    assert refused["details"] == {"api_name": "token", "maximum_length": 50}


@pytest.mark.parametrize("asked", [{"channel_expiry": None}, {"days": 8}])
def test_a_channel_asked_for_longer_than_a_week_or_without_expiry_gets_an_hour(
    zoho: ZohoStandIn, asked: dict[str, Any]
) -> None:
    request = channel("http://127.0.0.1:9/notify", days=asked.get("days", 6))
    if "channel_expiry" in asked:
        del request["channel_expiry"]

    [answer] = client(zoho).watch("POST", request)

    given = datetime.fromisoformat(answer["details"]["events"][0]["channel_expiry"])
    assert answer["code"] == "SUCCESS"
    assert timedelta(minutes=59) < given - datetime.now(UTC) <= timedelta(hours=1)


def test_a_channel_renewed_before_it_exists_is_refused(zoho: ZohoStandIn) -> None:
    [unknown] = client(zoho).watch("PATCH", channel("http://127.0.0.1:9/notify"))

    assert unknown["code"] == "INVALID_DATA"
