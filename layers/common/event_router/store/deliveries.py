"""The delivery stage's statements (docs/connect-moodle.md): the ``deliveries`` outbox, the destinations' state,
and what a delivery reads of the mirror.

A processor writes deliveries in the transaction of the mirror change that calls for them. A
delivery function then works one delivery at a time per target (an advisory lock on the target),
reads what the mirror holds now, and settles the delivery.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from event_router.contract import MOODLE_USER_WAIT, STUDENT_WAIT, DeliveryStatus
from event_router.errors import DataRejected
from event_router.store.connection import PreparedConnection
from event_router.store.tables import DELIVERIES, DELIVERY_DONE

_DONE = ", ".join(f"'{s}'" for s in DELIVERY_DONE)

LOAD_SQL = f"""
SELECT id, destination, action, target_key, status, attempts FROM {DELIVERIES} WHERE id = :id"""

# A newer delivery of the same target, not yet settled, will read the same (or a newer) mirror state.
SUPERSEDE_SQL = f"""
UPDATE {DELIVERIES} AS d SET status = 'superseded', updated_at = now()
WHERE d.id = :id AND d.status NOT IN ({_DONE}) AND EXISTS (
    SELECT 1 FROM {DELIVERIES} AS newer
    WHERE newer.destination = d.destination AND newer.action = d.action AND newer.target_key = d.target_key
      AND newer.id > d.id AND newer.status IN ('pending', 'waiting', 'paused'))
RETURNING id"""

SETTLE_SQL = f"""
UPDATE {DELIVERIES} SET
    status = :status, result = CAST(:result AS jsonb), last_error = :error, waiting_on = :waiting_on,
    attempts = attempts + :attempted,
    next_attempt_at = CASE WHEN :status = 'pending' THEN now() + make_interval(secs => :retry_in) END,
    delivered_at = CASE WHEN :status = 'delivered' THEN now() ELSE delivered_at END, updated_at = now()
WHERE id = :id AND status NOT IN ({_DONE})"""

WAKE_SQL = f"""
UPDATE {DELIVERIES} SET status = 'pending', waiting_on = NULL, last_error = NULL, updated_at = now()
WHERE status = 'waiting' AND waiting_on = :waiting_on
RETURNING id, destination"""

MATCHING_SQL = f"""
SELECT id, destination FROM {DELIVERIES}
WHERE status = ANY(CAST(:statuses AS text[])) AND (CAST(:destination AS text) IS NULL OR destination = :destination)
  AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))
ORDER BY id LIMIT :max_rows"""
REQUEUE_SQL = f"""
UPDATE {DELIVERIES} SET status = 'pending', waiting_on = NULL, last_error = NULL, updated_at = now()
WHERE id IN ({MATCHING_SQL.replace("id, destination", "id", 1)})
RETURNING id, destination"""

# Pending deliveries whose message should have been taken long ago (the processor died between its
# commit and the send, or the message was lost): the sweep sends them again.
OVERDUE_SQL = f"""
SELECT id, destination FROM {DELIVERIES}
WHERE status = 'pending' AND coalesce(next_attempt_at, created_at) < now() - make_interval(secs => :grace)
ORDER BY id LIMIT :max_rows"""

# Waiting deliveries whose student has a Moodle user by now (its wake-up was lost): an enrolment
# waits on its Zoho student, a grade on the Zoho student of its Moodle user.
READY_SQL = f"""
UPDATE {DELIVERIES} AS d SET status = 'pending', waiting_on = NULL, last_error = NULL, updated_at = now()
FROM moodle_accounts AS account JOIN students ON students.zoho_record_id = account.student_zoho_id
WHERE d.status = 'waiting' AND students.deleted_at IS NULL
  AND d.waiting_on IN ('{STUDENT_WAIT}' || account.student_zoho_id, '{MOODLE_USER_WAIT}' || account.moodle_user_id)
