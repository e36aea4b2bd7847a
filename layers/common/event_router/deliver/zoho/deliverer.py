"""The Zoho delivery function (docs/connect-moodle.md): Moodle grades become ``BTEC_Grades`` records, and each
student's Moodle user id is written to their Zoho record, within Zoho's limits.

Deliveries are batched: the deliveries of one SQS batch (up to 100 with its batching window) that
do the same thing become one call — an upsert of up to 100 grades keyed by ``Moodle_Grade_Key``, or
an update of up to 100 students — and each record's result settles its own delivery. Every write
is sent with ``trigger: []``, so no Zoho workflow runs and nothing comes back as a webhook; the
notifications Zoho still sends for the change name the router's API user as ``Modified_By`` and
are mirrored as echoes.

The health check (every few minutes) keeps the access token fresh, learns the router's Zoho user and
resumes a pause once Zoho answers again. The same schedule runs the Zoho source's own step
(``sources/zoho/channel.py``: the watch channel), handed in as ``also_check``: this function holds the
Zoho credentials, and the channel is read with the token it keeps fresh.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import batched
from typing import Any

from event_router.contract import (
    ZOHO_MODULE_NAMES,
    ZOHO_RECORDS_PER_CALL,
    DeliveryStatus,
)
from event_router.deliver.outbox import DeliveryPublisher
from event_router.deliver.ports import ZohoApi, ZohoLedger
from event_router.deliver.skeleton import DeliveryFunction, Item, Retries, Step, Wiring, Work
from event_router.deliver.zoho.client import ZohoError, record_error, zoho_client
from event_router.deliver.zoho.rules import Writes
from event_router.mapping import field_mapping
from event_router.observability import Metric, count
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import Delivery, DeliveryStore, Outcome

ZOHO = "zoho"
# More steps for the scheduled check, given the client and what the check learned (and may add to).
AlsoCheck = Callable[[ZohoApi, dict[str, Any]], dict[str, Step]]


class ZohoDeliverer(DeliveryFunction[ZohoLedger]):
    """Delivers to one Zoho CRM organisation."""

    destination = ZOHO

    def __init__(
        self, wiring: Wiring[ZohoLedger], zoho: Callable[[], ZohoApi], also_check: AlsoCheck = lambda api, identity: {}
    ) -> None:
        super().__init__(wiring)
        self._zoho = zoho
        self._writes = Writes(wiring.store, wiring.mapping)
        self._also_check = also_check  # the Zoho source's own steps (its watch channel) on the same schedule

    # ------------------------------------------------------------ a queue's batch

    def units(self, items: list[Item]) -> list[list[Item]]:
        """The deliveries that do the same thing, up to 100 a call."""
        by_action: dict[str, list[Item]] = {}
        for item in items:
            by_action.setdefault(item[1].action, []).append(item)
        return [list(unit) for same in by_action.values() for unit in batched(same, ZOHO_RECORDS_PER_CALL)]

    def attempt(self, deliveries: list[Delivery], work: Work) -> list[Outcome]:
        """One call for up to 100 deliveries of one kind; each settles by its own record's result."""
        planned = [self._writes.plan(delivery) for delivery in deliveries]
        to_send = [record for record in planned if not isinstance(record, Outcome)]
        if not to_send:
            return [p for p in planned if isinstance(p, Outcome)]
        try:
            answers = iter(self._call(deliveries[0].action, to_send))
        except ZohoError as error:
            failure = self.outcome_of(error, error.kind, error.code)
            return [p if isinstance(p, Outcome) else failure for p in planned]
        return [p if isinstance(p, Outcome) else self._outcome(next(answers)) for p in planned]

    def _outcome(self, result: dict[str, Any]) -> Outcome:
        """A record as Zoho answered it: taken; its data refused (failed, with the field Zoho names);
        locked for now (retried); or the router's set-up refused (paused)."""
        refused = record_error(result)
        if refused is None:
            return Outcome(DeliveryStatus.DELIVERED, result=_summary(result))
        return self.outcome_of(refused, refused.kind, refused.code)

    def after_batch(self) -> None:
        credits = self._zoho().credits_remaining
        if credits is not None:
            count(Metric.ZOHO_CREDITS_REMAINING, value=credits, destination=ZOHO)

    def _call(self, action: str, records: list[dict[str, Any]]) -> list[Any]:
        zoho = self._zoho()
        if action == "grade":
            return zoho.upsert(ZOHO_MODULE_NAMES["grades"], records, [self._mapping.grade_key])
        return zoho.update(ZOHO_MODULE_NAMES["students"], records)

    # ------------------------------------------------------------ the health check

    def check(self) -> dict[str, Any]:
        """The Zoho check, every few minutes, in steps that pass or fail on their own: the access
        token (refreshed when due; Zoho refusing the router's credentials pauses deliveries), who the
        router is (learned when unknown or paused), resuming a pause once both pass, and the steps
        handed in as ``also_check`` (the watch channel; their failure pauses nothing)."""
        identity = self._store.identity(ZOHO)
        steps: dict[str, Step] = {}
        try:
            zoho = self._zoho()
            zoho.check_token()
            steps["token"] = Step(True)
        except ZohoError as error:
            steps["token"] = Step.failed(error)
            if error.kind == "configuration":
                self.pause(error.code)
            return self.finish_check(steps, identity, can_resume=False)
        try:
            if self._store.paused(ZOHO) is not None or "userid" not in identity:
                identity = {**identity, "userid": str(zoho.current_user()["id"])}
            steps["identity"] = Step(True)
        except ZohoError as error:
            steps["identity"] = Step.failed(error)
        steps |= self._also_check(zoho, identity)
        return self.finish_check(steps, identity, can_resume=steps["identity"].ok)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    details = result.get("details") or {}
    return {"zoho_id": details.get("id"), "action": result.get("action", "updated")}


def build_zoho_deliverer(settings: Settings | None = None, also_check: AlsoCheck | None = None) -> ZohoDeliverer:
    """Wire the Zoho delivery function from the container's settings."""
    settings = settings or load_settings()
    connection = PreparedConnection(connection_params(settings, "zoho-delivery"), settings.db_idle_ping_seconds)
    retries = Retries.of(settings, settings.zoho_delivery_queue_url, settings.zoho_timeout_seconds)
    return ZohoDeliverer(
        Wiring(DeliveryStore(connection), DeliveryPublisher(settings).send, field_mapping(settings), retries),
        zoho_client(settings, connection),
        **({"also_check": also_check} if also_check is not None else {}),
    )
