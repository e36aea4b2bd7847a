"""The verifiers' side of the event log (SPEC §6, §7): record, mark queued, record rejections.

This is the hot path of every webhook, so it talks to Postgres through pg8000
directly with named prepared statements: one round trip per statement, and no
SQLAlchemy import in the verifiers' cold start. The table definitions and every
other query live with SQLAlchemy in ``schema.py`` and the processors.
"""

from __future__ import annotations

import contextlib
import json
import threading
from time import monotonic
from typing import Any

import pg8000.native

from event_router.database import ParamsProvider, describe_error
from event_router.errors import StorageUnavailable
from event_router.payloads import WebhookEvent

_RECORD = """
INSERT INTO integration_events_log
    (event_id, source, module, event_type, record_id, occurred_at, payload)
VALUES (:event_id, :source, :module, :event_type, :record_id, :occurred_at, CAST(:payload AS jsonb))
ON CONFLICT (source, event_id) DO NOTHING
RETURNING id"""

_MARK_QUEUED = """
UPDATE integration_events_log
SET status = 'queued', queued_at = now(), updated_at = now()
WHERE source = :source AND event_id = :event_id AND status = 'received'"""

_RECORD_REJECTION = """
INSERT INTO rejected_requests (source, route, cause, source_ip, body_size, body_sha256)
VALUES (:source, :route, :cause, CAST(:source_ip AS inet), :body_size, :body_sha256)"""

_DRIVER_ERRORS: tuple[type[Exception], ...] = (pg8000.native.Error, OSError)


class PgEventLog:
    """One connection per container (per thread, where a local server runs several).

    The connection is opened on first use, reconnected after it breaks, and
    pinged only when it has been idle: a frozen Lambda container may thaw with
    a dead socket, but a busy one should not pay a round trip per request.
    """

    def __init__(self, connect_params: ParamsProvider, idle_ping_seconds: float = 30.0) -> None:
        self._params = connect_params
        self._idle_ping_seconds = idle_ping_seconds
        self._local = threading.local()

    def record(self, event: WebhookEvent) -> bool:
        """Insert the event as ``received``; False when (source, event_id) is already logged."""
        rows = self._run(
            _RECORD,
            event_id=event.event_id,
            source=event.source,
            module=event.module,
            event_type=event.event_type,
            record_id=event.record_id,
            occurred_at=event.occurred_at,
            payload=json.dumps(event.payload, ensure_ascii=False),
        )
        return bool(rows)

    def mark_queued(self, event: WebhookEvent) -> None:
        """``received`` → ``queued``; a row the processor already moved on is left alone."""
        self._run(_MARK_QUEUED, source=event.source, event_id=event.event_id)

    def record_rejection(
        self, *, source: str, route: str, cause: str, source_ip: str | None, body_size: int, body_sha256: str
    ) -> None:
        """Keep the facts of a refused request; never its body."""
        self._run(
            _RECORD_REJECTION,
            source=source,
            route=route,
            cause=cause,
            source_ip=source_ip,
            body_size=body_size,
            body_sha256=body_sha256,
        )

    def close(self) -> None:
        """Drop this thread's connection (it is reopened on next use)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection, self._local.statements = None, {}
        if connection is not None:
            with contextlib.suppress(*_DRIVER_ERRORS):
                connection.close()

    def _run(self, sql: str, **params: Any) -> list[list[Any]]:
        try:
            rows: list[list[Any]] = self._statement(sql).run(**params)
        except _DRIVER_ERRORS as error:
            self.close()
            raise StorageUnavailable(describe_error(error)) from None
        self._local.last_used = monotonic()
        return rows

    def _statement(self, sql: str) -> Any:
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is not None and monotonic() - local.last_used >= self._idle_ping_seconds:
            try:
                connection.run("SELECT 1")
            except _DRIVER_ERRORS:
                self.close()
                connection = None
        if connection is None:
            connection = local.connection = pg8000.native.Connection(**self._params())
            local.statements = {}
        statement = local.statements.get(sql)
        if statement is None:
            statement = local.statements[sql] = connection.prepare(sql)
        return statement
