"""``GET /api/v1/events/health`` and ``GET /api/v1/events/stats`` (SPEC §3, §10).

Health says whether the database and the queues answer, and nothing else. Stats summarise the
event log; they carry ids, modules, statuses and times, never payloads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from event_router.contract import Module
from event_router.errors import StorageUnavailable
from event_router.observability import logger
from event_router.queues import DeadLetterQueue, queues_answer, sqs_client
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.operations import EventLogOperations

RECENT = 10
Answer = tuple[int, dict[str, Any]]  # HTTP status, JSON body


class Monitor:
    def __init__(
        self,
        log: EventLogOperations,
        sqs: Any,
        queue_urls: dict[Module, str],
        dead_letters: DeadLetterQueue,
        delivery_queues: list[str] | None = None,
    ) -> None:
        self._log = log
        self._sqs = sqs
        self._queue_urls = queue_urls
        self._dead_letters = dead_letters
        self._delivery_queues = delivery_queues or []

    def health(self) -> Answer:
        """200 when Postgres and every queue answer; 503 naming what did not."""
        checks = {"database": "ok", "queues": "ok"}
        try:
            self._log.ping()
        except StorageUnavailable as error:
            checks["database"] = "unavailable"
            logger.warning("health: database unavailable", error=str(error))
        if not queues_answer(self._sqs, [*self._queue_urls.values(), *self._delivery_queues, self._dead_letters.url]):
            checks["queues"] = "unavailable"
        healthy = all(v == "ok" for v in checks.values())
        return (200 if healthy else 503), {"status": "ok" if healthy else "unavailable", "checks": checks}

    def stats(self) -> Answer:
        """What the event log holds (SPEC §10); 503 when the database does not answer."""
        try:
            facts = self._log.stats(RECENT)
            deliveries = self._log.delivery_stats(RECENT)
        except StorageUnavailable as error:
            logger.warning("stats: database unavailable", error=str(error))
            return 503, {"success": False, "error": "unavailable", "message": "Database unavailable"}
        by, day_by_status = facts["by"], facts["day_by_status"]
        oldest: datetime | None = facts["oldest_unprocessed"]
        body = {
            "total_events": sum(by["status"].values()),
            "by_status": by["status"],
            "by_source": by["source"],
            "by_module": by["module"],
            "recent_events": [_jsonable(r) for r in facts["recent"]],
            "last_24h": {"total": sum(day_by_status.values()), "by_status": day_by_status},
            "failures": {
                "failed": by["status"].get("failed", 0),
                "dead_lettered": by["status"].get("dead_lettered", 0),
                "recent": [_jsonable(r) for r in facts["failed"]],
            },
            "oldest_unprocessed_age_seconds": (
                round((facts["now"] - oldest).total_seconds(), 3) if oldest is not None else None
            ),
            "processing_ms": {
                "avg": round(float(facts["avg_ms"]), 1) if facts["avg_ms"] is not None else None,
                "p95": round(float(facts["p95_ms"]), 1) if facts["p95_ms"] is not None else None,
            },
            "dlq_depth": self._dead_letters.depth(),
            "deliveries": {
                "total": sum(deliveries["by"]["status"].values()),
                "by_status": deliveries["by"]["status"],
                "by_destination": deliveries["by"]["destination"],
                "waiting": [_jsonable(r) for r in deliveries["attention"]["waiting"]],
                "failed": [_jsonable(r) for r in deliveries["attention"]["failed"]],
                "paused": [_jsonable(r) for r in deliveries["attention"]["paused"]],
                "destinations": {name: _jsonable(d) for name, d in deliveries["destinations"].items()},
            },
        }
        return 200, body


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in row.items()}


def build_monitor(settings: Settings | None = None) -> Monitor:
    """Wire the monitor function from the container's settings."""
    settings = settings or load_settings()
    if not settings.dead_letter_queue_url:
        raise ValueError("DEAD_LETTER_QUEUE_URL is not set")
    connection = PreparedConnection(connection_params(settings, "monitor"), settings.db_idle_ping_seconds)
    sqs = sqs_client(settings)
    return Monitor(
        EventLogOperations(connection),
        sqs,
        settings.queue_urls(),
        DeadLetterQueue(sqs, settings.dead_letter_queue_url),
        [url for url in (settings.moodle_delivery_queue_url, settings.zoho_delivery_queue_url) if url],
    )
