"""Student data (UK GDPR articles 15 and 17): payload retention, the erasure of one student, and the
export of everything held about them.

A student is found by any one identifier, then known by all of them: their Zoho record ids, student
numbers, e-mail addresses and Moodle user ids, as the mirror holds them (plus the one given).
Redacting a payload keeps its row, status, timestamps and dedup key, so a resend of the event is
still a duplicate; the payload becomes ``{"redacted": true, "sha256": <of the original>}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from event_router.store.connection import PreparedConnection
from event_router.store.tables import EVENT_LOG

TOMBSTONE = "jsonb_build_object('redacted', true, 'sha256', encode(sha256(convert_to(payload::text, 'UTF8')), 'hex'))"
SETTLED = "('completed', 'skipped', 'failed')"  # never received, queued, processing, replayed or dead-lettered
MIN_NEEDLE = 4  # identifiers shorter than this are not searched for in payload text (too many false matches)

RETENTION_SQL = f"""
WITH old AS (
    SELECT id FROM {EVENT_LOG}
    WHERE received_at < now() - make_interval(days => :days) AND status IN {SETTLED}
      AND payload->>'redacted' IS NULL
    ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)
UPDATE {EVENT_LOG} AS e SET payload = {TOMBSTONE}, updated_at = now()
FROM old WHERE e.id = old.id
RETURNING e.id"""

# The student's Moodle account is the one the router manages for them (``moodle_accounts``); Zoho's
# Moodle_User_ID is a hint that may name anyone's account, so it names nobody here.
STUDENTS_SQL = """
SELECT students.zoho_record_id, students.student_id_number, students.academic_email, account.moodle_user_id
FROM students LEFT JOIN moodle_accounts AS account ON account.student_zoho_id = students.zoho_record_id
WHERE students.zoho_record_id = ANY(CAST(:zoho AS text[])) OR students.student_id_number = ANY(CAST(:numbers AS text[]))
   OR lower(students.academic_email) = ANY(CAST(:emails AS text[]))
   OR account.moodle_user_id = ANY(CAST(:moodle AS bigint[]))"""

# Events that mention the student: their Zoho records (by id, or a lookup to them in the payload), a
# payload holding their number or e-mail, a Moodle event about their Moodle user — also once
# retention has redacted the payload, by what the row itself still says (its record and event ids).
NEEDLE_IN = "EXISTS (SELECT 1 FROM unnest(CAST(:needles AS text[])) AS n(v) WHERE strpos(lower({}), n.v) > 0)"
MENTIONS = f"""
    record_id <> 'erased' AND (
        record_id = ANY(CAST(:zoho AS text[]))
        OR (source = 'moodle' AND record_id LIKE '%:%'
            AND split_part(record_id, ':', 1) = ANY(CAST(:moodle_text AS text[])))
        OR {NEEDLE_IN.format("event_id")}
        OR (payload->>'redacted' IS NULL AND (
            {NEEDLE_IN.format("payload::text")}
            OR (source = 'moodle'
                AND coalesce(payload->>'relateduserid', payload->>'userid') = ANY(CAST(:moodle_text AS text[]))))))"""
EVENTS_SQL = f"SELECT id FROM {EVENT_LOG} WHERE {MENTIONS} ORDER BY id"
# The row stays (it is what keeps the router from applying a resend twice, unless its event id names
# the student: then that goes too, as a hash), with nothing left that says whom it was about.
REDACT_SQL = f"""
UPDATE {EVENT_LOG} SET
    payload = CASE WHEN payload->>'redacted' IS NULL THEN {TOMBSTONE} ELSE payload END,
    record_id = 'erased',
    event_id = CASE WHEN {NEEDLE_IN.format("event_id")}
        THEN 'erased-' || encode(sha256(convert_to(event_id, 'UTF8')), 'hex') ELSE event_id END,
    result = CASE WHEN {NEEDLE_IN.format("coalesce(result::text, '')")}
        THEN jsonb_build_object('redacted', true) ELSE result END,
    updated_at = now()
