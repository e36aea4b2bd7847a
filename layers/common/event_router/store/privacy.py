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
from itertools import batched
from typing import Any

from event_router.contract import OPEN_DELIVERIES, SETTLED_EVENTS, sql_list
from event_router.erasure import ErasureKey, Identity
from event_router.store.connection import PreparedConnection
from event_router.store.tables import EVENT_LOG

TOMBSTONE = "jsonb_build_object('redacted', true, 'sha256', encode(sha256(convert_to(payload::text, 'UTF8')), 'hex'))"
SETTLED = sql_list(SETTLED_EVENTS)  # never received, queued, processing, replayed or dead-lettered

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
   OR account.moodle_user_id = ANY(CAST(:moodle AS bigint[]))
UNION ALL  -- the account also when the students row is not there (yet, or any more)
SELECT account.student_zoho_id, NULL, NULL, account.moodle_user_id FROM moodle_accounts AS account
WHERE account.student_zoho_id = ANY(CAST(:zoho AS text[])) OR account.moodle_user_id = ANY(CAST(:moodle AS bigint[]))"""

# Events that mention the student: their Zoho records (by id, or a lookup to them in the payload), a
# payload holding their number or e-mail, a Moodle event about their Moodle user — also once
# retention has redacted the payload, by what the row itself still says (its record and event ids).
# Identifiers are matched whole, in the fields that hold them: a student number "12" is not part of
# "B-120012", nor a mark of 12.
EVENT_ID_NAMES = "regexp_split_to_array(event_id, '[^A-Za-z0-9]+') && CAST(:zoho AS text[])"
_FIELD = (
    "EXISTS (SELECT 1 FROM jsonb_path_query(payload, 'lax $.**.{field}') AS v"
    " WHERE {value} = ANY(CAST(:{kind} AS text[])))"
)
PAYLOAD_NAMES = " OR ".join(
    _FIELD.format(field=field, value=value, kind=kind)
    for field, value, kind in (
        ("id", "v #>> '{}'", "zoho"),  # the record's own id, and every lookup to a record
        ("ids[*]", "v #>> '{}'", "zoho"),  # an ids-only notification
        ("Student_ID_Number", "v #>> '{}'", "numbers"),
        ("Academic_Email", "lower(v #>> '{}')", "emails"),
    )
)
MENTIONS = f"""
    record_id <> 'erased' AND (
        record_id = ANY(CAST(:zoho AS text[]))
        OR (source = 'moodle' AND record_id LIKE '%:%'
            AND split_part(record_id, ':', 1) = ANY(CAST(:moodle_text AS text[])))
        OR {EVENT_ID_NAMES}
        OR (payload->>'redacted' IS NULL AND (
            {PAYLOAD_NAMES}
            OR (source = 'moodle'
                AND coalesce(payload->>'relateduserid', payload->>'userid') = ANY(CAST(:moodle_text AS text[]))))))"""
EVENTS_SQL = f"SELECT id FROM {EVENT_LOG} WHERE {MENTIONS} ORDER BY id"
# The row stays (it is what keeps the router from applying a resend twice), with nothing left that
# says whom it was about. An event still waiting to be applied (in a queue, in flight, dead-lettered)
# ends here: ``skipped``, reason ``erased``, so no copy of it can be applied later.
_UNSETTLED = "status NOT IN ('completed', 'skipped', 'failed')"
_RESULT_NAMES = """EXISTS (SELECT 1 FROM jsonb_path_query(coalesce(result, '{}'), 'strict $.**') AS v
    WHERE jsonb_typeof(v) IN ('string', 'number') AND lower(v #>> '{}') = ANY(CAST(:values AS text[])))"""
REDACT_SQL = f"""
UPDATE {EVENT_LOG} SET
    payload = CASE WHEN payload->>'redacted' IS NULL THEN {TOMBSTONE} ELSE payload END,
    record_id = 'erased',
    result = CASE WHEN {_UNSETTLED} THEN jsonb_build_object('reason', 'erased')
        WHEN {_RESULT_NAMES} THEN jsonb_build_object('redacted', true) ELSE result END,
    error_message = CASE WHEN {_UNSETTLED} THEN NULL ELSE error_message END,
    status = CASE WHEN {_UNSETTLED} THEN 'skipped' ELSE status END,
    updated_at = now()
WHERE id = ANY(CAST(:ids AS bigint[])) AND record_id <> 'erased'
RETURNING id"""
# Event ids that name the student (a component is their Zoho record id) are replaced by a keyed hash.
NAMING_IDS_SQL = f"SELECT id, event_id FROM {EVENT_LOG} WHERE id = ANY(CAST(:ids AS bigint[])) AND {EVENT_ID_NAMES}"
RENAME_SQL = f"""
UPDATE {EVENT_LOG} AS log SET event_id = renamed.event_id
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS renamed (id bigint, event_id text)
WHERE log.id = renamed.id"""
# The erasure register (event_router/erasure.py); an erasure locks it first, so that processor
# batches in flight finish before it looks, and later ones wait to read it until it commits.
LOCK_REGISTER_SQL = "LOCK TABLE erased_identities IN ACCESS EXCLUSIVE MODE"
REGISTER_SQL = """
INSERT INTO erased_identities (digest, erasure_id)
SELECT digest, :erasure_id FROM unnest(CAST(:digests AS text[])) AS d(digest)
ON CONFLICT (digest) DO UPDATE SET erased_at = now(), erasure_id = EXCLUDED.erasure_id"""
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
OPEN = sql_list(OPEN_DELIVERIES)  # deliveries still to do: an erasure cancels them
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
RECORD_REQUEST_SQL = """
INSERT INTO privacy_requests (caller, request_id, action, dry_run, reference, identifiers, erasure_id)
VALUES (:caller, :request_id, :action, :dry_run, :reference, CAST(:identifiers AS jsonb), :erasure_id)"""
# The requests recorded, newest first; those naming one of ``digests`` when any are given.
REQUESTS_SQL = """
SELECT id, requested_at, caller, request_id, action, dry_run, reference, erasure_id FROM privacy_requests
WHERE cardinality(CAST(:digests AS text[])) = 0 OR identifiers ?| CAST(:digests AS text[])
ORDER BY id DESC LIMIT :limit"""

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
        moodle_text = [str(m) for m in sorted(self.moodle)]
        return {
            "zoho": sorted(self.zoho),
            "numbers": sorted(self.numbers),
            "emails": sorted(self.emails),
            "moodle": sorted(self.moodle),
            "moodle_text": moodle_text,
            "values": sorted({v.lower() for v in (*self.zoho, *self.numbers, *self.emails)} | set(moodle_text)),
        }

    def identities(self) -> set[Identity]:
        """Every identifier, by kind (the erasure register's entries)."""
        return {
            *(("zoho_record_id", z) for z in self.zoho),
            *(("student_number", n) for n in self.numbers),
            *(("email", e) for e in self.emails),
            *(("moodle_user_id", str(m)) for m in self.moodle),
        }

    def known(self) -> bool:
        return bool(self.zoho or self.numbers or self.emails or self.moodle)


class PrivacyStore:
    """The statements of retention, erasure and export."""

    def __init__(self, connection: PreparedConnection) -> None:
        self.connection = connection

    def _run(self, sql: str, params: dict[str, Any]) -> list[list[Any]]:
        return self.connection.run(sql, **only_named(sql, params))

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

    def lock_register(self) -> None:
        """Hold off processor batches until this transaction commits (and wait for those in flight)."""
        self.connection.run(LOCK_REGISTER_SQL)

    def erase(self, student: Student, event_ids: list[int], key: ErasureKey) -> dict[str, int]:
        """Redact the events, delete the mirror rows, cancel and scrub the deliveries; inside the
        caller's transaction, after ``lock_register``."""
        params = student.params()
        enrolments = self.enrolment_ids(student)
        counts: dict[str, int] = {}
        for chunk in batched(event_ids, 1000):
            ids = list(chunk)
            naming = self._run(NAMING_IDS_SQL, {**params, "ids": ids})
            done = self._run(REDACT_SQL, {**params, "ids": ids})
            if naming:
                renamed = [{"id": i, "event_id": f"erased-{key.label(str(e))}"} for i, e in naming]
                self.connection.run(RENAME_SQL, rows=json.dumps(renamed))
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

    def record_request(
        self,
        caller: str,
        request_id: str | None,
        action: str,
        *,
        dry_run: bool = False,
        reference: str | None = None,
        digests: list[str] | None = None,
        erasure_id: int | None = None,
    ) -> None:
        """One row of ``privacy_requests``: who asked (as API Gateway verified them), for what."""
        self.connection.run(
            RECORD_REQUEST_SQL,
            caller=caller,
            request_id=request_id,
            action=action,
            dry_run=dry_run,
            reference=reference,
            identifiers=json.dumps(sorted(digests or [])),
            erasure_id=erasure_id,
        )

    def requests(self, digests: list[str], limit: int) -> list[dict[str, Any]]:
        """The recorded requests, newest first (those about a student when their digests are given)."""
        names = ("id", "requested_at", "caller", "request_id", "action", "dry_run", "reference", "erasure_id")
        rows = self.connection.run(REQUESTS_SQL, digests=digests, limit=limit)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def update_counts(self, erasure_id: int, counts: dict[str, int]) -> None:
        self.connection.run(
            "UPDATE erasures SET counts = CAST(:counts AS jsonb) WHERE id = :id",
            id=erasure_id,
            counts=json.dumps(counts),
        )

    def register(self, digests: list[str], erasure_id: int) -> None:
        """Enter the student's identifiers in the erasure register."""
        self.connection.run(REGISTER_SQL, digests=sorted(digests), erasure_id=erasure_id)

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


def only_named(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``sql`` names (a prepared statement takes exactly those)."""
    return {k: v for k, v in params.items() if re.search(rf":{k}\b", sql)}
