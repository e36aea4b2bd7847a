"""The router's vocabulary (docs/api.md): sources, modules, the webhook routes, and the events they carry.

Every other module takes these names from here; ``template.yaml`` declares the same routes and a
test keeps the two in step.
"""

from __future__ import annotations

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