WHERE id = ANY(CAST(:ids AS bigint[])) AND record_id <> 'erased'
RETURNING id"""
EXPORT_EVENTS_SQL = f"""
SELECT json_build_object('event_id', event_id, 'source', source, 'module', module, 'event_type', event_type,
    'status', status, 'received_at', received_at, 'processed_at', processed_at, 'payload', payload)
FROM {EVENT_LOG} WHERE {MENTIONS} ORDER BY id"""

# table → the condition that picks the student's rows
MIRRORS = {
    "students": "zoho_record_id = ANY(CAST(:zoho AS text[]))",
    "enrollments": "student_zoho_id = ANY(CAST(:zoho AS text[]))",
    "grades": "student_zoho_id = ANY(CAST(:zoho AS text[]))",
    "moodle_enrolments": "moodle_user_id = ANY(CAST(:moodle AS bigint[]))",
    "moodle_grades": "moodle_user_id = ANY(CAST(:moodle AS bigint[]))",
    "moodle_accounts": "student_zoho_id = ANY(CAST(:zoho AS text[]))",
}
ENROLMENT_IDS_SQL = "SELECT zoho_record_id FROM enrollments WHERE student_zoho_id = ANY(CAST(:zoho AS text[]))"
OPEN = "('pending', 'waiting', 'paused', 'dead_lettered')"  # deliveries still to do: an erasure cancels them
DELIVERIES = """
    (action IN ('user', 'moodle_user_id') AND target_key = ANY(CAST(:zoho AS text[])))
    OR (action = 'enrolment' AND target_key = ANY(CAST(:enrolments AS text[])))
    OR (action = 'grade' AND split_part(target_key, '-', 1) = ANY(CAST(:moodle_text AS text[])))"""
DELIVERY_IDS_SQL = f"SELECT id, status IN {OPEN} FROM deliveries WHERE {DELIVERIES}"
# Open deliveries are cancelled (a message still on its way then does nothing); every one of the
# student's deliveries forgets whom it was for.
SCRUB_DELIVERIES_SQL = f"""
UPDATE deliveries SET
    status = CASE WHEN status IN {OPEN} THEN 'cancelled' ELSE status END,
    target_key = 'erased', result = NULL, last_error = NULL, waiting_on = NULL, payload = '{{}}', updated_at = now()
