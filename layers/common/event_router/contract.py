"""The router's vocabulary (docs/api.md): sources, modules, the webhook routes, and the events they carry.

Every other module takes these names from here; ``template.yaml`` declares the same routes and a
test keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, NamedTuple

Source = Literal["zoho", "moodle"]
Module = Literal["students", "enrollments", "grades", "payments"]
Operation = Literal["create", "update", "delete"]
# How an event was authenticated: a webhook's signature, a per-route token, Zoho's channel token; or
# read by the router itself (the reconciliation).
AuthMethod = Literal["signature", "token", "channel_token", "reconciliation"]

SOURCES: tuple[Source, ...] = ("zoho", "moodle")
MODULES: tuple[Module, ...] = ("students", "enrollments", "grades", "payments")
OPERATIONS: tuple[Operation, ...] = ("create", "update", "delete")

# Zoho CRM API names of the custom modules (docs/connect-zoho.md).
ZOHO_MODULE_NAMES: dict[Module, str] = {
    "students": "BTEC_Students",
    "enrollments": "BTEC_Enrollments",
    "grades": "BTEC_Grades",
    "payments": "BTEC_Payments",
}
ZOHO_CLASSES_MODULE = "BTEC_Classes"  # not mirrored: read for a class's Moodle course
ZOHO_RECORDS_PER_CALL = 100  # Zoho's limit per upsert, update or get by ids

# The Moodle events the router understands: which module's route takes each, and what it does.
USER_ENROLMENT_CREATED = "core\\event\\user_enrolment_created"
USER_ENROLMENT_UPDATED = "core\\event\\user_enrolment_updated"
USER_ENROLMENT_DELETED = "core\\event\\user_enrolment_deleted"
USER_GRADED = "core\\event\\user_graded"
# The Moodle plugin's connection test (its cli/test_connection.php): logged, then skipped.
CONNECTION_TEST = "local_eventrouter\\event\\connection_test"
MOODLE_EVENTS: dict[str, tuple[Module, Operation]] = {
    USER_ENROLMENT_CREATED: ("enrollments", "create"),
    USER_ENROLMENT_UPDATED: ("enrollments", "update"),
    USER_ENROLMENT_DELETED: ("enrollments", "delete"),
    USER_GRADED: ("grades", "update"),
    CONNECTION_TEST: ("enrollments", "update"),
}
USER_ENROLMENT_EVENTS = (USER_ENROLMENT_CREATED, USER_ENROLMENT_UPDATED, USER_ENROLMENT_DELETED)


class Route(NamedTuple):
    source: Source
    module: Module


WEBHOOK_ROUTES: dict[str, Route] = {
    "POST /api/v1/events/zoho/student": Route("zoho", "students"),
    "POST /api/v1/events/zoho/enrollment": Route("zoho", "enrollments"),
    "POST /api/v1/events/zoho/grade": Route("zoho", "grades"),
    "POST /api/v1/events/zoho/payment": Route("zoho", "payments"),
    "POST /api/v1/events/moodle/enrollment": Route("moodle", "enrollments"),
    "POST /api/v1/events/moodle/grade": Route("moodle", "grades"),
}


# Zoho's Notification API calls back here (ids only; the processors fetch the records).
ZOHO_NOTIFY_ROUTE = "POST /api/v1/events/zoho/notify"


def modules_of(source: Source) -> tuple[Module, ...]:
    """The modules a source's webhooks can reach, in route order."""
    return tuple(dict.fromkeys(r.module for r in WEBHOOK_ROUTES.values() if r.source == source))


def route_of(source: Source, module: Module) -> str:
    """The webhook route of ``source`` that feeds ``module``."""
    return next(key for key, route in WEBHOOK_ROUTES.items() if route == (source, module))


# ---------------------------------------------------------------- statuses


class EventStatus(StrEnum):
    """Where an event of the log stands (``integration_events_log.status``)."""

    RECEIVED = "received"
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    REPLAYED = "replayed"


SETTLED_EVENTS = (EventStatus.COMPLETED, EventStatus.SKIPPED, EventStatus.FAILED)  # nothing more will happen
UNPROCESSED_EVENTS = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING, EventStatus.REPLAYED)
FAILED_EVENTS = (EventStatus.FAILED, EventStatus.DEAD_LETTERED)  # what replay brings back


class DeliveryStatus(StrEnum):
    """Where a delivery stands (``deliveries.status``)."""

    PENDING = "pending"  # to deliver: its message is on the destination's queue (or the sweep sends it again)
    WAITING = "waiting"  # for something else first (``waiting_on``: the student's Moodle user)
    PAUSED = "paused"  # its destination is paused until a health check passes
    DELIVERED = "delivered"
    FAILED = "failed"  # can never succeed as it is: ``last_error`` says why; replayable
    SUPERSEDED = "superseded"  # a newer delivery for the same target does the work
    DEAD_LETTERED = "dead_lettered"  # its last receive failed: replay brings it back
    CANCELLED = "cancelled"  # nothing left to do it to (an erasure, a student deleted in Zoho)
    CONFLICT = "conflict"  # Moodle was left as it is: the account is not one the router may change


OPEN_DELIVERIES = (
    DeliveryStatus.PENDING,
    DeliveryStatus.WAITING,
    DeliveryStatus.PAUSED,
    DeliveryStatus.DEAD_LETTERED,
)  # still to do
DONE_DELIVERIES = tuple(status for status in DeliveryStatus if status not in OPEN_DELIVERIES)


def sql_list(values: tuple[str, ...]) -> str:
    """``values`` as a SQL list of literals, for statements written with a fixed set of statuses."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


# ---------------------------------------------------------------- the keys deliveries are known by


def grade_key(moodle_user_id: int, grade_item_id: int) -> str:
    """A Moodle grade's key: its delivery's target, and the unique ``Moodle_Grade_Key`` in Zoho."""
    return f"{moodle_user_id}-{grade_item_id}"


def grade_of(key: str) -> tuple[int, int]:
    """(Moodle user id, grade item id) of a ``grade_key``."""
    user, _, item = key.partition("-")
    return int(user), int(item)


STUDENT_WAIT, MOODLE_USER_WAIT = "student:", "moodle_user:"  # what a waiting delivery's key starts with


def waits_for_student(student_zoho_id: str) -> str:
    """What a delivery waits on until the student has a Moodle account the router manages."""
    return f"{STUDENT_WAIT}{student_zoho_id}"


def waits_for_moodle_user(moodle_user_id: int | str) -> str:
    """What a grade's delivery waits on until a Zoho student has the Moodle user."""
    return f"{MOODLE_USER_WAIT}{moodle_user_id}"
