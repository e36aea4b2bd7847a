"""The delivery stage through its ports (``deliver/ports.py``): both deliverers driven by in-memory fakes
of the ledger, the mirror and the destinations' APIs, so the skeleton's steps (parse, pause, lock,
supersede, settle, count, hand back) are checked without Postgres, SQS or a destination."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from event_router.contract import grade_key, waits_for_student
from event_router.deliver import skeleton
from event_router.deliver.moodle.client import MoodleError
from event_router.deliver.moodle.deliverer import MoodleDeliverer
from event_router.deliver.outbox import DeliveryMessage
from event_router.deliver.skeleton import Step, Wiring
from event_router.deliver.zoho.client import ZohoError
from event_router.deliver.zoho.deliverer import ZohoDeliverer
from event_router.mapping import FieldMapping
from event_router.observability import Metric
from event_router.store.deliveries import Link
from tests.fakes import InMemoryDeliveries


class FakeMoodle:
    """Moodle's web services as the health check and an enrolment use them; records every call."""

    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[str] = []
        self.refuse = refuse  # a Moodle errorcode every call answers with

    def call(self, function: str, params: dict[str, Any] | None = None) -> Any:
        self.calls.append(function)
        if self.refuse is not None:
            raise MoodleError("configuration", self.refuse, "refused")
        if function == "core_webservice_get_site_info":
            return {"userid": 2, "release": "4.5.6"}
        return None


class FakeZoho:
    """Zoho's API as the deliverer uses it: each upsert or update answers per record, as Zoho does."""

    credits_remaining: int | None = 9000
    accounts_url = "https://accounts.zoho.eu"

    def __init__(self, refuse_call: ZohoError | None = None, refuse_records: dict[str, str] | None = None) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.refuse_call = refuse_call
        self.refuse_records = refuse_records or {}  # grade key → Zoho error code

    def check_token(self) -> None:
        if self.refuse_call is not None:
            raise self.refuse_call

    def current_user(self) -> dict[str, Any]:
        return {"id": "4150868000000225013"}

    def upsert(self, module: str, records: list[dict[str, Any]], duplicate_check_fields: list[str]) -> list[Any]:
        return self._answer("upsert", records)

    def update(self, module: str, records: list[dict[str, Any]]) -> list[Any]:
        return self._answer("update", records)

    def watch(self, method: str, channel: dict[str, Any]) -> list[Any]:
        return []

    def _answer(self, action: str, records: list[dict[str, Any]]) -> list[Any]:
        self.calls.append((action, records))
        if self.refuse_call is not None:
            raise self.refuse_call
        answers: list[Any] = []
        for record in records:
            code = self.refuse_records.get(str(record.get("Moodle_Grade_Key")))
            if code is None:
                answers.append({"code": "SUCCESS", "status": "success", "details": {"id": "1"}, "action": "insert"})
            else:
                answers.append({"code": code, "status": "error", "message": "refused", "details": {}})
        return answers


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Metric, float, dict[str, str]]]:
    """Every metric the skeleton counts: (metric, value, dimensions)."""
    seen: list[tuple[Metric, float, dict[str, str]]] = []
    monkeypatch.setattr(skeleton, "count", lambda metric, value=1, **dims: seen.append((metric, value, dims)))
    return seen


def sqs(*delivery_ids: int, destination: str = "moodle", receives: int = 1) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{n}-{delivery_id}",
                "body": DeliveryMessage(delivery_id, destination).body(),
                "attributes": {"ApproximateReceiveCount": str(receives)},
            }
            for n, delivery_id in enumerate(delivery_ids)
        ]
    }


def moodle_deliverer(store: InMemoryDeliveries, moodle: FakeMoodle, sent: list[tuple[int, str]]) -> MoodleDeliverer:
    return MoodleDeliverer(Wiring(store, sent.extend, FieldMapping()), lambda: moodle)


def zoho_deliverer(
    store: InMemoryDeliveries, zoho: FakeZoho, sent: list[tuple[int, str]], **options: Any
) -> ZohoDeliverer:
    return ZohoDeliverer(Wiring(store, sent.extend, FieldMapping()), lambda: zoho, **options)


def with_grades(store: InMemoryDeliveries, keys: list[str]) -> list[int]:
    """Grades of Moodle user 7, whose Zoho student Ada the router manages, and a Zoho delivery each."""
    store.students["Z1"] = ({"Name": "Ada Example"}, None)
    store.links["Z1"] = Link(7, "created")
    for key in keys:
        user, item = (int(part) for part in key.split("-"))
        store.grades[user, item] = (2.0, 10, "Merit", None)
    return [store.add("zoho", "grade", key) for key in keys]


