"""The Moodle delivery (docs/connect-moodle.md): a student's managed Moodle account, and their enrolments,
made to match what the mirror holds, through the steps every destination shares (``skeleton.py``).

Each delivery ends:

- ``delivered``, with what was done;
- ``waiting`` when something must happen first (an enrolment whose student has no Moodle user
  yet): the student's delivery wakes it;
- ``conflict`` when the account is not one the router may change (``rules.py``);
- ``failed`` when the data cannot work (Moodle's message is kept); replayable once fixed;
- ``paused`` when Moodle refuses the router's token or permissions: deliveries stop, an alarm fires,
  nothing is dead-lettered, and the health check that runs every minute resumes them once Moodle
  answers again;
- retried (SQS delivers the message again, spaced out by the back-off) when Moodle is unreachable or
  unwell; after the last receive, ``dead_lettered``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from event_router.contract import DeliveryStatus, waits_for_moodle_user, waits_for_student
from event_router.deliver.moodle.client import Moodle, MoodleError, moodle_client
from event_router.deliver.moodle.rules import (
    AccountPolicy,
    CannotDeliver,
    Conflict,
    MoodleUser,
    Provisioner,
    account_policy,
    enrolment_state,
)
from event_router.deliver.outbox import DeliveryPublisher
from event_router.deliver.ports import MoodleLedger
from event_router.deliver.skeleton import DeliveryFunction, Retries, Step, Wiring, Work
from event_router.errors import DeliveryError
from event_router.mapping import field_mapping
from event_router.observability import logger
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import Delivery, DeliveryStore, Intent, Outcome

MOODLE = "moodle"


class ClassCourses(Protocol):
    """The Moodle course idnumber a Zoho class names (read from Zoho once, then kept)."""

    def course_of(self, class_zoho_id: str) -> str | None: ...


class MoodleDeliverer(DeliveryFunction[MoodleLedger]):
    """Delivers to one Moodle site."""

    destination = MOODLE

    def __init__(
        self,
        wiring: Wiring[MoodleLedger],
        moodle: Callable[[], Moodle],
        *,
        student_role_id: int = 5,
        user_auth: str = "manual",
        zoho_enabled: bool = False,
        classes: ClassCourses | None = None,
        policy: AccountPolicy | None = None,
    ) -> None:
        super().__init__(wiring)
        self._moodle = moodle  # built on first use: the token may come from Secrets Manager
        self._student_role_id = student_role_id
        self._user_auth = user_auth
        self._zoho_enabled = zoho_enabled  # write each new Moodle user id back to the Zoho student
        self._classes = classes
        self._policy = policy or AccountPolicy()

    # ------------------------------------------------------------ a queue's batch

    def attempt(self, deliveries: list[Delivery], work: Work) -> list[Outcome]:
        return [self._attempt(delivery, work) for delivery in deliveries]

    def _attempt(self, delivery: Delivery, work: Work) -> Outcome:
        try:
            if delivery.action == "user":
                return self._user(delivery.target_key, work)
            if delivery.action == "enrolment":
                return self._enrolment(delivery.target_key)
            return Outcome(DeliveryStatus.FAILED, error=f"unknown Moodle action {delivery.action!r}")
        except CannotDeliver as problem:
            return Outcome(DeliveryStatus.FAILED, error=str(problem))
        except MoodleError as error:
            return self.outcome_of(error, error.kind, error.code)
        except DeliveryError as error:  # Zoho, reading the enrolment's class
            return Outcome(
                DeliveryStatus.PENDING if error.kind == "transient" else DeliveryStatus.FAILED, error=f"Zoho: {error}"
            )

    # ------------------------------------------------------------ the provisioning rules

    def _provisioner(self) -> Provisioner:
        return Provisioner(self._moodle(), self._student_role_id, self._user_auth, self._policy)

    def _user(self, student_id: str, work: Work) -> Outcome:
        """The student's managed Moodle account, made to match the mirror (``deliver/moodle/rules.py``)."""
        found = self._store.student(student_id)
        if found is None:
            return Outcome(DeliveryStatus.FAILED, error=f"student {student_id} is not in the mirror")
        data, deleted_at, _ = found
        desired = MoodleUser.of(data, deleted=deleted_at is not None, mapping=self._mapping)
        link = self._store.link(student_id)
        try:
            result = self._provisioner().ensure_user(desired, link, lambda made: self._store.claim(student_id, made))
        except Conflict as conflict:
            logger.warning("Moodle account left as it is: not one the router may change", delivery_action="user")
            return Outcome(DeliveryStatus.CONFLICT, error=str(conflict))
        if link is not None and result.link is None:
            self._store.release(student_id)  # its account is gone from Moodle, and none was made
        user_id = result.user_id
        if user_id is not None:
            # What waited for this user: the student's enrolments, grades given to the user in Moodle.
            work.to_send += self._store.wake(waits_for_student(student_id)) + self._store.wake(
                waits_for_moodle_user(user_id)
            )
            # The Moodle id goes back to Zoho, unless the student was deleted there (nothing to write to).
            if (
                self._zoho_enabled
                and deleted_at is None
                and str(data.get(self._mapping.moodle_user_id) or "") != str(user_id)
            ):
                work.to_send.append(self._store.create(Intent("zoho", "moodle_user_id", student_id)))
        return Outcome(DeliveryStatus.DELIVERED, result={"moodle_user_id": user_id, "action": result.action})

    def _enrolment(self, enrolment_id: str) -> Outcome:
        found = self._store.enrolment(enrolment_id)
        if found is None:
            return Outcome(DeliveryStatus.FAILED, error=f"enrolment {enrolment_id} is not in the mirror")
        student_id, class_id, status, data, deleted_at = found
        state = enrolment_state(status, deleted=deleted_at is not None, mapping=self._mapping)
        idnumber = str(data.get(self._mapping.course_idnumber) or "").strip()
        if not idnumber and class_id and self._classes is not None:
            idnumber = self._classes.course_of(class_id) or ""  # kept on the class only
        if not idnumber:
            return Outcome(
                DeliveryStatus.FAILED,
                error=f"{self._mapping.course_idnumber} is empty (on the enrolment and its class)",
            )
        link = self._store.link(student_id) if student_id else None
        user_id = link.moodle_user_id if link else None
        if user_id is None:
            if state == "absent":
                return Outcome(
                    DeliveryStatus.DELIVERED, result={"state": "absent", "note": "the student has no Moodle user"}
                )
            reason = f"the student {student_id} has no Moodle account the router manages yet"
            return Outcome(
                DeliveryStatus.WAITING, error=reason, waiting_on=waits_for_student(str(student_id)), attempted=False
            )
        course_id, remembered = self._course(idnumber)
        if course_id is None:
            return Outcome(DeliveryStatus.FAILED, error=f"no Moodle course has idnumber {idnumber!r}")
        try:
            self._provisioner().set_enrolment(user_id, course_id, state)
        except MoodleError as error:
            if not remembered or error.kind != "data":
                raise
            # The course remembered may be gone, or replaced by another with the same idnumber.
            self._store.forget_course(idnumber)
            fresh, _ = self._course(idnumber)
            if fresh is None:
                return Outcome(DeliveryStatus.FAILED, error=f"no Moodle course has idnumber {idnumber!r}")
            if fresh == course_id:
                raise
            course_id = fresh
            self._provisioner().set_enrolment(user_id, course_id, state)
        return Outcome(
            DeliveryStatus.DELIVERED, result={"moodle_user_id": user_id, "moodle_course_id": course_id, "state": state}
        )

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


def build_moodle_deliverer(
    settings: Settings | None = None,
    classes: Callable[[Settings, PreparedConnection], ClassCourses | None] | None = None,
) -> MoodleDeliverer:
    """Wire the Moodle delivery function from the container's settings; ``classes`` makes the source of a
    class's Moodle course (Zoho's, ``sources/zoho/records.py``) on the function's connection."""
    settings = settings or load_settings()
    connection = PreparedConnection(connection_params(settings, "moodle-delivery"), settings.db_idle_ping_seconds)
    retries = Retries.of(settings, settings.moodle_delivery_queue_url, settings.moodle_timeout_seconds)
    return MoodleDeliverer(
        Wiring(DeliveryStore(connection), DeliveryPublisher(settings).send, field_mapping(settings), retries),
        moodle_client(settings),
        student_role_id=settings.moodle_student_role_id,
        user_auth=settings.moodle_user_auth,
        zoho_enabled=bool(settings.zoho_delivery_queue_url),
        classes=classes(settings, connection) if classes is not None else None,
        policy=account_policy(settings),
    )
