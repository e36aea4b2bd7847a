"""The operators' statements: what replay and the sweep read and change in the event log, what
``/health`` and ``/stats`` read, and the retention of ``rejected_requests``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from event_router.store.connection import PreparedConnection
from event_router.store.tables import DELIVERIES, EVENT_LOG, FAILURES, UNPROCESSED


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


REPLAYABLE_SQL = f"""
SELECT id, source, module, event_id, event_type, record_id, occurred_at, payload, status
FROM {EVENT_LOG}
WHERE status = ANY(CAST(:statuses AS text[]))
  -- a row is stuck in received once its verifier has had time to mark it queued, and in replayed
  -- once its message has had time to reach a processor
  AND (status <> 'received' OR received_at < now() - make_interval(secs => :received_grace))
  AND (status <> 'replayed' OR updated_at < now() - make_interval(secs => :replayed_grace))
  AND (CAST(:module AS text) IS NULL OR module = :module)
  AND (CAST(:event_ids AS text[]) IS NULL OR event_id = ANY(CAST(:event_ids AS text[])))
  AND (CAST(:received_after AS timestamptz) IS NULL OR received_at >= :received_after)
  AND (CAST(:received_before AS timestamptz) IS NULL OR received_at < :received_before)
ORDER BY received_at, id
LIMIT :max_rows"""

_MARK_REPLAYED = f"""
UPDATE {EVENT_LOG} SET status = 'replayed', replay_count = replay_count + 1, queued_at = now(), updated_at = now()
WHERE source = :source AND event_id = :event_id AND """
MARK_REPLAYED_FROM_SQL = _MARK_REPLAYED + "status = :status RETURNING id"
# A dead-lettered message's row may be in any state, or missing; a settled event is left alone.
MARK_REPLAYED_UNLESS_SETTLED_SQL = _MARK_REPLAYED + "status NOT IN ('completed', 'skipped') RETURNING id"

# A dead letter is what the router queued only if its event-log row says the same (a message anyone
# else put in the dead-letter queue has no row, or another payload).
LOGGED_AS_SQL = f"""
SELECT payload = CAST(:payload AS jsonb) FROM {EVENT_LOG} WHERE source = :source AND event_id = :event_id"""
RESTORE_SQL = f"""
UPDATE {EVENT_LOG} SET status = :status, replay_count = replay_count - 1, updated_at = now()
WHERE source = :source AND event_id = :event_id AND status = 'replayed'"""

PARK_SQL = f"""
UPDATE {EVENT_LOG} SET status = 'failed', error_message = :reason,
    result = CAST('{{"reason": "unqueueable"}}' AS jsonb), updated_at = now()
WHERE id = :id AND status = :status"""

OLD_REJECTIONS_SQL = """
SELECT count(*) FROM rejected_requests WHERE received_at < now() - make_interval(days => :days)"""
DELETE_OLD_REJECTIONS_SQL = """
WITH deleted AS (DELETE FROM rejected_requests WHERE received_at < now() - make_interval(days => :days) RETURNING 1)
SELECT count(*) FROM deleted"""

# ------------------------------------------------------------------ /stats (docs/operate.md)

# Every figure is read from data whose size does not grow with the log: the counter table for the
# all-time totals (kept exact by triggers, migration 0008), and the day's rollups for the last 24 hours
# (by minute, module and status for the counts and the average, by hour for the percentile's histogram:
# migrations 0014 and 0016).
STATS_TOTALS_SQL = """
SELECT status, source, module, sum(n)
FROM event_counts
GROUP BY GROUPING SETS ((status), (source), (module))
HAVING sum(n) <> 0"""

# By module and status, and (module and status NULL) the whole day, for its average.
STATS_DAY_SQL = """
SELECT module, status, sum(n), sum(ms_n), sum(ms_sum)
FROM event_minutes
WHERE minute >= date_trunc('minute', now() - interval '24 hours')
GROUP BY GROUPING SETS ((module, status), ())
HAVING sum(n) <> 0 OR GROUPING(module, status) <> 0"""

STATS_DAY_MS_SQL = """
SELECT bucket, sum(n)
FROM event_ms_hours
WHERE hour >= date_trunc('hour', now() - interval '24 hours')
GROUP BY bucket
HAVING sum(n) > 0
ORDER BY bucket"""

DELETE_OLD_ROLLUPS_SQL = """
WITH minutes AS (DELETE FROM event_minutes WHERE minute < now() - interval '2 days' RETURNING 1),
     hours AS (DELETE FROM event_ms_hours WHERE hour < now() - interval '2 days' RETURNING 1)