RETURNING d.id, d.destination"""

CREATE_SQL = f"""
INSERT INTO {DELIVERIES} (destination, action, target_key) VALUES (:destination, :action, :target_key)
RETURNING id, destination"""
MOODLE_GRADE_SQL = """
SELECT final_grade, moodle_course_id, grade_letter, scale_id FROM moodle_grades
WHERE moodle_user_id = :user AND grade_item_id = :item"""
STUDENT_OF_MOODLE_USER_SQL = """
SELECT students.zoho_record_id, students.name
FROM moodle_accounts AS account JOIN students ON students.zoho_record_id = account.student_zoho_id
WHERE account.moodle_user_id = :user AND students.deleted_at IS NULL"""
COURSE_IDNUMBER_SQL = "SELECT idnumber FROM moodle_courses WHERE course_id = :course_id LIMIT 1"

PAUSED_SQL = "SELECT paused_at, pause_reason FROM destinations WHERE name = :name"
PAUSE_SQL = """
INSERT INTO destinations (name, paused_at, pause_reason, checked_at) VALUES (:name, now(), :reason, now())
ON CONFLICT (name) DO UPDATE SET
    paused_at = coalesce(destinations.paused_at, now()), pause_reason = :reason, checked_at = now()"""
RESUME_SQL = """
UPDATE destinations SET paused_at = NULL, pause_reason = NULL WHERE name = :name AND paused_at IS NOT NULL
RETURNING name"""
CHECKED_SQL = """
INSERT INTO destinations (name, checked_at, identity, checks)
VALUES (:name, now(), CAST(:identity AS jsonb), CAST(:checks AS jsonb))
ON CONFLICT (name) DO UPDATE SET checked_at = now(), identity = EXCLUDED.identity, checks = EXCLUDED.checks"""
IDENTITY_SQL = "SELECT identity FROM destinations WHERE name = :name"

STUDENT_SQL = """
SELECT students.data, students.deleted_at, account.moodle_user_id
FROM students LEFT JOIN moodle_accounts AS account ON account.student_zoho_id = students.zoho_record_id
WHERE students.zoho_record_id = :id"""
LINK_SQL = "SELECT moodle_user_id, origin, matched_by FROM moodle_accounts WHERE student_zoho_id = :id"
# A student's claim on a Moodle account: taken only when no other student holds it (the unique
# constraint on moodle_user_id settles two claims racing for one account).
CLAIM_LINK_SQL = """
INSERT INTO moodle_accounts (student_zoho_id, moodle_user_id, origin, matched_by)
SELECT :id, :moodle_user_id, :origin, :matched_by
WHERE NOT EXISTS (SELECT 1 FROM moodle_accounts WHERE moodle_user_id = :moodle_user_id AND student_zoho_id <> :id)
ON CONFLICT (student_zoho_id) DO UPDATE SET
    moodle_user_id = EXCLUDED.moodle_user_id, origin = EXCLUDED.origin, matched_by = EXCLUDED.matched_by,
    linked_at = CASE WHEN moodle_accounts.moodle_user_id = EXCLUDED.moodle_user_id
                     THEN moodle_accounts.linked_at ELSE now() END
