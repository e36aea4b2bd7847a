"""Which deliveries a mirror change calls for (docs/connect-moodle.md): pure rules the processors apply in the
transaction of the change.

- a Zoho student (created, changed or deleted) → the student's Moodle user;
- a Zoho enrolment → its manual enrolment in Moodle;
- a Moodle grade → a ``BTEC_Grades`` record in Zoho.

Changes the router itself made (echoes) call for nothing: Moodle events whose actor is the router's
web-service user, Zoho records last modified by the router's API user.

A delivery names only its target; the delivery function reads what the mirror holds when it runs,
so a later change of the same record is never undone by an earlier delivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from event_router.contract import grade_key
from event_router.messages import EventMessage, MoodleFacts, ZohoRecord
from event_router.process.rules import MirrorWrite
from event_router.store.deliveries import DeliveryStore, Intent

_MOODLE = {"students": "user", "enrollments": "enrolment"}


def delivery_for(event: EventMessage, change: MirrorWrite, enabled: Callable[[str], bool]) -> Intent | None:
    """The delivery ``change`` calls for, if any (and if its destination is enabled)."""
    if event.source == "zoho" and change.table in _MOODLE and enabled("moodle"):
        return Intent("moodle", _MOODLE[change.table], event.record_id)
    if change.table == "moodle_grades" and enabled("zoho"):
        return Intent("zoho", "grade", grade_key(change.key["moodle_user_id"], change.key["grade_item_id"]))
    return None


def is_echo(event: EventMessage, router: Identity) -> bool:
    """A change the router itself made (an enrolment it made in Moodle, a Moodle id it wrote to a Zoho
    student): mirrored, but never delivered anywhere, or the router would answer its own changes."""
    if isinstance(event.facts, MoodleFacts):
        return router.moodle_user is not None and event.facts.actor == router.moodle_user
    if isinstance(event.facts, ZohoRecord) and event.facts.fields and router.zoho_user is not None:
        modified_by = event.facts.fields.get("Modified_By")
        who = modified_by.get("id") if isinstance(modified_by, dict) else modified_by
        return who is not None and str(who) == router.zoho_user
    return False


@dataclass(frozen=True)
class Identity:
    """Who the router is at each destination, as their health checks learned."""

    moodle_user: int | None = None
    zoho_user: str | None = None


class RouterIdentity:
    """Who the router is at Moodle (its web-service user) and at Zoho (its API user), as the delivery
    functions' health checks last learned; read at most once a minute per container."""

    def __init__(self, store: DeliveryStore, max_age_seconds: float = 60.0) -> None:
        self._store = store
        self._max_age = max_age_seconds
        self._read_at = -max_age_seconds
        self._identity = Identity()

    def current(self) -> Identity:
        if time.monotonic() - self._read_at >= self._max_age:
            moodle = self._store.identity("moodle").get("userid")
            zoho = self._store.identity("zoho").get("userid")
            self._identity = Identity(
                int(moodle) if moodle is not None else None, str(zoho) if zoho is not None else None
            )
            self._read_at = time.monotonic()
        return self._identity
