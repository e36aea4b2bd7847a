"""The reconciliation's statements (docs/first-day.md): its runs and checkpoints, the events it enters into the
pipeline, what it reads of the mirror and of the accounts the router manages, and Zoho's report of the
webhooks it failed to deliver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from event_router.contract import OPEN_DELIVERIES, sql_list
from event_router.messages import EventMessage
from event_router.store.connection import PreparedConnection
from event_router.store.tables import DELIVERIES, EVENT_LOG, LOGGED_FIELDS

LOCK = (0x20482, 0)  # one reconciliation at a time: an advisory lock of its own namespace
STALE_AFTER_SECONDS = 900  # a running run whose heartbeat is older has died: the next invocation resumes it

RUN_COLUMNS = (
    "id",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "status",
    "dry_run",
    "requested_by",
    "since",
    "phase",
    "checkpoint",
    "counts",
    "error",
)
_RUN = ", ".join(RUN_COLUMNS)

START_SQL = f"""
INSERT INTO reconcile_runs (status, dry_run, requested_by, since, phase)
VALUES ('running', :dry_run, :requested_by, :since, :phase)
RETURNING {_RUN}"""
# A run to carry on: one paused (a budget or a deadline), or one whose invocation died mid-way.
RESUMABLE_SQL = f"""
SELECT {_RUN} FROM reconcile_runs
WHERE dry_run = :dry_run AND (status = 'paused'
    OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => :stale)))
ORDER BY id DESC LIMIT 1"""
RESUME_SQL = f"""
UPDATE reconcile_runs SET status = 'running', heartbeat_at = now(), error = NULL WHERE id = :id RETURNING {_RUN}"""
SAVE_SQL = """
UPDATE reconcile_runs SET phase = :phase, checkpoint = CAST(:checkpoint AS jsonb), counts = CAST(:counts AS jsonb),
    heartbeat_at = now()
WHERE id = :id"""
END_SQL = """
UPDATE reconcile_runs SET status = :status, error = :error, heartbeat_at = now(),
    finished_at = CASE WHEN :status IN ('completed', 'failed') THEN now() END
WHERE id = :id"""
LAST_COMPLETED_SQL = """
SELECT max(started_at) FROM reconcile_runs WHERE status = 'completed' AND NOT dry_run"""
RECENT_RUNS_SQL = f"SELECT {_RUN} FROM reconcile_runs ORDER BY id DESC LIMIT :limit"

# The events of records the reconciliation read, in one statement: only those not logged yet come back.
RECORD_EVENTS_SQL = f"""
INSERT INTO {EVENT_LOG} ({", ".join(c.name for c in LOGGED_FIELDS)})
SELECT {", ".join(c.name for c in LOGGED_FIELDS)}
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS incoming ({", ".join(f"{c.name} {c.sql_type}" for c in LOGGED_FIELDS)})
ON CONFLICT (source, event_id) DO NOTHING
RETURNING event_id"""
LOGGED_SQL = f"""
SELECT event_id FROM {EVENT_LOG} WHERE source = :source AND event_id = ANY(CAST(:ids AS text[]))"""
MARK_QUEUED_SQL = f"""
UPDATE {EVENT_LOG} SET status = 'queued', queued_at = now(), updated_at = now()
WHERE source = :source AND event_id = ANY(CAST(:ids AS text[])) AND status = 'received'"""

# The accounts the router manages, a page at a time, with what the mirror holds of their students.
MANAGED_SQL = """
SELECT account.student_zoho_id, account.moodle_user_id, account.origin, account.matched_by,
       students.data, students.deleted_at
FROM moodle_accounts AS account JOIN students ON students.zoho_record_id = account.student_zoho_id
WHERE account.student_zoho_id > :after
ORDER BY account.student_zoho_id LIMIT :limit"""
# Students the router has never tried to give an account (not deleted, no account, no delivery).
UNDELIVERED_SQL = f"""
SELECT students.zoho_record_id FROM students
WHERE students.deleted_at IS NULL AND students.zoho_record_id > :after
  AND NOT EXISTS (SELECT 1 FROM moodle_accounts AS a WHERE a.student_zoho_id = students.zoho_record_id)
  AND NOT EXISTS (
      SELECT 1 FROM {DELIVERIES} AS d
      WHERE d.destination = 'moodle' AND d.action = 'user' AND d.target_key = students.zoho_record_id)