WHERE {DELIVERIES}
RETURNING status"""
RECORD_ERASURE_SQL = """
INSERT INTO erasures (requested_by, identifiers, counts, dry_run)
VALUES (:requested_by, CAST(:identifiers AS jsonb), CAST(:counts AS jsonb), :dry_run)
RETURNING id"""


@dataclass
class Student:
    """Everything one student is known by."""

    zoho: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)  # lower case
    moodle: set[int] = field(default_factory=set)

    def params(self) -> dict[str, Any]:
        needles = {n.lower() for n in (*self.zoho, *self.numbers, *self.emails) if len(n) >= MIN_NEEDLE}
        return {
            "zoho": sorted(self.zoho),
            "numbers": sorted(self.numbers),
            "emails": sorted(self.emails),
            "moodle": sorted(self.moodle),
            "moodle_text": [str(m) for m in sorted(self.moodle)],
            "needles": sorted(needles),
        }

    def values(self) -> list[str]:
        """The identifiers as text, to look for in a queue message."""
        return [*self.zoho, *self.numbers, *self.emails]

    def known(self) -> bool:
        return bool(self.zoho or self.numbers or self.emails or self.moodle)


class PrivacyStore:
    """The statements of retention, erasure and export."""

    def __init__(self, connection: PreparedConnection) -> None:
        self.connection = connection

    def _run(self, sql: str, params: dict[str, Any]) -> list[list[Any]]:
        return self.connection.run(sql, **_only(sql, params))

    def redact_old_payloads(self, days: int, batch: int) -> int:
        """Tombstone up to ``batch`` settled payloads older than ``days``; how many."""
        return len(self.connection.run(RETENTION_SQL, days=days, batch=batch))

    def resolve(self, given: Student) -> Student:
        """The student the identifier names, with all their identifiers (those given included)."""
        found = Student(set(given.zoho), set(given.numbers), {e.lower() for e in given.emails}, set(given.moodle))
        for zoho, number, email, moodle in self._run(STUDENTS_SQL, found.params()):
            found.zoho.add(str(zoho))
            if number:
                found.numbers.add(str(number))
            if email:
                found.emails.add(str(email).lower())
            if moodle is not None:
                found.moodle.add(int(moodle))
        return found

    def event_ids(self, student: Student) -> list[int]:
        return [int(i) for (i,) in self._run(EVENTS_SQL, student.params())]

    def deliveries(self, student: Student) -> dict[int, bool]:
        """The student's deliveries: id → whether it is still to do."""
        params = {**student.params(), "enrolments": self.enrolment_ids(student)}
        return {int(i): bool(open_) for i, open_ in self._run(DELIVERY_IDS_SQL, params)}

    def enrolment_ids(self, student: Student) -> list[str]:
        return [str(i) for (i,) in self._run(ENROLMENT_IDS_SQL, student.params())]

    def count_mirror_rows(self, student: Student) -> dict[str, int]:
        params = student.params()
        return {
            table: int(self._run(f"SELECT count(*) FROM {table} WHERE {where}", params)[0][0])
            for table, where in MIRRORS.items()
        }

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.connection.transaction():
            yield

    def erase(self, student: Student, event_ids: list[int]) -> dict[str, int]:
        """Redact the events, delete the mirror rows, cancel and scrub the deliveries: one transaction."""
        params = student.params()
        enrolments = self.enrolment_ids(student)
        counts: dict[str, int] = {}
        for start in range(0, len(event_ids), 1000):
            ids = event_ids[start : start + 1000]
            done = self._run(REDACT_SQL, {**params, "ids": ids})
            counts["events_redacted"] = counts.get("events_redacted", 0) + len(done)
        counts.setdefault("events_redacted", 0)
        statuses = [s for (s,) in self._run(SCRUB_DELIVERIES_SQL, {**params, "enrolments": enrolments})]
        counts["deliveries_cancelled"] = statuses.count("cancelled")
        counts["deliveries_scrubbed"] = len(statuses)
        for table, where in MIRRORS.items():
            deleted = self._run(f"DELETE FROM {table} WHERE {where} RETURNING 1", params)
            counts[f"{table}_deleted"] = len(deleted)
        return counts

    def record_erasure(
        self, requested_by: str, identifiers: dict[str, list[str]], counts: dict[str, int], dry_run: bool
    ) -> int:
        [[erasure_id]] = self.connection.run(
            RECORD_ERASURE_SQL,
            requested_by=requested_by,
            identifiers=json.dumps(identifiers),
            counts=json.dumps(counts),
            dry_run=dry_run,
        )
        return int(erasure_id)

    def export(self, student: Student) -> dict[str, Any]:
        """Every row about the student: mirror rows, event history with payloads, deliveries."""
        params = student.params()
        document: dict[str, Any] = {}
        for table, where in MIRRORS.items():
            rows = self._run(f"SELECT row_to_json(t) FROM {table} AS t WHERE {where}", params)
            document[table] = [r for (r,) in rows]
        document["events"] = [r for (r,) in self._run(EXPORT_EVENTS_SQL, params)]
        ids = list(self.deliveries(student))
        rows = self.connection.run(
            "SELECT row_to_json(d) FROM deliveries AS d WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id", ids=ids
        )
        document["deliveries"] = [r for (r,) in rows]
        return document


def _only(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``sql`` names (a prepared statement takes exactly those)."""
    return {k: v for k, v in params.items() if re.search(rf":{k}\b", sql)}
