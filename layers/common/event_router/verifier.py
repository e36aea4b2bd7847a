"""The verifier functions' composition root: settings in, a ready ``Verifier`` out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from event_router.credentials import credentials_for
from event_router.database import connection_params
from event_router.eventlog import PgEventLog
from event_router.http import HANDLED_ERRORS, accepted_response, error_response, webhook_request
from event_router.ingest import Ingestor
from event_router.payloads import prepare
from event_router.queues import SqsPublisher, sqs_client
from event_router.routes import Source, modules_of
from event_router.settings import Settings, load_settings


class Verifier:
    """API Gateway event in, API Gateway response out."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            receipt = self.ingestor.accept(webhook_request(event))
        except HANDLED_ERRORS as error:
            return error_response(error)
        return accepted_response(receipt.event_id, receipt.duplicate)


def build_verifier(source: Source, settings: Settings | None = None) -> Verifier:
    """Wire the verifier of ``source`` from the container's settings."""
    settings = settings or load_settings()
    prepare(source)
    queue_urls = settings.queue_urls()
    missing = [m for m in modules_of(source) if m not in queue_urls]
    if missing:
        raise ValueError(f"queue URL not configured for: {', '.join(missing)}")
    event_log = PgEventLog(connection_params(settings, f"{source}-verifier"), settings.db_idle_ping_seconds)
    publisher = SqsPublisher(sqs_client(settings), queue_urls)
    ingestor = Ingestor(
        source,
        credentials_for(source, settings),
        event_log,
        publisher,
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        rejection_flush_seconds=settings.rejection_flush_seconds,
    )
    return Verifier(ingestor)
