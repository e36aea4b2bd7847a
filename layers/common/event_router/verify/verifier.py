"""What a verifier does with one webhook (docs/api.md), and how a verifier function is wired.

authenticate → parse into an ``EventMessage`` → record in the event log (dedup) → publish to the
module queue → mark queued. The durability rule decides what happens when a store is down: the
event is accepted as long as one of the two has it. The event log and the queue are ports
(``EventLog``, ``Publisher``): Postgres and SQS when deployed, in-memory fakes in unit tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import Any, Protocol

from event_router.contract import WEBHOOK_ROUTES, ZOHO_NOTIFY_ROUTE, Route, Source, modules_of
from event_router.core.aws import sqs_client
from event_router.derived import channel_token
from event_router.errors import (
    DataRejected,
    InvalidPayload,
    PayloadTooLarge,
    QueueUnavailable,
    ServiceUnavailable,
    SignatureRejected,
    StorageUnavailable,
    UnknownRoute,
    WebhookRejected,
)
from event_router.messages import EventMessage
from event_router.observability import Metric, count, logger
from event_router.queues import SqsPublisher
from event_router.settings import Settings, load_settings
from event_router.store.connection import connection_params
from event_router.store.eventlog import PgEventLog
from event_router.verify.bodies import decode_body
from event_router.verify.credentials import CredentialSource, credentials_for
from event_router.verify.payloads import parse_event, parse_notification, prepare
from event_router.verify.shapes import DEFAULT_MAX_CLOCK_SKEW
from event_router.verify.signatures import DEFAULT_MAX_AGE, TOKEN_FIELD, any_equal, authenticate

MAX_BODY_BYTES = 256 * 1024
NOTIFICATION_REFUSALS_ROUTE = Route("zoho", "students")  # a refused Zoho notification names no module: counted here
MAX_PENDING_REJECTION_ROWS = 1000


@dataclass(frozen=True)
class WebhookRequest:
    """The parts of an HTTP request the verifier looks at; header names lowercase."""

    route: str
    headers: Mapping[str, str]
    body: bytes
    source_ip: str | None = None


@dataclass(frozen=True)
class Rejection:
    """One refused request: what is kept of it (never its body)."""

    source: str
    route: str
    cause: str
    source_ip: str | None
    body_size: int
    body_sha256: str
    at: datetime

    def key_fields(self) -> dict[str, Any]:
        return {"source": self.source, "route": self.route, "cause": self.cause}

    def last_seen(self) -> dict[str, Any]:
        return {
            "received_at": self.at,
            "source_ip": self.source_ip,
            "body_size": self.body_size,
            "body_sha256": self.body_sha256,
        }


@dataclass(frozen=True)
class Receipt:
    """What the sender is told: the event id, and whether it was new."""

    event_id: str
    duplicate: bool


@dataclass(frozen=True)
class NotificationReceipt:
    """What Zoho's Notification API is told: the events its callback became."""

    event_ids: tuple[str, ...]
    duplicates: int


class EventLog(Protocol):
    def record(self, event: EventMessage) -> bool: ...
    def mark_queued(self, event: EventMessage) -> None: ...
    def record_rejections(self, rows: list[dict[str, Any]]) -> None: ...


class Publisher(Protocol):
    def publish(self, event: EventMessage, *, logged: bool = True) -> None: ...


