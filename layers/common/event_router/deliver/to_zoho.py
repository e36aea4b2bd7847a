"""The Zoho delivery function (docs/connect-moodle.md): Moodle grades become ``BTEC_Grades`` records, and each
student's Moodle user id is written to their Zoho record, within Zoho's limits.

Deliveries are batched: the deliveries of one SQS batch (up to 100 with its batching window) that
do the same thing become one call — an upsert of up to 100 grades keyed by ``Moodle_Grade_Key``, or
an update of up to 100 students — and each record's result settles its own delivery. Every write
is sent with ``trigger: []``, so no Zoho workflow runs and nothing comes back as a webhook; the
notifications Zoho still sends for the change name the router's API user as ``Modified_By`` and
are mirrored as echoes.

The health check (every few minutes) keeps the access token fresh, learns the router's Zoho user,
resumes a pause once Zoho answers again, and registers or renews the watch channel that sends the
four modules' changes to ``/api/v1/events/zoho/notify``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from event_router.contract import ZOHO_MODULE_NAMES
from event_router.deliver.base import OPEN, DeliveryFunction, Step, Work
from event_router.deliver.channel import WATCHED, keep_channel
from event_router.deliver.outbox import DeliveryMessage, DeliveryPublisher
from event_router.deliver.provision import FieldMapping, field_mapping
from event_router.deliver.records import zoho_client
from event_router.deliver.zoho import ZohoClient, ZohoError, record_error
from event_router.errors import StorageUnavailable
from event_router.observability import Metric, count, logger
from event_router.process.backoff import Backoff, VisibilityBackoff
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import Delivery, DeliveryStore, Outcome
from event_router.verify.credentials import credentials_for

ZOHO = "zoho"


class ZohoDeliverer(DeliveryFunction):
    """Delivers to one Zoho CRM organisation."""

    destination = ZOHO

    def __init__(
        self,
        store: DeliveryStore,
        zoho: Callable[[], ZohoClient],
        send: Callable[[list[tuple[int, str]]], None],
        mapping: FieldMapping,
        *,
        max_receive_count: int = 5,
        retry_base_seconds: int = 120,
        retry_max_seconds: int = 43_200,
        backoff: Backoff | None = None,
        notify_url: str | None = None,
        webhook_secret: Callable[[], bytes | None] = lambda: None,
        reserve_seconds: float = 20.0,
    ) -> None:
        super().__init__(
            store,
            send,
            max_receive_count=max_receive_count,
            retry_base_seconds=retry_base_seconds,
            retry_max_seconds=retry_max_seconds,
            backoff=backoff,
            reserve_seconds=reserve_seconds,
        )
        self._zoho = zoho
        self._mapping = mapping
        self._notify_url = notify_url
        self._webhook_secret = webhook_secret

    # ------------------------------------------------------------ a queue's batch

    def deliver_batch(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        work = Work()
        by_action: dict[str, list[tuple[dict[str, Any], Delivery]]] = {}
        try:
            for record in records:
                message = DeliveryMessage.from_json(record.get("body", ""))
                delivery = self._store.load(message.delivery_id) if message is not None else None
                if message is None:
                    logger.error("delivery message is not a delivery; SQS will retry it until it is dead-lettered")
                    work.retry.append(record)
                elif delivery is not None and delivery.status in OPEN:
                    by_action.setdefault(delivery.action, []).append((record, delivery))
            chunks = [(a, items[i : i + 100]) for a, items in by_action.items() for i in range(0, len(items), 100)]
            for n, (action, chunk) in enumerate(chunks):
                if self.out_of_time(work, [record for _, later in chunks[n:] for record, _ in later]):
                    break
                self._deliver(action, chunk, work)
        except StorageUnavailable as error:
            logger.error("could not settle deliveries; SQS will retry them", error=str(error))
            work.retry = list(records)
        credits = self._zoho().credits_remaining
        if credits is not None:
            count(Metric.ZOHO_CREDITS_REMAINING, value=credits, destination=ZOHO)
        return self.finish(work)

    def _deliver(self, action: str, items: list[tuple[dict[str, Any], Delivery]], work: Work) -> None:
        """One call for up to 100 deliveries of one kind; each settles by its own record's result."""
        paused = self.paused_outcome()
        if paused is not None:
            for _, delivery in items:
                self._store.settle(delivery, paused)
                work.count(Metric.DELIVERY_PAUSED, action)
            return
        deliveries = [d for _, d in items]
        with self._store.target_lock(*deliveries):
            todo: list[tuple[dict[str, Any], Delivery, dict[str, Any]]] = []
            for record, delivery in items:
                if self._store.supersede(delivery):
                    work.count(Metric.DELIVERY_SUPERSEDED, action)
                    continue
                planned = self._plan(delivery)
                if isinstance(planned, Outcome):
                    self.settle(record, delivery, planned, work)
                else:
                    todo.append((record, delivery, planned))
            if not todo:
                return
            try:
                results = self._call(action, [zoho_record for _, _, zoho_record in todo])
            except ZohoError as error:
                failure = self.outcome_of(error, error.kind, error.code)
                for record, delivery, _ in todo:
                    self.settle(record, delivery, failure, work)
                return
            for (record, delivery, _), result in zip(todo, results, strict=True):
                # Each record as Zoho answered it: taken; its data refused (failed, with the field Zoho
                # names); locked for now (retried); or the router's set-up refused (paused).
                refused = record_error(result)
                if refused is None:
                    outcome = Outcome("delivered", result=_summary(result))
                else:
                    outcome = self.outcome_of(refused, refused.kind, refused.code)
                self.settle(record, delivery, outcome, work)

    def _call(self, action: str, records: list[dict[str, Any]]) -> list[Any]:
        zoho = self._zoho()
        if action == "grade":
            return zoho.upsert(ZOHO_MODULE_NAMES["grades"], records, [self._mapping.grade_key])
        return zoho.update(ZOHO_MODULE_NAMES["students"], records)

    # ------------------------------------------------------------ what each delivery sends

    def _plan(self, delivery: Delivery) -> dict[str, Any] | Outcome:
        """The Zoho record a delivery writes, or how it ends without a call."""
        if delivery.action == "grade":
            return self._grade(delivery.target_key)
        if delivery.action == "moodle_user_id":
            return self._moodle_user_id(delivery.target_key)
        return Outcome("failed", error=f"unknown Zoho action {delivery.action!r}")

    def _grade(self, key: str) -> dict[str, Any] | Outcome:
        user, _, item = key.partition("-")
        grade = self._store.moodle_grade(int(user), int(item))
        if grade is None:
            return Outcome("failed", error=f"Moodle grade {key} is not in the mirror")
        final, course_id, letter, scale_id = grade
        student = self._store.student_of_moodle_user(int(user))
        if student is None:
            reason = f"no Zoho student has Moodle user {user} yet"
            return Outcome("waiting", error=reason, waiting_on=f"moodle_user:{user}", attempted=False)
        zoho_student, name = student
        course = self._store.course_idnumber(course_id) if course_id is not None else None
        m = self._mapping
        return {
            "Name": f"{name or 'Student'} - grade item {item}"[:120],
            m.grade_key: key,
            m.grade_student: {"id": zoho_student},
            m.grade_course: course or (str(course_id) if course_id is not None else None),
            m.grade_value: float(final) if final is not None else None,
            m.grade_letter: letter or self._scale_item(final, scale_id),
        }

    def _scale_item(self, final: Any, scale_id: int | None) -> str | None:
        """The scale item a grade on a scale stands for (1 is the scale's first item)."""
        scale = self._mapping.grade_scale
        if final is None or scale_id is None or not scale:
            return None
        index = round(float(final)) - 1
        return scale[index] if 0 <= index < len(scale) else None

    def _moodle_user_id(self, zoho_student: str) -> dict[str, Any] | Outcome:
        found = self._store.student(zoho_student)
        if found is None or found[2] is None:
            return Outcome("failed", error=f"student {zoho_student} has no Moodle user in the mirror")
        data, deleted_at, moodle_user = found
        if deleted_at is not None:  # Zoho would answer INVALID_DATA: nothing to write to
            return Outcome("cancelled", result={"reason": "the student was deleted in Zoho"}, attempted=False)
        if str(data.get(self._mapping.moodle_user_id) or "") == str(moodle_user):
            return Outcome("delivered", result={"action": "unchanged"}, attempted=False)
        return {"id": zoho_student, self._mapping.moodle_user_id: str(moodle_user)}

    # ------------------------------------------------------------ the health check

    def check(self) -> dict[str, Any]:
        """The Zoho check, every few minutes, in steps that pass or fail on their own: the access
        token (refreshed when due; Zoho refusing the router's credentials pauses deliveries), who the
        router is (learned when unknown or paused), resuming a pause once both pass, and the
        notification channel (registered or renewed; its failure pauses nothing)."""
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
        steps["channel"] = self._keep_channel(zoho, identity)
        return self.finish_check(steps, identity, can_resume=steps["identity"].ok)

    def _keep_channel(self, zoho: ZohoClient, identity: dict[str, Any]) -> Step:
        """Register or renew the watch channel when due (``channel.py``); kept in ``identity``."""
        secret = self._webhook_secret()
        if not self._notify_url or not secret:
            return Step(True, "not configured")
        try:
            channel, asked = keep_channel(zoho, identity.get("channel"), self._notify_url, secret)
        except ZohoError as error:
            count(Metric.WATCH_RENEWAL_FAILED, value=1, destination=ZOHO)
            logger.error("Zoho refused the watch channel", code=error.code)
            return Step.failed(error)
        identity["channel"] = channel
        count(Metric.WATCH_RENEWAL_FAILED, value=0, destination=ZOHO)
        if asked:
            logger.info("Zoho watch channel registered", expires_at=channel["expires_at"], events=len(WATCHED))
        return Step(True, f"until {channel['expires_at']}")


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    details = result.get("details") or {}
    return {"zoho_id": details.get("id"), "action": result.get("action", "updated")}


def build_zoho_deliverer(settings: Settings | None = None) -> ZohoDeliverer:
    """Wire the Zoho delivery function from the container's settings."""
    settings = settings or load_settings()
    connection = PreparedConnection(connection_params(settings, "zoho-delivery"), settings.db_idle_ping_seconds)
    queue_url = settings.zoho_delivery_queue_url
    backoff = (
        VisibilityBackoff(
            queue_url, settings.retry_base_seconds, settings.retry_max_seconds, settings.max_receive_count, settings
        )
        if queue_url and settings.retry_base_seconds
        else None
    )
    secrets = credentials_for("zoho", settings)

    def webhook_secret() -> bytes | None:
        current = secrets.current().secrets
        return current[0] if current else None

    return ZohoDeliverer(
        DeliveryStore(connection),
        zoho_client(settings, connection),
        DeliveryPublisher(settings).send,
        field_mapping(settings),
        max_receive_count=settings.max_receive_count,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        reserve_seconds=2 * settings.zoho_timeout_seconds,  # a slow call twice over
        backoff=backoff,
        notify_url=settings.zoho_notify_url,
        webhook_secret=webhook_secret,
    )
