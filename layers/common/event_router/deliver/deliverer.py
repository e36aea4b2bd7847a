"""The delivery functions (docs/connect-moodle.md): take deliveries off a destination's queue and make the
destination match what the mirror holds.

For each delivery of a batch, one at a time per target (an advisory lock): skip it when it is done
or a newer one for the same target is still to do; while the destination is paused, park it; else
read the mirror, call the destination, and settle it:

- ``delivered``, with what was done;
- ``waiting`` when something must happen first (an enrolment whose student has no Moodle user
  yet): the student's delivery wakes it;
- ``failed`` when the data cannot work (Moodle's message is kept); replayable once fixed;
- ``paused`` when the destination is misconfigured (a wrong token, a missing permission): the
  destination stops taking deliveries, an alarm fires, nothing is dead-lettered, and the health
  check that runs every minute resumes it once Moodle answers again;
- retried (SQS delivers the message again, spaced out by the back-off) when the destination is
  unreachable or unwell; after the last receive, ``dead_lettered``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from event_router.contract import ZOHO_CLASSES_MODULE
from event_router.deliver.base import OPEN, DeliveryFunction, Step, Work
from event_router.deliver.moodle import Moodle, MoodleError, MoodleRestClient
from event_router.deliver.outbox import DeliveryMessage, DeliveryPublisher
from event_router.deliver.provision import (
    AccountPolicy,
    CannotDeliver,
    Conflict,
    FieldMapping,
    MoodleUser,
    Provisioner,
    account_policy,
    enrolment_state,
    field_mapping,
)
from event_router.deliver.records import zoho_client
from event_router.deliver.zoho import ZohoClient, ZohoError
from event_router.errors import StorageUnavailable
from event_router.observability import Metric, logger
from event_router.process.backoff import Backoff, VisibilityBackoff
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import Delivery, DeliveryStore, Intent, Outcome
from event_router.store.zoho import PgZohoState

MOODLE = "moodle"


class ClassCourses(Protocol):
    """The Moodle course idnumber a Zoho class names (read from Zoho once, then kept)."""

    def course_of(self, class_zoho_id: str) -> str | None: ...


class ZohoClassCourses:
    """Classes read from Zoho CRM, their course idnumbers kept in Postgres."""

    def __init__(self, state: PgZohoState, zoho: Callable[[], ZohoClient], mapping: FieldMapping) -> None:
        self._state, self._zoho, self._mapping = state, zoho, mapping

    def course_of(self, class_zoho_id: str) -> str | None:
        known, idnumber = self._state.class_course(class_zoho_id)
        if known:
            return idnumber
        field = self._mapping.class_course_idnumber
        found = self._zoho().records(ZOHO_CLASSES_MODULE, [class_zoho_id], ["Name", field])
        idnumber = str(found[0].get(field) or "").strip() or None if found else None
        if idnumber is not None:  # a class without one yet is asked again next time
            self._state.remember_class(class_zoho_id, idnumber)
        return idnumber


class MoodleDeliverer(DeliveryFunction):
    """Delivers to one Moodle site."""

    destination = MOODLE

    def __init__(
        self,
        store: DeliveryStore,
        moodle: Callable[[], Moodle],
        send: Callable[[list[tuple[int, str]]], None],
        mapping: FieldMapping,
        *,
        max_receive_count: int = 5,
        retry_base_seconds: int = 120,
        retry_max_seconds: int = 43_200,
        student_role_id: int = 5,
        user_auth: str = "manual",
        backoff: Backoff | None = None,
        zoho_enabled: bool = False,
        classes: ClassCourses | None = None,
        policy: AccountPolicy | None = None,
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
        self._moodle = moodle  # built on first use: the token may come from Secrets Manager
        self._mapping = mapping
        self._student_role_id = student_role_id
        self._user_auth = user_auth
        self._zoho_enabled = zoho_enabled  # write each new Moodle user id back to the Zoho student
        self._classes = classes
        self._policy = policy or AccountPolicy()

    # ------------------------------------------------------------ a queue's batch

    def deliver_batch(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Deliver every record of an SQS batch; the records SQS should deliver again."""
        work = Work()
        for n, record in enumerate(records):
            if self.out_of_time(work, records[n:]):
                break
            message = DeliveryMessage.from_json(record.get("body", ""))
            if message is None:
                logger.error("delivery message is not a delivery; SQS will retry it until it is dead-lettered")
                work.retry.append(record)
                continue
            try:
                self._deliver(message.delivery_id, record, work)
            except StorageUnavailable as error:  # the router's own database: the message comes back
                logger.error("could not settle a delivery; SQS will retry it", error=str(error))
                work.retry.append(record)
        return self.finish(work)

    def _deliver(self, delivery_id: int, record: dict[str, Any], work: Work) -> None:
        delivery = self._store.load(delivery_id)
        if delivery is None or delivery.status not in OPEN:
            return  # settled already: a redelivered message changes nothing
        paused = self.paused_outcome()
        if paused is not None:
            self._store.settle(delivery, paused)
            return
        with self._store.target_lock(delivery):
            if self._store.supersede(delivery):
                work.count(Metric.DELIVERY_SUPERSEDED, delivery.action)
                return
            outcome = self._attempt(delivery, work)
            self.settle(record, delivery, outcome, work)
        logger.info("delivery settled", delivery_id=delivery.id, action=delivery.action)

    def _attempt(self, delivery: Delivery, work: Work) -> Outcome:
        try:
            if delivery.action == "user":
                return self._user(delivery.target_key, work)
            if delivery.action == "enrolment":
                return self._enrolment(delivery.target_key)
            return Outcome("failed", error=f"unknown Moodle action {delivery.action!r}")
        except CannotDeliver as problem:
            return Outcome("failed", error=str(problem))
        except ZohoError as error:  # reading the enrolment's class
            return Outcome("pending" if error.kind == "transient" else "failed", error=f"Zoho: {error}")
        except MoodleError as error:
            return self.outcome_of(error, error.kind, error.code)

    # ------------------------------------------------------------ the provisioning rules

    def _provisioner(self) -> Provisioner:
        return Provisioner(self._moodle(), self._student_role_id, self._user_auth, self._policy)

    def _user(self, student_id: str, work: Work) -> Outcome:
        """The student's managed Moodle account, made to match the mirror (``provision.py``)."""
        found = self._store.student(student_id)
        if found is None:
            return Outcome("failed", error=f"student {student_id} is not in the mirror")
        data, deleted_at, _ = found
        desired = MoodleUser.of(data, deleted=deleted_at is not None, mapping=self._mapping)
        link = self._store.link(student_id)
        try:
            result = self._provisioner().ensure_user(desired, link, lambda made: self._store.claim(student_id, made))
        except Conflict as conflict:
            logger.warning("Moodle account left as it is: not one the router may change", delivery_action="user")
            return Outcome("conflict", error=str(conflict))
        if link is not None and result.link is None:
            self._store.release(student_id)  # its account is gone from Moodle, and none was made
        user_id = result.user_id
        if user_id is not None:
            # What waited for this user: the student's enrolments, grades given to the user in Moodle.
            work.to_send += self._store.wake(f"student:{student_id}") + self._store.wake(f"moodle_user:{user_id}")
            # The Moodle id goes back to Zoho, unless the student was deleted there (nothing to write to).
            if (
                self._zoho_enabled
                and deleted_at is None
                and str(data.get(self._mapping.moodle_user_id) or "") != str(user_id)
            ):
                work.to_send.append(self._store.create(Intent("zoho", "moodle_user_id", student_id)))
        return Outcome("delivered", result={"moodle_user_id": user_id, "action": result.action})

    def _enrolment(self, enrolment_id: str) -> Outcome:
        found = self._store.enrollment(enrolment_id)
        if found is None:
            return Outcome("failed", error=f"enrolment {enrolment_id} is not in the mirror")
        student_id, class_id, status, data, deleted_at = found
        state = enrolment_state(status, deleted=deleted_at is not None, mapping=self._mapping)
        idnumber = str(data.get(self._mapping.course_idnumber) or "").strip()
        if not idnumber and class_id and self._classes is not None:
            idnumber = self._classes.course_of(class_id) or ""  # kept on the class only
        if not idnumber:
            return Outcome("failed", error=f"{self._mapping.course_idnumber} is empty (on the enrolment and its class)")
        link = self._store.link(student_id) if student_id else None
        user_id = link.moodle_user_id if link else None
        if user_id is None:
            if state == "absent":
                return Outcome("delivered", result={"state": "absent", "note": "the student has no Moodle user"})
            reason = f"the student {student_id} has no Moodle account the router manages yet"
            return Outcome("waiting", error=reason, waiting_on=f"student:{student_id}", attempted=False)
        course_id, remembered = self._course(idnumber)
        if course_id is None:
            return Outcome("failed", error=f"no Moodle course has idnumber {idnumber!r}")
        try:
            self._provisioner().set_enrolment(user_id, course_id, state)
        except MoodleError as error:
            if not remembered or error.kind != "data":
                raise
            # The course remembered may be gone, or replaced by another with the same idnumber.
            self._store.forget_course(idnumber)
            fresh, _ = self._course(idnumber)
            if fresh is None:
                return Outcome("failed", error=f"no Moodle course has idnumber {idnumber!r}")
            if fresh == course_id:
                raise
            course_id = fresh
            self._provisioner().set_enrolment(user_id, course_id, state)
        return Outcome("delivered", result={"moodle_user_id": user_id, "moodle_course_id": course_id, "state": state})

    def _course(self, idnumber: str) -> tuple[int | None, bool]:
        """The course of ``idnumber``, looked up once and then remembered: (its id, whether it came
        from the router's memory)."""
        course_id = self._store.course_id(idnumber)
        if course_id is not None:
            return course_id, True
        course_id = self._provisioner().course_id(idnumber)
        if course_id is not None:
            self._store.remember_course(idnumber, course_id)
        return course_id, False

    # ------------------------------------------------------------ the health check

    def check(self) -> dict[str, Any]:
        """Ask Moodle who the router is; resume a pause when it answers. Runs every minute."""
        identity = self._store.identity(MOODLE)
        try:
            info = self._moodle().call("core_webservice_get_site_info")
        except MoodleError as error:
            if error.kind == "configuration":
                self.pause(error.code)
            return self.finish_check({"identity": Step.failed(error)}, identity, can_resume=False)
        identity = {**identity, "userid": info.get("userid"), "release": info.get("release")}
        return self.finish_check({"identity": Step(True)}, identity, can_resume=True)