def failures(answer: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in answer["batchItemFailures"]]


# ---------------------------------------------------------------- the skeleton, for both destinations


def test_a_paused_destination_parks_its_deliveries_untried_and_both_destinations_count_them(
    counted: list[tuple[Metric, float, dict[str, str]]],
) -> None:
    store, moodle, zoho, sent = InMemoryDeliveries(), FakeMoodle(), FakeZoho(), []
    store.pause("moodle", "invalidtoken")
    store.pause("zoho", "INVALID_TOKEN")
    user = store.add("moodle", "user", "Z1")
    [grade] = with_grades(store, [grade_key(7, 1)])

    moodle_deliverer(store, moodle, sent).handle(sqs(user))
    zoho_deliverer(store, zoho, sent).handle(sqs(grade, destination="zoho"))

    assert (store.status(user), store.status(grade)) == ("paused", "paused")
    assert (moodle.calls, zoho.calls) == ([], [])
    paused = [(d["destination"], d["action"]) for m, _, d in counted if m is Metric.DELIVERY_PAUSED]
    assert paused == [("moodle", "user"), ("zoho", "grade")]


def test_a_delivery_a_newer_one_replaces_is_superseded_and_never_sent(
    counted: list[tuple[Metric, float, dict[str, str]]],
) -> None:
    store, zoho, sent = InMemoryDeliveries(), FakeZoho(), []
    older, newer = with_grades(store, [grade_key(7, 1), grade_key(7, 1)])

    zoho_deliverer(store, zoho, sent).handle(sqs(older, newer, destination="zoho"))

    assert (store.status(older), store.status(newer)) == ("superseded", "delivered")
    assert [len(records) for _, records in zoho.calls] == [1]
    assert (Metric.DELIVERY_SUPERSEDED, 1, {"destination": "zoho", "action": "grade"}) in counted


def test_a_settled_delivery_or_one_named_twice_in_a_batch_is_attempted_once() -> None:
    store, zoho, sent = InMemoryDeliveries(), FakeZoho(), []
    done, twice = with_grades(store, [grade_key(7, 1), grade_key(7, 2)])
    store.rows[done]["status"] = "delivered"

    answer = zoho_deliverer(store, zoho, sent).handle(sqs(done, twice, twice, destination="zoho"))

    assert failures(answer) == []
    assert [[r["Moodle_Grade_Key"] for r in records] for _, records in zoho.calls] == [["7-2"]]
    assert store.rows[twice]["attempts"] == 1


def test_a_message_that_is_not_a_delivery_is_retried_until_it_is_dead_lettered() -> None:
    store, sent = InMemoryDeliveries(), []
    event = {"Records": [{"messageId": "junk", "body": "{}", "attributes": {"ApproximateReceiveCount": "1"}}]}

    assert failures(moodle_deliverer(store, FakeMoodle(), sent).handle(event)) == ["junk"]


def test_near_the_deadline_the_rest_of_the_batch_is_handed_back_untried() -> None:
    store, moodle, sent = InMemoryDeliveries(), FakeMoodle(), []
    first, second = store.add("moodle", "user", "Z1"), store.add("moodle", "user", "Z2")
    clock = iter([60_000, 60_000, 1_000, 1_000])  # the first delivery leaves 1 s: less than the reserve

    answer = moodle_deliverer(store, moodle, sent).handle(sqs(first, second), lambda: next(clock))

    assert failures(answer) == [f"m1-{second}"]
    assert store.status(second) == "pending"
    assert store.rows[second]["attempts"] == 0


def test_a_failure_that_may_pass_is_retried_and_on_the_last_receive_dead_lettered() -> None:
    store, sent = InMemoryDeliveries(), []
    early, last = with_grades(store, [grade_key(7, 1), grade_key(7, 2)])
    unwell = FakeZoho(refuse_call=ZohoError("transient", "unreachable"))

    first = zoho_deliverer(store, unwell, sent).handle(sqs(early, destination="zoho", receives=1))
    final = zoho_deliverer(store, unwell, sent).handle(sqs(last, destination="zoho", receives=5))

    assert (failures(first), failures(final)) == ([f"m0-{early}"], [f"m0-{last}"])
    assert (store.status(early), store.status(last)) == ("pending", "dead_lettered")


# ---------------------------------------------------------------- Zoho: batched calls, per-record results