ORDER BY students.zoho_record_id LIMIT :limit"""
CONFLICTS_SQL = f"""
SELECT count(DISTINCT target_key) FROM {DELIVERIES} AS d
WHERE d.destination = 'moodle' AND d.status = 'conflict'
  AND d.id = (SELECT max(id) FROM {DELIVERIES} AS newest
              WHERE newest.destination = d.destination AND newest.action = d.action
                AND newest.target_key = d.target_key)"""
# Each managed student's enrolments, by the Moodle course idnumber they name (or their class does).
ENROLMENTS_SQL = """
SELECT enrolment.zoho_record_id, enrolment.status, enrolment.deleted_at, account.moodle_user_id,
       coalesce(nullif(trim(enrolment.data->>:course_field), ''), class.moodle_course_idnumber) AS idnumber
FROM enrollments AS enrolment
JOIN moodle_accounts AS account ON account.student_zoho_id = enrolment.student_zoho_id
LEFT JOIN zoho_classes AS class ON class.class_zoho_id = enrolment.class_zoho_id
WHERE coalesce(nullif(trim(enrolment.data->>:course_field), ''), class.moodle_course_idnumber)
      = ANY(CAST(:courses AS text[]))"""
COURSES_SQL = """
SELECT DISTINCT coalesce(nullif(trim(enrolment.data->>:course_field), ''), class.moodle_course_idnumber) AS idnumber
FROM enrollments AS enrolment
JOIN moodle_accounts AS account ON account.student_zoho_id = enrolment.student_zoho_id
LEFT JOIN zoho_classes AS class ON class.class_zoho_id = enrolment.class_zoho_id
WHERE coalesce(nullif(trim(enrolment.data->>:course_field), ''), class.moodle_course_idnumber) > :after
ORDER BY 1 LIMIT :limit"""
MANAGED_USERS_SQL = "SELECT moodle_user_id FROM moodle_accounts WHERE moodle_user_id = ANY(CAST(:ids AS bigint[]))"
CLASS_COURSE_SQL = "SELECT moodle_course_idnumber FROM zoho_classes WHERE class_zoho_id = :id"
SET_CLASS_COURSE_SQL = """
INSERT INTO zoho_classes (class_zoho_id, moodle_course_idnumber) VALUES (:id, :idnumber)
ON CONFLICT (class_zoho_id) DO UPDATE SET
    moodle_course_idnumber = EXCLUDED.moodle_course_idnumber, fetched_at = now()"""
ENROLMENTS_OF_CLASS_SQL = "SELECT zoho_record_id FROM enrollments WHERE class_zoho_id = :id AND deleted_at IS NULL"
DELIVERY_SQL = f"""
INSERT INTO {DELIVERIES} (destination, action, target_key) VALUES (:destination, :action, :target_key)
RETURNING id, destination"""
# A delivery still to do for the target already does the repair: none is added.
OPEN_DELIVERY_SQL = f"""
SELECT 1 FROM {DELIVERIES} WHERE destination = :destination AND action = :action AND target_key = :target_key
  AND status IN {sql_list(OPEN_DELIVERIES)} LIMIT 1"""
RECORD_FAILURES_SQL = """
INSERT INTO zoho_webhook_failures (failure_key, module, record_id, webhook, reason, failed_at, run_id)
SELECT failure_key, module, record_id, webhook, reason, failed_at, run_id
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS incoming (
    failure_key text, module text, record_id text, webhook text, reason text, failed_at timestamptz, run_id bigint)
