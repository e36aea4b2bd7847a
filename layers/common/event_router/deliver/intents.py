"""Which deliveries a mirror change calls for (SPEC §11): pure rules the processors apply in the
transaction of the change.

- a Zoho student (created, changed or deleted) → the student's Moodle user;
- a Zoho enrolment → its manual enrolment in Moodle.

A delivery names only its target; the delivery function reads what the mirror holds when it runs,
so a later change of the same record is never undone by an earlier delivery.
"""

from __future__ import annotations

from collections.abc import Callable

from event_router.messages import EventMessage, MoodleFacts
from event_router.process.rules import MirrorWrite
from event_router.store.deliveries import Intent

_MOODLE = {"students": "user", "enrollments": "enrolment"}


def delivery_for(event: EventMessage, change: MirrorWrite, enabled: Callable[[str], bool]) -> Intent | None:
    """The delivery ``change`` calls for, if any (and if its destination is enabled)."""
    if event.source == "zoho" and change.table in _MOODLE and enabled("moodle"):
        return Intent("moodle", _MOODLE[change.table], event.record_id)
    return None


def is_echo(event: EventMessage, router_moodle_user: int | None) -> bool:
    """A Moodle event the router's own web-service user caused (an enrolment it made): mirrored, but
    never delivered anywhere, or the router would answer its own changes."""
    return (
        router_moodle_user is not None
        and isinstance(event.facts, MoodleFacts)
        and event.facts.actor == router_moodle_user
    )