class Verifier:
    """Accepts the webhooks of one source."""

    def __init__(
        self,
        source: Source,
        credentials: CredentialSource,
        event_log: EventLog,
        publisher: Publisher,
        *,
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
        rejection_flush_seconds: float = 10.0,
        clock: Callable[[], float] = monotonic,
        signature_max_age: int = DEFAULT_MAX_AGE,
        untimed_signatures: bool = True,
    ):
        self.source = source
        self._signature_max_age = signature_max_age
        self._untimed_signatures = untimed_signatures
        self._credentials = credentials
        self._event_log = event_log
        self._publisher = publisher
        self._max_clock_skew = max_clock_skew
        self._rejections = RejectionTally(event_log, rejection_flush_seconds, clock)

    def accept(self, request: WebhookRequest) -> Receipt | NotificationReceipt:
        """Take one webhook; raises ``WebhookRejected`` (4xx) or ``ServiceUnavailable`` (503)."""
        notification = self.source == "zoho" and request.route == ZOHO_NOTIFY_ROUTE
        route = NOTIFICATION_REFUSALS_ROUTE if notification else WEBHOOK_ROUTES.get(request.route)
        if route is None or route.source != self.source:
            raise UnknownRoute(f"No {self.source} webhook route {request.route!r}")
        try:
            if len(request.body) > MAX_BODY_BYTES:
                raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB")
            if notification:
                receipts = [self._store(event) for event in self._notified_events(request)]
                return NotificationReceipt(tuple(r.event_id for r in receipts), sum(r.duplicate for r in receipts))
            event = self._verified_event(route, request)
            logger.set_correlation_id(event.event_id)
            return self._store(event)
        except WebhookRejected as rejection:
            self._reject(route, request, rejection)
            raise

    def _verified_event(self, route: Route, request: WebhookRequest) -> EventMessage:
        decoded: dict[str, Any] | None = None

        def token_in_body() -> str | None:
            # Only asked for when the sender did not sign and the source accepts shared tokens.
            nonlocal decoded
            try:
                decoded = decode_body(request.body)
            except InvalidPayload:
                return None  # an unreadable body carries no token: a 401, not a 400
            token = decoded.get(TOKEN_FIELD)
            return token if isinstance(token, str) else None

        # Authenticate first: an unauthenticated body is never parsed beyond looking for its token.
        segment = request.route.rsplit("/", 1)[-1]
        method = authenticate(
            self.source,
            request.headers,
            request.body,
            self._credentials.current(),
            token_in_body,
            route=segment,
            max_age=self._signature_max_age,
            untimed=self._untimed_signatures,
        )
        fields = decoded if decoded is not None else decode_body(request.body)
        # A shared token is a secret: it is never stored with the payload.
        fields.pop(TOKEN_FIELD, None)
        return parse_event(
            self.source,
            route.module,
            fields,
            received_at=datetime.now(UTC),
            max_clock_skew=self._max_clock_skew,
            auth_method=method,
        )

    def _notified_events(self, request: WebhookRequest) -> list[EventMessage]:
        """Zoho's Notification API: the channel's token (derived from the webhook secret) is checked
        in constant time, then each record id becomes an event of its own, fetched by the processor."""
        try:
            fields = decode_body(request.body)
        except InvalidPayload:
            raise SignatureRejected("notification body unreadable", cause="invalid_token") from None
        token = fields.pop(TOKEN_FIELD, None)  # the channel's secret: never stored
        expected = [channel_token(secret).encode() for secret in self._credentials.current().secrets]
        if not isinstance(token, str) or not any_equal(token.encode(), expected):
            raise SignatureRejected("notification token mismatch", cause="invalid_token")
        return parse_notification(fields, received_at=datetime.now(UTC), max_clock_skew=self._max_clock_skew)

    def _store(self, event: EventMessage) -> Receipt:
        logged: bool | None
        try:
            logged = self._event_log.record(event)
        except DataRejected as error:  # a value our validation let through and Postgres refuses
            logger.error("event log refused the event's values", error=str(error))
            problem = f"holds a value the event log cannot store ({error})"
            raise InvalidPayload([{"field": "body", "problem": problem}]) from None
        except StorageUnavailable as error:
            logged = None
            logger.error("event log unavailable; queueing without a log row", error=str(error))
            count(Metric.EVENT_LOG_UNAVAILABLE, source=event.source, module=event.module)
        if logged is False:
            logger.info("duplicate event ignored", event_module=event.module)
            count(Metric.DUPLICATE, source=event.source, module=event.module)
            return Receipt(event.event_id, duplicate=True)
        try:
            self._publisher.publish(event, logged=logged is not None)
        except Exception as error:  # noqa: BLE001 - once the row is written, no failure may lose the event
            reason = str(error) if isinstance(error, QueueUnavailable) else f"unexpected {type(error).__name__}"
            count(Metric.QUEUE_UNAVAILABLE, source=event.source, module=event.module)
            if logged is None:
                logger.error("event log and queue both unavailable; asking the sender to retry", error=reason)
                raise ServiceUnavailable("Neither the event log nor the queue is reachable") from None
            logger.error("could not queue the event; it stays received until the sweep queues it", error=reason)
        else:
            if logged:
                self._mark_queued(event)
        logger.info("event accepted", event_module=event.module, event_type=event.event_type, logged=bool(logged))
        count(Metric.ACCEPTED, source=event.source, module=event.module)
        return Receipt(event.event_id, duplicate=False)

    def _mark_queued(self, event: EventMessage) -> None:
        try:
            self._event_log.mark_queued(event)
        except StorageUnavailable as error:
            # Harmless: the sweep re-queues the row and the processor ignores a completed event.
            logger.warning("could not mark the event queued", error=str(error))

    def _reject(self, route: Route, request: WebhookRequest, rejection: WebhookRejected) -> None:
        logger.warning("webhook rejected", cause=rejection.cause, route=request.route, body_size=len(request.body))
        count(Metric.REJECTED, source=route.source, module=route.module, cause=rejection.cause)
        self._rejections.add(
            Rejection(
                source=route.source,
                route=request.route,
                cause=rejection.cause,
                source_ip=request.source_ip,
                body_size=len(request.body),
                body_sha256=hashlib.sha256(request.body).hexdigest(),
                at=datetime.now(UTC),
            )
        )