def moodle_client(settings: Settings) -> Callable[[], Moodle]:
    """The Moodle client of this container: URL from the settings, token from ``MOODLE_TOKEN`` or the
    Secrets Manager secret ``MOODLE_TOKEN_SECRET_ARN``, read again every ``SECRETS_MAX_AGE`` seconds
    so that a corrected or rotated token takes effect without a deploy."""
    made: dict[str, Moodle] = {}

    def client() -> Moodle:
        if not settings.moodle_url:
            raise MoodleError("configuration", "nourl", "MOODLE_URL is not set")
        token = settings.moodle_token or _secret_token(settings)  # Powertools caches it for max_age
        if token not in made:
            made.clear()
            made[token] = MoodleRestClient(settings.moodle_url, token, settings.moodle_timeout_seconds)
        return made[token]

    return client


def _secret_token(settings: Settings) -> str:
    if not settings.moodle_token_secret_arn:
        raise MoodleError("configuration", "notoken", "no Moodle token is configured")
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - only where a secret is used

    try:
        raw = parameters.get_secret(settings.moodle_token_secret_arn, max_age=settings.secrets_max_age)
    except Exception as error:  # noqa: BLE001 - an unreadable secret is the router's configuration
        raise MoodleError("transient", "secretunavailable", type(error).__name__) from None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        document = json.loads(text)
    except ValueError:
        return text.strip()
    return str(document.get("token", "")) if isinstance(document, dict) else text.strip()