SELECT (SELECT count(*) FROM minutes) + (SELECT count(*) FROM hours)"""


def percentile(histogram: list[tuple[int, int]], q: float) -> float | None:
    """The ``q`` quantile of processing times from their histogram (bucket ``b`` holds times from
    2^(b/4) - 1 to 2^((b+1)/4) - 1 ms), interpolated within its bucket: within about 19%."""
    total = sum(n for _, n in histogram)
    if total == 0:
        return None
    wanted, seen = q * total, 0
    for bucket, n in histogram:
        if seen + n >= wanted:
            low, high = 2 ** (bucket / 4) - 1, 2 ** ((bucket + 1) / 4) - 1
            return low + (high - low) * (wanted - seen) / n
        seen += n
    return 2 ** (histogram[-1][0] / 4) - 1


STATS_OLDEST_UNPROCESSED_SQL = f"""
SELECT min(received_at), now() FROM {EVENT_LOG} WHERE status IN ({_quoted(UNPROCESSED)})"""

RECENT_COLUMNS = (
    "event_id",
    "source",
    "module",
    "event_type",
    "status",
    "attempts",
    "replay_count",
    "received_at",
    "processed_at",
)
STATS_RECENT_SQL = f"""
SELECT {", ".join(RECENT_COLUMNS)} FROM {EVENT_LOG} ORDER BY received_at DESC, id DESC LIMIT :limit"""

FAILED_COLUMNS = ("event_id", "source", "module", "status", "error_message", "updated_at")
STATS_FAILED_SQL = f"""
SELECT {", ".join(FAILED_COLUMNS)} FROM {EVENT_LOG}
WHERE status IN ({_quoted(FAILURES)}) ORDER BY updated_at DESC LIMIT :limit"""


DELIVERY_COUNTS_SQL = """
SELECT status, destination, sum(n) FROM delivery_counts
GROUP BY GROUPING SETS ((status), (destination)) HAVING sum(n) <> 0"""
DELIVERY_COLUMNS = ("id", "destination", "action", "target_key", "status", "attempts", "last_error", "updated_at")
DELIVERY_ATTENTION_SQL = f"""
SELECT {", ".join(DELIVERY_COLUMNS)} FROM {DELIVERIES}
WHERE status = :status ORDER BY updated_at DESC LIMIT :limit"""
DESTINATIONS_SQL = "SELECT name, paused_at, pause_reason, checked_at, checks FROM destinations ORDER BY name"


class EventLogOperations:
    """Replay's and the monitor's view of Postgres."""

    def __init__(self, connection: PreparedConnection) -> None:
        self._connection = connection

    def replayable(
        self,
        *,
        statuses: list[str],
        module: str | None,
        event_ids: list[str] | None,
        received_after: datetime | None,
        received_before: datetime | None,
        received_grace_seconds: int,
        replayed_grace_seconds: int,
        max_rows: int,
    ) -> list[dict[str, Any]]:
        """The rows a replay request matches, oldest first."""
        rows = self._connection.run(
            REPLAYABLE_SQL,
            statuses=statuses,
            module=module,
            event_ids=event_ids,
            received_after=received_after,
            received_before=received_before,
            received_grace=received_grace_seconds,
            replayed_grace=replayed_grace_seconds,
            max_rows=max_rows,
        )
        names = ("id", "source", "module", "event_id", "event_type", "record_id", "occurred_at", "payload", "status")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def mark_replayed(self, source: str, event_id: str, from_status: str | None) -> bool:
        """``replayed``, ``replay_count + 1``; False when the row moved on (or is settled)."""
        if from_status is None:
            rows = self._connection.run(MARK_REPLAYED_UNLESS_SETTLED_SQL, source=source, event_id=event_id)
        else:
            rows = self._connection.run(MARK_REPLAYED_FROM_SQL, source=source, event_id=event_id, status=from_status)
        return bool(rows)

    def logged_as(self, source: str, event_id: str, payload: dict[str, Any]) -> bool | None:
        """Whether the event's row holds this payload; None when the event has no row."""
        rows = self._connection.run(
            LOGGED_AS_SQL, source=source, event_id=event_id, payload=json.dumps(payload, ensure_ascii=False)
        )
        return bool(rows[0][0]) if rows else None

    def restore(self, source: str, event_id: str, status: str) -> None:
        """Undo ``mark_replayed`` when the message could not be sent."""
        self._connection.run(RESTORE_SQL, source=source, event_id=event_id, status=status)

    def park(self, row_id: int, status: str, reason: str) -> None:
        """A row that cannot be queued at all: ``failed`` with the reason."""
        self._connection.run(PARK_SQL, id=row_id, status=status, reason=reason)

    def delete_old_rollups(self) -> int:
        """Drop the day's rollups older than two days (the sweep); the buckets deleted."""
        return int(self._connection.run(DELETE_OLD_ROLLUPS_SQL)[0][0])

    def delete_rejections_older_than(self, days: int, dry_run: bool = False) -> int:
        """Delete (or count) ``rejected_requests`` rows older than ``days``."""
        sql = OLD_REJECTIONS_SQL if dry_run else DELETE_OLD_REJECTIONS_SQL
        return int(self._connection.run(sql, days=days)[0][0])

    def ping(self) -> None:
        self._connection.run("SELECT 1")

    def stats(self, recent: int) -> dict[str, Any]:
        """What the event log holds (docs/operate.md), as plain data; no statement reads more than a day of
        history, however long the log."""
        by: dict[str, dict[str, int]] = {"status": {}, "source": {}, "module": {}}
        for status, source, module, total in self._connection.run(STATS_TOTALS_SQL):
            for dimension, value in (("status", status), ("source", source), ("module", module)):
                if value is not None:
                    by[dimension][value] = int(total)
        day: dict[str, dict[str, int]] = {}  # module → status → events in the last 24 hours
        avg_ms = None
        for module, status, total, timed, time_sum in self._connection.run(STATS_DAY_SQL):
            if status is None:  # the grand total: the whole day
                avg_ms = int(time_sum) / int(timed) if timed else None
            else:
                day.setdefault(module, {})[status] = int(total)
        histogram = [(int(bucket), int(n)) for bucket, n in self._connection.run(STATS_DAY_MS_SQL)]
        p95_ms = percentile(histogram, 0.95)
        [(oldest, now)] = self._connection.run(STATS_OLDEST_UNPROCESSED_SQL)
        recent_rows = self._connection.run(STATS_RECENT_SQL, limit=recent)
        failed_rows = self._connection.run(STATS_FAILED_SQL, limit=recent)
        return {
            "by": by,
            "day": day,
            "oldest_unprocessed": oldest,
            "avg_ms": avg_ms,
            "p95_ms": p95_ms,
            "now": now,
            "recent": [dict(zip(RECENT_COLUMNS, r, strict=True)) for r in recent_rows],
            "failed": [dict(zip(FAILED_COLUMNS, r, strict=True)) for r in failed_rows],
        }

    def delivery_stats(self, recent: int) -> dict[str, Any]:
        """Deliveries by status and destination, the ones that need a look, and the destinations."""
        by: dict[str, dict[str, int]] = {"status": {}, "destination": {}}
        for status, destination, total in self._connection.run(DELIVERY_COUNTS_SQL):
            if status is not None:
                by["status"][status] = int(total)
            if destination is not None:
                by["destination"][destination] = int(total)
        attention = {
            status: [
                dict(zip(DELIVERY_COLUMNS, r, strict=True))
                for r in self._connection.run(DELIVERY_ATTENTION_SQL, status=status, limit=recent)
            ]
            for status in ("waiting", "failed", "paused", "conflict")
        }
        destinations = {
            name: {
                "paused": paused_at is not None,
                "paused_at": paused_at,
                "reason": reason,
                "checked_at": checked,
                "checks": checks or {},
            }
            for name, paused_at, reason, checked, checks in self._connection.run(DESTINATIONS_SQL)
        }
        return {"by": by, "attention": attention, "destinations": destinations}