ON CONFLICT (failure_key) DO NOTHING
RETURNING failure_key"""
RECENT_FAILURES_SQL = """
SELECT module, record_id, webhook, reason, failed_at, seen_at FROM zoho_webhook_failures
ORDER BY seen_at DESC, failed_at DESC LIMIT :limit"""
FAILURES_30_DAYS_SQL = "SELECT count(*) FROM zoho_webhook_failures WHERE failed_at >= now() - interval '30 days'"
REJECTIONS_24H_SQL = """
SELECT source, cause, sum(count) FROM rejected_requests WHERE minute >= now() - interval '24 hours'
GROUP BY source, cause ORDER BY source, cause"""


@dataclass
class Run:
    """One reconciliation: where it is, and what it has found and done so far."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime
    status: str
    dry_run: bool
    requested_by: str
    since: datetime | None
    phase: str
    checkpoint: dict[str, Any]
    counts: dict[str, Any]
    error: str | None

    @classmethod
    def of(cls, row: list[Any]) -> Run:
        values = dict(zip(RUN_COLUMNS, row, strict=True))
        values["checkpoint"] = dict(values["checkpoint"] or {})
        values["counts"] = dict(values["counts"] or {})
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "status": self.status,
            "dry_run": self.dry_run,
            "requested_by": self.requested_by,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "since": self.since.isoformat() if self.since else None,
            "phase": self.phase,
            "counts": self.counts,
            "error": self.error,
        }


@dataclass(frozen=True)
class Managed:
    """A managed account and its student, as the mirror holds them."""

    student: str
    moodle_user_id: int
    origin: str
    matched_by: str | None
    data: dict[str, Any]
    deleted: bool


@dataclass(frozen=True)
class WantedEnrolment:
    """What a managed student's enrolment should be in Moodle."""

    enrolment: str
    status: str | None
    deleted: bool
    moodle_user_id: int
    course_idnumber: str


