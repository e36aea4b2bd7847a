"""``GET /api/v1/events/health`` and ``GET /api/v1/events/stats`` (SPEC §3, §10).

Health says whether the database and the queues answer, and nothing else.
Stats summarise the event log; they carry ids, modules, statuses and times,
never payloads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Connection, Engine, Float, cast, func, select, text, tuple_

from event_router.engine import STORE_ERRORS, settings_engine
from event_router.http import json_response
from event_router.observability import logger
from event_router.queues import sqs_client
from event_router.routes import Module
from event_router.schema import integration_events_log as log
from event_router.settings import Settings, load_settings

UNPROCESSED = ("received", "queued", "processing", "replayed")
FAILURES = ("failed", "dead_lettered")
RECENT = 10
QUEUE_ERRORS = (BotoCoreError, ClientError)


class Monitor:
    def __init__(self, engine: Engine, sqs: Any, queue_urls: dict[Module, str], dead_letter_queue_url: str) -> None:
        self._engine = engine
        self._sqs = sqs
        self._queue_urls = queue_urls
        self._dlq_url = dead_letter_queue_url

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        route = event.get("routeKey", "")
        if route.endswith("/health"):
            return self.health()
        if route.endswith("/stats"):
            return self.stats()
        return json_response(404, {"success": False, "error": "not_found", "message": "No such monitor route"})

    def health(self) -> dict[str, Any]:
        """200 when Postgres and every queue answer; 503 naming what did not."""
        checks = {"database": "ok", "queues": "ok"}
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except STORE_ERRORS as error:
            checks["database"] = "unavailable"
            logger.warning("health: database unavailable", error=type(error).__name__)
        try:
            for url in [*self._queue_urls.values(), self._dlq_url]:
                self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except QUEUE_ERRORS as error:
            checks["queues"] = "unavailable"
            logger.warning("health: queues unavailable", error=type(error).__name__)
        healthy = all(v == "ok" for v in checks.values())
        return json_response(200 if healthy else 503, {"status": "ok" if healthy else "unavailable", "checks": checks})

    def stats(self) -> dict[str, Any]:
        """What the event log holds (SPEC §10); 503 when the database does not answer."""
        try:
            with self._engine.connect() as connection:
                body = _log_stats(connection)
        except STORE_ERRORS as error:
            logger.warning("stats: database unavailable", error=type(error).__name__)
            return json_response(503, {"success": False, "error": "unavailable", "message": "Database unavailable"})
        body["dlq_depth"] = self._dlq_depth()
        return json_response(200, body)

    def _dlq_depth(self) -> int | None:
        try:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
        except QUEUE_ERRORS:
            return None
        return int(attributes["ApproximateNumberOfMessages"])


def _log_stats(connection: Connection) -> dict[str, Any]:
    day_ago = func.now() - text("interval '24 hours'")
    # One pass over the log: counts per status, per source and per module, all time and last 24 h.
    grouped = connection.execute(
        select(
            log.c.status,
            log.c.source,
            log.c.module,
            func.count().label("total"),
            func.count().filter(log.c.received_at >= day_ago).label("last_24h"),
        ).group_by(func.grouping_sets(tuple_(log.c.status), tuple_(log.c.source), tuple_(log.c.module)))
    ).all()
    by = {"status": {}, "source": {}, "module": {}}  # type: dict[str, dict[str, int]]
    day_by_status: dict[str, int] = {}
    for row in grouped:
        for dimension in by:
            value = getattr(row, dimension)
            if value is not None:
                by[dimension][value] = row.total
                if dimension == "status" and row.last_24h:
                    day_by_status[value] = row.last_24h
    summary = connection.execute(
        select(
            func.min(log.c.received_at).filter(log.c.status.in_(UNPROCESSED)).label("oldest_unprocessed"),
            func.avg(log.c.processing_ms).filter(log.c.processed_at >= day_ago).label("avg_ms"),
            func.percentile_cont(0.95)
            .within_group(cast(log.c.processing_ms, Float))
            .filter(log.c.processed_at >= day_ago)
            .label("p95_ms"),
            func.now().label("now"),
        )
    ).one()
    recent_columns = (
        log.c.event_id,
        log.c.source,
        log.c.module,
        log.c.event_type,
        log.c.status,
        log.c.attempts,
        log.c.replay_count,
        log.c.received_at,
        log.c.processed_at,
    )
    recent = connection.execute(
        select(*recent_columns).order_by(log.c.received_at.desc(), log.c.id.desc()).limit(RECENT)
    )
    failed = connection.execute(
        select(log.c.event_id, log.c.source, log.c.module, log.c.status, log.c.error_message, log.c.updated_at)
        .where(log.c.status.in_(FAILURES))
        .order_by(log.c.updated_at.desc())
        .limit(RECENT)
    )
    oldest: datetime | None = summary.oldest_unprocessed
    return {
        "total_events": sum(by["status"].values()),
        "by_status": by["status"],
        "by_source": by["source"],
        "by_module": by["module"],
        "recent_events": [_jsonable(r._mapping) for r in recent],
        "last_24h": {"total": sum(day_by_status.values()), "by_status": day_by_status},
        "failures": {
            "failed": by["status"].get("failed", 0),
            "dead_lettered": by["status"].get("dead_lettered", 0),
            "recent": [_jsonable(r._mapping) for r in failed],
        },
        "oldest_unprocessed_age_seconds": round((summary.now - oldest).total_seconds(), 3) if oldest else None,
        "processing_ms": {
            "avg": round(float(summary.avg_ms), 1) if summary.avg_ms is not None else None,
            "p95": round(float(summary.p95_ms), 1) if summary.p95_ms is not None else None,
        },
    }


def _jsonable(row: Any) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in row.items()}


def build_monitor(settings: Settings | None = None) -> Monitor:
    """Wire the monitor function from the container's settings."""
    settings = settings or load_settings()
    if not settings.dead_letter_queue_url:
        raise ValueError("DEAD_LETTER_QUEUE_URL is not set")
    engine = settings_engine(settings, "monitor")
    return Monitor(engine, sqs_client(settings), settings.queue_urls(), settings.dead_letter_queue_url)
