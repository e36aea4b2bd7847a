"""``GET /api/v1/events/health`` and ``GET /api/v1/events/stats`` (docs/api.md, docs/operate.md).

Health says whether the database and the queues answer, and nothing else; its answer is kept for
``HEALTH_CACHE_SECONDS`` per container, so a flood of unauthenticated ``/health`` calls costs at
most one database query and one round of queue checks per container per interval. Stats summarise
the event log; they carry ids, modules, statuses and times, never payloads, and read nothing whose
size grows with the log's history (the totals come from counters the writes keep).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from event_router.contract import Module
from event_router.core.aws import sqs_client
from event_router.errors import StorageUnavailable
from event_router.observability import logger
from event_router.queues import DeadLetterQueue, queues_answer
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.operations import EventLogOperations
from event_router.store.reconcile import ReconcileStore

RECENT = 10
Reply = tuple[int, dict[str, Any]]  # HTTP status, JSON body


class Monitor:
    def __init__(
        self,
        log: EventLogOperations,
        sqs: Any,
        queue_urls: dict[Module, str],
        dead_letters: DeadLetterQueue,
        delivery_queues: list[str] | None = None,
        health_cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        reconciliation: ReconcileStore | None = None,
    ) -> None:
        self._reconciliation = reconciliation
        self._health_cache_seconds = health_cache_seconds
        self._clock = clock
        self._health: tuple[float, Reply] | None = None  # (when checked, the answer)
        self._log = log
        self._sqs = sqs
        self._queue_urls = queue_urls
        self._dead_letters = dead_letters
        self._delivery_queues = delivery_queues or []

    def health(self) -> Reply:
        """200 when Postgres and every queue answer; 503 naming what did not. Checked at most once
        per ``health_cache_seconds`` in this container."""
        now = self._clock()
        if self._health is not None and now - self._health[0] < self._health_cache_seconds:
            return self._health[1]
        answer = self._check()
        self._health = (self._clock(), answer)
        return answer

    def _check(self) -> Reply:
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

    def stats(self) -> Reply:
        """What the event log holds (docs/operate.md); 503 when the database does not answer."""
        try:
            facts = self._log.stats(RECENT)
            deliveries = self._log.delivery_stats(RECENT)
            reconciliation = self._reconciliation_stats()
        except StorageUnavailable as error:
            logger.warning("stats: database unavailable", error=str(error))
            return 503, {"success": False, "error": "unavailable", "message": "Database unavailable"}
        by, day = facts["by"], facts["day"]
        day_by_status: Counter[str] = Counter()
        for statuses in day.values():
            day_by_status.update(statuses)
        oldest: datetime | None = facts["oldest_unprocessed"]
        body = {
            "total_events": sum(by["status"].values()),
            "by_status": by["status"],
            "by_source": by["source"],
            "by_module": by["module"],
            "recent_events": [_jsonable(r) for r in facts["recent"]],
            "last_24h": {
                "total": sum(day_by_status.values()),
                "by_status": dict(day_by_status),
                "by_module": {module: sum(statuses.values()) for module, statuses in day.items()},
                "by_module_and_status": day,
            },
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
            # How current the figures are: the totals and the day's rollups are kept by the writes
            # themselves, in the transactions that write the log: as of this instant.
            "freshness": {"as_of": facts["now"].isoformat(), "totals": "live", "last_24h": "live"},
            "deliveries": {
                "total": sum(deliveries["by"]["status"].values()),
                "by_status": deliveries["by"]["status"],
                "by_destination": deliveries["by"]["destination"],
                "waiting": [_jsonable(r) for r in deliveries["attention"]["waiting"]],
                "failed": [_jsonable(r) for r in deliveries["attention"]["failed"]],
                "paused": [_jsonable(r) for r in deliveries["attention"]["paused"]],
                "conflicts": [_jsonable(r) for r in deliveries["attention"]["conflict"]],
                "destinations": {name: _jsonable(d) for name, d in deliveries["destinations"].items()},
            },
            "reconciliation": reconciliation,
        }
        return 200, body

    def _reconciliation_stats(self) -> dict[str, Any]:
        """The last runs, and the webhooks Zoho failed to deliver next to the router's own refusals."""
        if self._reconciliation is None:
            return {}
        return {
            "runs": [_jsonable(run.summary()) for run in self._reconciliation.recent_runs(5)],
            "zoho_webhook_failures": {
                key: [_jsonable(r) for r in value] if isinstance(value, list) else value
                for key, value in self._reconciliation.failures().items()
            },
            "router_rejections_24h": self._reconciliation.rejections(),
        }


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
        health_cache_seconds=settings.health_cache_seconds,
        reconciliation=ReconcileStore(connection),
    )
