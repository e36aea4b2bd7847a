"""The webhook routes of SPEC §3 and the modules they feed.

``template.yaml`` declares the same routes; a test keeps the two in step.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

Source = Literal["zoho", "moodle"]
Module = Literal["students", "enrollments", "grades", "payments"]

SOURCES: tuple[Source, ...] = ("zoho", "moodle")
MODULES: tuple[Module, ...] = ("students", "enrollments", "grades", "payments")

# Zoho CRM API names of the custom modules (SPEC §1).
ZOHO_MODULE_NAMES: dict[Module, str] = {
    "students": "BTEC_Students",
    "enrollments": "BTEC_Enrollments",
    "grades": "BTEC_Grades",
    "payments": "BTEC_Payments",
}


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


def modules_of(source: Source) -> tuple[Module, ...]:
    """The modules a source's webhooks can reach, in route order."""
    return tuple(dict.fromkeys(r.module for r in WEBHOOK_ROUTES.values() if r.source == source))