def test_zoho_deliveries_of_one_kind_go_in_calls_of_at_most_100_each_settled_by_its_own_result() -> None:
    store, zoho, sent = InMemoryDeliveries(), FakeZoho(refuse_records={"7-3": "INVALID_DATA"}), []
    ids = with_grades(store, [grade_key(7, item) for item in range(1, 151)])

    zoho_deliverer(store, zoho, sent).handle(sqs(*ids, destination="zoho"))

    assert [(action, len(records)) for action, records in zoho.calls] == [("upsert", 100), ("upsert", 50)]
    statuses = [store.status(i) for i in ids]
    assert statuses.count("delivered") == 149
    assert store.status(ids[2]) == "failed"
    assert "INVALID_DATA" in store.rows[ids[2]]["error"]


def test_zoho_refusing_the_routers_credentials_pauses_the_destination_and_parks_the_batch() -> None:
    store, sent = InMemoryDeliveries(), []
    ids = with_grades(store, [grade_key(7, 1), grade_key(7, 2)])
    refusing = FakeZoho(refuse_call=ZohoError("configuration", "INVALID_TOKEN"))

    answer = zoho_deliverer(store, refusing, sent).handle(sqs(*ids, destination="zoho"))

    assert failures(answer) == []
    assert [store.status(i) for i in ids] == ["paused", "paused"]
    assert store.paused("zoho") == "INVALID_TOKEN"


def test_a_grade_whose_moodle_user_no_student_has_yet_waits_for_that_user() -> None:
    store, zoho, sent = InMemoryDeliveries(), FakeZoho(), []
    store.grades[8, 1] = (1.0, 10, None, None)
    grade = store.add("zoho", "grade", grade_key(8, 1))

    zoho_deliverer(store, zoho, sent).handle(sqs(grade, destination="zoho"))

    assert store.status(grade) == "waiting"
    assert store.rows[grade]["waiting_on"] == "moodle_user:8"
    assert zoho.calls == []


def test_the_zoho_check_runs_the_steps_the_zoho_source_hands_in() -> None:
    store, zoho, sent = InMemoryDeliveries(), FakeZoho(), []
    handed: list[dict[str, Any]] = []

    def channel(api: Any, identity: dict[str, Any]) -> dict[str, Step]:
        handed.append(identity)
        identity["channel"] = {"id": 1}
        return {"channel": Step(True, "renewed")}

    answer = zoho_deliverer(store, zoho, sent, also_check=channel).check()

    assert answer["healthy"] is True
    assert answer["checks"]["channel"] == {"ok": True, "reason": "renewed"}
    assert store.identity("zoho") == {"userid": "4150868000000225013", "channel": {"id": 1}}


# ---------------------------------------------------------------- Moodle: waits, wakes and checks


def test_an_enrolment_whose_student_has_no_managed_account_waits_for_the_student() -> None:
    store, moodle, sent = InMemoryDeliveries(), FakeMoodle(), []
    store.enrolments["E1"] = ("Z1", "C1", "Active", {"Moodle_Course_ID": "BTEC-IT-L3"}, None)
    enrolment = store.add("moodle", "enrolment", "E1")

    moodle_deliverer(store, moodle, sent).handle(sqs(enrolment))

    assert store.status(enrolment) == "waiting"
    assert store.rows[enrolment]["waiting_on"] == waits_for_student("Z1")
    assert moodle.calls == []


def test_an_enrolment_that_names_no_course_fails_with_the_field_to_fill_in() -> None:
    store, moodle, sent = InMemoryDeliveries(), FakeMoodle(), []
    store.enrolments["E1"] = ("Z1", None, "Active", {}, None)
    enrolment = store.add("moodle", "enrolment", "E1")

    moodle_deliverer(store, moodle, sent).handle(sqs(enrolment))

    assert store.status(enrolment) == "failed"
    assert "Moodle_Course_ID is empty" in store.rows[enrolment]["error"]


@pytest.mark.parametrize(
    ("moodle", "paused", "resumed"),
    [(FakeMoodle, None, True), (lambda: FakeMoodle(refuse="invalidtoken"), "invalidtoken", False)],
    ids=["answers", "refuses"],
)
def test_the_moodle_check_resumes_a_paused_destination_only_when_moodle_answers(
    moodle: Callable[[], FakeMoodle], paused: str | None, resumed: bool
) -> None:
    store, sent = InMemoryDeliveries(), []
    store.pause("moodle", "invalidtoken")
    parked = store.add("moodle", "user", "Z1", status="paused")

    answer = moodle_deliverer(store, moodle(), sent).check()

    assert (answer["resumed"], store.paused("moodle")) == (resumed, paused)
    assert sent == ([(parked, "moodle")] if resumed else [])
    assert store.status(parked) == ("pending" if resumed else "paused")