RETURNING 1"""
DROP_LINK_SQL = "DELETE FROM moodle_accounts WHERE student_zoho_id = :id"

ENROLMENT_SQL = """
SELECT student_zoho_id, class_zoho_id, status, data, deleted_at FROM enrollments WHERE zoho_record_id = :id"""
COURSE_SQL = "SELECT course_id FROM moodle_courses WHERE idnumber = :idnumber"
REMEMBER_COURSE_SQL = """
INSERT INTO moodle_courses (idnumber, course_id) VALUES (:idnumber, :course_id)
ON CONFLICT (idnumber) DO UPDATE SET course_id = EXCLUDED.course_id, checked_at = now()"""
FORGET_COURSE_SQL = "DELETE FROM moodle_courses WHERE idnumber = :idnumber"


@dataclass(frozen=True)
class Delivery:
    id: int
    destination: str
    action: str
    target_key: str
    status: str
    attempts: int


@dataclass(frozen=True)
class Link:
    """The router's own record that a Moodle account is a student's: it created it, or adopted it."""

    moodle_user_id: int
    origin: Literal["created", "adopted"]
    matched_by: str | None = None  # idnumber | username | email: how an adopted account was found


@dataclass(frozen=True)
class Intent:
    """A delivery a mirror change calls for: which destination should do what to which record."""

    destination: str
    action: str
    target_key: str


@dataclass(frozen=True)
class Outcome:
    """How a delivery attempt ended."""

    status: DeliveryStatus  # how it ended; ``pending``: to retry
    result: dict[str, Any] | None = None
    error: str | None = None
    waiting_on: str | None = None
    retry_in: int = 0  # seconds, for a retry
    attempted: bool = True


class DeliveryStore:
    """What deliveries read and write in Postgres."""

    def __init__(self, connection: PreparedConnection) -> None:
        self.connection = connection

    # ------------------------------------------------------------ the outbox (written by ``mirror.py``)

    def load(self, delivery_id: int) -> Delivery | None:
        rows = self.connection.run(LOAD_SQL, id=delivery_id)
        return Delivery(*rows[0]) if rows else None

    @contextmanager
    def target_lock(self, *deliveries: Delivery) -> Iterator[None]:
        """One delivery at a time per target, across containers (session advisory locks, taken in
        one order so that two batches never wait on each other)."""
        keys = sorted({zlib.crc32(f"{d.destination}:{d.action}:{d.target_key}".encode()) for d in deliveries})
        taken: list[int] = []
        try:
            for key in keys:
                self.connection.run("SELECT pg_advisory_lock(:key)", key=key)
                taken.append(key)
            yield
        finally:
            for key in reversed(taken):
                self.connection.run("SELECT pg_advisory_unlock(:key)", key=key)

    def create(self, intent: Intent) -> tuple[int, str]:
        """A delivery a delivery calls for (a Moodle user's id to write back to Zoho)."""
        [[delivery_id, destination]] = self.connection.run(
            CREATE_SQL, destination=intent.destination, action=intent.action, target_key=intent.target_key
        )
        return int(delivery_id), str(destination)

    def supersede(self, delivery: Delivery) -> bool:
        """Mark ``delivery`` superseded when a newer one for its target is still to do."""
        return bool(self.connection.run(SUPERSEDE_SQL, id=delivery.id))

    def settle(self, delivery: Delivery, outcome: Outcome) -> None:
        self.connection.run(
            SETTLE_SQL,
            id=delivery.id,
            status=outcome.status,
            result=json.dumps(outcome.result) if outcome.result is not None else None,
            error=outcome.error,
            waiting_on=outcome.waiting_on,
            attempted=1 if outcome.attempted else 0,
            retry_in=outcome.retry_in,
        )

    def wake(self, waiting_on: str) -> list[tuple[int, str]]:
        """Deliveries that waited on ``waiting_on``, now pending again: their (id, destination)."""
        return [(int(i), str(d)) for i, d in self.connection.run(WAKE_SQL, waiting_on=waiting_on)]

    def requeue(
        self, statuses: list[str], destination: str | None = None, ids: list[int] | None = None, max_rows: int = 1000
    ) -> list[tuple[int, str]]:
        """Put deliveries of ``statuses`` back to pending (replay, resume): their (id, destination)."""
        rows = self.connection.run(REQUEUE_SQL, statuses=statuses, destination=destination, ids=ids, max_rows=max_rows)
        return [(int(i), str(d)) for i, d in rows]

    def matching(
        self, statuses: list[str], destination: str | None = None, ids: list[int] | None = None, max_rows: int = 1000
    ) -> list[tuple[int, str]]:
        rows = self.connection.run(MATCHING_SQL, statuses=statuses, destination=destination, ids=ids, max_rows=max_rows)
        return [(int(i), str(d)) for i, d in rows]

    def overdue(self, grace_seconds: int, max_rows: int) -> list[tuple[int, str]]:
        return [(int(i), str(d)) for i, d in self.connection.run(OVERDUE_SQL, grace=grace_seconds, max_rows=max_rows)]

    def ready(self) -> list[tuple[int, str]]:
        return [(int(i), str(d)) for i, d in self.connection.run(READY_SQL)]

    # ------------------------------------------------------------ destinations

    def paused(self, name: str) -> str | None:
        """Why ``name`` is paused, or None when it is not."""
        rows = self.connection.run(PAUSED_SQL, name=name)
        return str(rows[0][1]) if rows and rows[0][0] is not None else None

    def pause(self, name: str, reason: str) -> None:
        self.connection.run(PAUSE_SQL, name=name, reason=reason)

    def resume(self, name: str) -> bool:
        """End a pause; True when there was one."""
        return bool(self.connection.run(RESUME_SQL, name=name))

    def record_check(self, name: str, identity: dict[str, Any], checks: dict[str, Any]) -> None:
        """Keep what a health check learned (who the router is there) and how each step went."""
        self.connection.run(CHECKED_SQL, name=name, identity=json.dumps(identity), checks=json.dumps(checks))

    def identity(self, name: str) -> dict[str, Any]:
        """What the destination said about the router's own account there (e.g. its Moodle user id)."""
        rows = self.connection.run(IDENTITY_SQL, name=name)
        return dict(rows[0][0]) if rows else {}

    # ------------------------------------------------------------ what a delivery reads and learns

    def student(self, zoho_id: str) -> tuple[dict[str, Any], datetime | None, int | None] | None:
        rows = self.connection.run(STUDENT_SQL, id=zoho_id)
        return (dict(rows[0][0]), rows[0][1], rows[0][2]) if rows else None

    # ------------------------------------------------------------ the accounts the router manages

    def link(self, zoho_id: str) -> Link | None:
        """The Moodle account the router manages for a student (it created or adopted it)."""
        rows = self.connection.run(LINK_SQL, id=zoho_id)
        return Link(int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None

    def claim(self, zoho_id: str, link: Link) -> bool:
        """Record that the student's Moodle account is ``link``'s; False when another student has it."""
        try:
            return bool(
                self.connection.run(
                    CLAIM_LINK_SQL,
                    id=zoho_id,
                    moodle_user_id=link.moodle_user_id,
                    origin=link.origin,
                    matched_by=link.matched_by,
                )
            )
        except DataRejected:  # another student's claim on the same account committed first
            return False

    def release(self, zoho_id: str) -> None:
        """Forget the student's Moodle account (it is gone from Moodle)."""
        self.connection.run(DROP_LINK_SQL, id=zoho_id)

    def enrolment(
        self, zoho_id: str
    ) -> tuple[str | None, str | None, str | None, dict[str, Any], datetime | None] | None:
        """(student id, class id, status, data, deleted at) of an enrolment the mirror holds."""
        rows = self.connection.run(ENROLMENT_SQL, id=zoho_id)
        return (rows[0][0], rows[0][1], rows[0][2], dict(rows[0][3]), rows[0][4]) if rows else None

    def course_id(self, idnumber: str) -> int | None:
        rows = self.connection.run(COURSE_SQL, idnumber=idnumber)
        return int(rows[0][0]) if rows else None

    def remember_course(self, idnumber: str, course_id: int) -> None:
        self.connection.run(REMEMBER_COURSE_SQL, idnumber=idnumber, course_id=course_id)

    def forget_course(self, idnumber: str) -> None:
        self.connection.run(FORGET_COURSE_SQL, idnumber=idnumber)

    def course_idnumber(self, course_id: int) -> str | None:
        rows = self.connection.run(COURSE_IDNUMBER_SQL, course_id=course_id)
        return str(rows[0][0]) if rows else None

    def moodle_grade(self, user: int, item: int) -> tuple[Any, int | None, str | None, int | None] | None:
        """(final grade, course id, letter, scale id) of a Moodle grade the mirror holds."""
        rows = self.connection.run(MOODLE_GRADE_SQL, user=user, item=item)
        return (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None

    def student_of_moodle_user(self, user: int) -> tuple[str, str | None] | None:
        """The Zoho student (record id, name) whose Moodle user is ``user``."""
        rows = self.connection.run(STUDENT_OF_MOODLE_USER_SQL, user=user)
        return (str(rows[0][0]), rows[0][1]) if rows else None