def build_moodle_deliverer(settings: Settings | None = None) -> MoodleDeliverer:
    """Wire the Moodle delivery function from the container's settings."""
    settings = settings or load_settings()
    connection = PreparedConnection(connection_params(settings, "moodle-delivery"), settings.db_idle_ping_seconds)
    queue_url = settings.moodle_delivery_queue_url
    backoff = (
        VisibilityBackoff(
            queue_url, settings.retry_base_seconds, settings.retry_max_seconds, settings.max_receive_count, settings
        )
        if queue_url and settings.retry_base_seconds
        else None
    )
    mapping = field_mapping(settings)
    classes = None
    if settings.zoho_configured():
        state = PgZohoState(connection, settings.zoho_max_concurrent_calls)
        classes = ZohoClassCourses(state, zoho_client(settings, connection), mapping)
    return MoodleDeliverer(
        DeliveryStore(connection),
        moodle_client(settings),
        DeliveryPublisher(settings).send,
        mapping,
        max_receive_count=settings.max_receive_count,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        reserve_seconds=2 * settings.moodle_timeout_seconds,  # a slow call twice over
        student_role_id=settings.moodle_student_role_id,
        user_auth=settings.moodle_user_auth,
        backoff=backoff,
        zoho_enabled=bool(settings.zoho_delivery_queue_url),
        classes=classes,
        policy=account_policy(settings),
    )
