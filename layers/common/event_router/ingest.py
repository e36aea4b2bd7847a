"""What a verifier does with one webhook (SPEC §4 to §6).

verify → parse → record in the event log (dedup) → publish to the module queue
→ mark queued. The durability rule decides what happens when a store is down:
the event is accepted as long as one of the two has it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from event_router.credentials import CredentialSource
from event_router.errors import (
    InvalidPayload,
    PayloadTooLarge,
    QueueUnavailable,
    ServiceUnavailable,
    StorageUnavailable,
    UnknownRoute,
    WebhookRejected,
)
from event_router.observability import Metric, count, logger
from event_router.payloads import WebhookEvent, decode_body, parse_event
from event_router.routes import WEBHOOK_ROUTES, Route, Source
from event_router.signatures import TOKEN_FIELD, authenticate

MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class WebhookRequest:
    """The parts of an HTTP request the verifier looks at; header names lowercase."""

    route: str
    headers: Mapping[str, str]
    body: bytes
    source_ip: str | None = None


@dataclass(frozen=True)
class Receipt:
    """What the sender is told: the event id, and whether it was new."""

    event_id: str
    duplicate: bool


class EventLog(Protocol):
    def record(self, event: WebhookEvent) -> bool: ...
    def mark_queued(self, event: WebhookEvent) -> None: ...
    def record_rejection(
        self, *, source: str, route: str, cause: str, source_ip: str | None, body_size: int, body_sha256: str
    ) -> None: ...


class Publisher(Protocol):
    def publish(self, event: WebhookEvent) -> None: ...


class Ingestor:
    """Accepts the webhooks of one source."""

    def __init__(self, source: Source, credentials: CredentialSource, event_log: EventLog, publisher: Publisher):
        self.source = source
        self._credentials = credentials
        self._event_log = event_log
        self._publisher = publisher

    def accept(self, request: WebhookRequest) -> Receipt:
        """Take one webhook; raises ``WebhookRejected`` (4xx) or ``ServiceUnavailable`` (503)."""
        route = WEBHOOK_ROUTES.get(request.route)
        if route is None or route.source != self.source:
            raise UnknownRoute(f"No {self.source} webhook route {request.route!r}")
        try:
            event = self._verified_event(route, request)
        except WebhookRejected as rejection:
            self._reject(route, request, rejection)
            raise
        logger.set_correlation_id(event.event_id)
        return self._store(event)

    def _verified_event(self, route: Route, request: WebhookRequest) -> WebhookEvent:
        if len(request.body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB")
        fields: dict[str, Any] | None = None
        malformed: InvalidPayload | None = None
        try:
            fields = decode_body(request.body)
        except InvalidPayload as error:
            malformed = error
        # A shared token is a secret: it is read here and never stored with the payload.
        token = fields.pop(TOKEN_FIELD, None) if fields is not None else None
        authenticate(
            self.source,
            request.headers,
            request.body,
            self._credentials.current(),
            body_token=token if isinstance(token, str) else None,
        )
        if malformed is not None or fields is None:
            raise malformed or InvalidPayload([{"field": "body", "problem": "could not be read"}])
        return parse_event(self.source, route.module, fields)

    def _store(self, event: WebhookEvent) -> Receipt:
        logged: bool | None
        try:
            logged = self._event_log.record(event)
        except StorageUnavailable as error:
            logged = None
            logger.error("event log unavailable; queueing without a log row", error=str(error))
            count(Metric.EVENT_LOG_UNAVAILABLE, source=event.source, module=event.module)
        if logged is False:
            logger.info("duplicate event ignored", event_module=event.module)
            count(Metric.DUPLICATE, source=event.source, module=event.module)
            return Receipt(event.event_id, duplicate=True)
        try:
            self._publisher.publish(event)
        except QueueUnavailable as error:
            count(Metric.QUEUE_UNAVAILABLE, source=event.source, module=event.module)
            if logged is None:
                logger.error("event log and queue both unavailable; asking the sender to retry", error=str(error))
                raise ServiceUnavailable("Neither the event log nor the queue is reachable") from None
            logger.error("queue unavailable; the event stays received until the sweep queues it", error=str(error))
        else:
            if logged:
                self._mark_queued(event)
        logger.info("event accepted", event_module=event.module, event_type=event.event_type, logged=bool(logged))
        count(Metric.ACCEPTED, source=event.source, module=event.module)
        return Receipt(event.event_id, duplicate=False)

    def _mark_queued(self, event: WebhookEvent) -> None:
        try:
            self._event_log.mark_queued(event)
        except StorageUnavailable as error:
            # Harmless: the sweep re-queues the row and the processor ignores a completed event.
            logger.warning("could not mark the event queued", error=str(error))

    def _reject(self, route: Route, request: WebhookRequest, rejection: WebhookRejected) -> None:
        logger.warning("webhook rejected", cause=rejection.cause, route=request.route, body_size=len(request.body))
        count(Metric.REJECTED, source=route.source, module=route.module, cause=rejection.cause)
        try:
            self._event_log.record_rejection(
                source=route.source,
                route=request.route,
                cause=rejection.cause,
                source_ip=request.source_ip,
                body_size=len(request.body),
                body_sha256=hashlib.sha256(request.body).hexdigest(),
            )
        except StorageUnavailable as error:
            logger.warning("could not record the rejected request", error=str(error))