class ReconcileStore:
    """What the reconciliation reads and writes in Postgres."""

    def __init__(self, connection: PreparedConnection) -> None:
        self.connection = connection

    # ------------------------------------------------------------ runs

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """True while this invocation is the only reconciliation running."""
        [[taken]] = self.connection.run("SELECT pg_try_advisory_lock(:ns, :key)", ns=LOCK[0], key=LOCK[1])
        try:
            yield bool(taken)
        finally:
            if taken:
                self.connection.run("SELECT pg_advisory_unlock(:ns, :key)", ns=LOCK[0], key=LOCK[1])

    def resumable(self, dry_run: bool) -> Run | None:
        """A run to carry on, now running again; its ``error`` is why it had stopped."""
        rows = self.connection.run(RESUMABLE_SQL, dry_run=dry_run, stale=STALE_AFTER_SECONDS)
        if not rows:
            return None
        stopped = Run.of(rows[0])
        resumed = Run.of(self.connection.run(RESUME_SQL, id=stopped.id)[0])
        resumed.error = stopped.error
        return resumed

    def start(self, *, dry_run: bool, requested_by: str, since: datetime | None, phase: str) -> Run:
        [row] = self.connection.run(START_SQL, dry_run=dry_run, requested_by=requested_by, since=since, phase=phase)
        return Run.of(row)

    def save(self, run: Run) -> None:
        self.connection.run(
            SAVE_SQL, id=run.id, phase=run.phase, checkpoint=json.dumps(run.checkpoint), counts=json.dumps(run.counts)
        )

    def end(self, run: Run, status: str, error: str | None = None) -> None:
        self.connection.run(END_SQL, id=run.id, status=status, error=error)
        run.status, run.error = status, error

    def last_completed_start(self) -> datetime | None:
        [[when]] = self.connection.run(LAST_COMPLETED_SQL)
        return when

    def recent_runs(self, limit: int = 5) -> list[Run]:
        return [Run.of(row) for row in self.connection.run(RECENT_RUNS_SQL, limit=limit)]

    # ------------------------------------------------------------ events into the pipeline

    def record_events(self, events: list[EventMessage]) -> list[str]:
        """Log the events (``received``); the ids of those that were not logged yet."""
        if not events:
            return []
        fields = {c.name for c in LOGGED_FIELDS}
        rows = [event.model_dump(mode="json", include=fields) for event in events]
        return [str(i) for (i,) in self.connection.run(RECORD_EVENTS_SQL, rows=json.dumps(rows, ensure_ascii=False))]

    def logged(self, source: str, event_ids: list[str]) -> set[str]:
        """Which of ``event_ids`` are logged already (a dry run's count of what it would add)."""
        if not event_ids:
            return set()
        return {str(i) for (i,) in self.connection.run(LOGGED_SQL, source=source, ids=event_ids)}

    def mark_queued(self, source: str, event_ids: list[str]) -> None:
        if event_ids:
            self.connection.run(MARK_QUEUED_SQL, source=source, ids=event_ids)

    # ------------------------------------------------------------ the accounts and what they should be

    def managed(self, after: str, limit: int) -> list[Managed]:
        return [
            Managed(str(s), int(u), str(o), m, dict(d or {}), deleted is not None)
            for s, u, o, m, d, deleted in self.connection.run(MANAGED_SQL, after=after, limit=limit)
        ]

    def undelivered_students(self, after: str, limit: int) -> list[str]:
        return [str(s) for (s,) in self.connection.run(UNDELIVERED_SQL, after=after, limit=limit)]

    def conflicts(self) -> int:
        """Students whose newest Moodle delivery ended ``conflict``: for a person to decide."""
        return int(self.connection.run(CONFLICTS_SQL)[0][0])

    def managed_courses(self, course_field: str, after: str, limit: int) -> list[str]:
        """The course idnumbers managed students' enrolments name, in order, a page at a time."""
        rows = self.connection.run(COURSES_SQL, course_field=course_field, after=after, limit=limit)
        return [str(i) for (i,) in rows]

    def wanted_enrolments(self, course_field: str, courses: list[str]) -> list[WantedEnrolment]:
        rows = self.connection.run(ENROLMENTS_SQL, course_field=course_field, courses=courses)
        return [
            WantedEnrolment(str(e), status, deleted is not None, int(user), str(idnumber))
            for e, status, deleted, user, idnumber in rows
        ]

    def managed_users(self, user_ids: list[int]) -> set[int]:
        """Which of ``user_ids`` are accounts the router manages."""
        if not user_ids:
            return set()
        return {int(u) for (u,) in self.connection.run(MANAGED_USERS_SQL, ids=user_ids)}

    def set_class_course(self, class_id: str, idnumber: str | None) -> list[str]:
        """Keep a class's course; when it changed, the class's enrolments (to deliver again)."""
        rows = self.connection.run(CLASS_COURSE_SQL, id=class_id)
        if rows and rows[0][0] == idnumber:
            return []
        self.connection.run(SET_CLASS_COURSE_SQL, id=class_id, idnumber=idnumber)
        return [str(e) for (e,) in self.connection.run(ENROLMENTS_OF_CLASS_SQL, id=class_id)] if rows else []

    def add_delivery(self, destination: str, action: str, target_key: str) -> tuple[int, str] | None:
        """A delivery that repairs a drift, unless one for the target is still to do."""
        if self.connection.run(OPEN_DELIVERY_SQL, destination=destination, action=action, target_key=target_key):
            return None
        [[delivery_id, found]] = self.connection.run(
            DELIVERY_SQL, destination=destination, action=action, target_key=target_key
        )
        return int(delivery_id), str(found)

    # ------------------------------------------------------------ Zoho's failures, the router's rejections

    def record_failures(self, rows: list[dict[str, Any]]) -> set[str]:
        """Keep Zoho's failed webhooks (each once); the keys of those not seen before."""
        if not rows:
            return set()
        return {str(k) for (k,) in self.connection.run(RECORD_FAILURES_SQL, rows=json.dumps(rows, default=str))}

    def failures(self, limit: int = 10) -> dict[str, Any]:
        recent = self.connection.run(RECENT_FAILURES_SQL, limit=limit)
        names = ("module", "record_id", "webhook", "reason", "failed_at", "seen_at")
        return {
            "last_30_days": int(self.connection.run(FAILURES_30_DAYS_SQL)[0][0]),
            "recent": [dict(zip(names, row, strict=True)) for row in recent],
        }

    def rejections(self) -> dict[str, dict[str, int]]:
        """The router's own refusals of the last day, by source and cause."""
        found: dict[str, dict[str, int]] = {}
        for source, cause, total in self.connection.run(REJECTIONS_24H_SQL):
            found.setdefault(str(source), {})[str(cause)] = int(total)
        return found