class RejectionTally:
    """Refused requests, counted per (minute, source, route, cause) and written in one statement at most
    every ``flush_seconds`` per container, so a flood of forged requests costs a bounded number of
    database writes. Counts not yet written when a container ends are lost; the ``Rejected`` metric
    counts every one."""

    def __init__(self, event_log: EventLog, flush_seconds: float, clock: Callable[[], float] = monotonic) -> None:
        self._event_log = event_log
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._next_flush = 0.0
        self._pending: dict[tuple[datetime, str, str, str], dict[str, Any]] = {}

    def add(self, rejection: Rejection) -> None:
        minute = rejection.at.replace(second=0, microsecond=0)
        key = (minute, rejection.source, rejection.route, rejection.cause)
        row = self._pending.get(key)
        if row is None:
            if len(self._pending) >= MAX_PENDING_REJECTION_ROWS:
                return  # Postgres has been down for a while; the metric still counts it
            row = self._pending[key] = {"minute": minute, "count": 0, **rejection.key_fields()}
        row |= {"count": row["count"] + 1, **rejection.last_seen()}
        now = self._clock()
        if now < self._next_flush:
            return
        self._next_flush = now + self._flush_seconds
        try:
            self._event_log.record_rejections(list(self._pending.values()))
        except StorageUnavailable as error:
            logger.warning("could not record rejected requests", error=str(error))
            return
        self._pending.clear()


def build_verifier(settings: Settings | None = None) -> Verifier:
    """Wire the verifier of ``SOURCE`` from the container's settings: Postgres, SQS, its secrets."""
    settings = settings or load_settings()
    if settings.source is None:
        raise ValueError("SOURCE is not set (zoho or moodle)")
    source = settings.source
    prepare(source)
    queue_urls = settings.queue_urls()
    missing = [m for m in modules_of(source) if m not in queue_urls]
    if missing:
        raise ValueError(f"queue URL not configured for: {', '.join(missing)}")
    event_log = PgEventLog(connection_params(settings, f"{source}-verifier"), settings.db_idle_ping_seconds)
    return Verifier(
        source,
        credentials_for(source, settings),
        event_log,
        SqsPublisher(sqs_client(settings), queue_urls),
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        rejection_flush_seconds=settings.rejection_flush_seconds,
        signature_max_age=settings.signature_max_age_seconds,
        untimed_signatures=settings.untimed_signatures == "accept",
    )
