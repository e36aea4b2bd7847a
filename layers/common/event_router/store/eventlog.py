"""The verifiers' side of the event log (docs/api.md, docs/decisions.md): record, mark queued, count rejections.

This is the hot path of every webhook: plain SQL statements, prepared on the
container's connection (``connection.py``), one round trip each.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from event_router.messages import EventMessage
from event_router.store.connection import ParamsProvider, PreparedConnection

RECORD_SQL = """
INSERT INTO integration_events_log
    (event_id, source, module, event_type, record_id, occurred_at, payload, auth_method)
VALUES (:event_id, :source, :module, :event_type, :record_id, :occurred_at, CAST(:payload AS jsonb), :auth_method)
ON CONFLICT (source, event_id) DO NOTHING
RETURNING id"""

MARK_QUEUED_SQL = """
UPDATE integration_events_log
SET status = 'queued', queued_at = now(), updated_at = now()
WHERE source = :source AND event_id = :event_id AND status = 'received'"""

RECORD_REJECTIONS_SQL = """
INSERT INTO rejected_requests AS r (minute, source, route, cause, count, received_at, source_ip, body_size, body_sha256)
SELECT minute, source, route, cause, count, received_at, CAST(source_ip AS inet), body_size, body_sha256
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS incoming (
    minute timestamptz, source text, route text, cause text, count integer,
    received_at timestamptz, source_ip text, body_size integer, body_sha256 text)
ON CONFLICT (minute, source, route, cause) DO UPDATE SET
    count = r.count + EXCLUDED.count,
    received_at = greatest(r.received_at, EXCLUDED.received_at),
    source_ip = EXCLUDED.source_ip,
    body_size = EXCLUDED.body_size,
    body_sha256 = EXCLUDED.body_sha256"""


def _isoformat(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def record_params(event: EventMessage) -> dict[str, Any]:
    """The parameters of ``RECORD_SQL`` for ``event``."""
    return {
        "event_id": event.event_id,
        "source": event.source,
        "module": event.module,
        "event_type": event.event_type,
        "record_id": event.record_id,
        "occurred_at": event.occurred_at,
        "payload": json.dumps(event.payload, ensure_ascii=False),
        "auth_method": event.auth_method,
    }


class PgEventLog:
    """The verifier's three statements on the container's prepared connection."""

    def __init__(self, connect_params: ParamsProvider, idle_ping_seconds: float = 30.0) -> None:
        self._connection = PreparedConnection(connect_params, idle_ping_seconds)

    def record(self, event: EventMessage) -> bool:
        """Insert the event as ``received``; False when (source, event_id) is already logged."""
        rows = self._connection.run(RECORD_SQL, **record_params(event))
        return bool(rows)

    def mark_queued(self, event: EventMessage) -> None:
        """``received`` → ``queued``; a row the processor already moved on is left alone."""
        self._connection.run(MARK_QUEUED_SQL, source=event.source, event_id=event.event_id)

    def record_rejections(self, rows: list[dict[str, Any]]) -> None:
        """Add counts of refused requests per (minute, source, route, cause), in one statement; never a body."""
        self._connection.run(RECORD_REJECTIONS_SQL, rows=json.dumps(rows, default=_isoformat))

    def close(self) -> None:
        """Drop this container's connection (it is reopened on next use)."""
        self._connection.close()
