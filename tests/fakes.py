"""In-memory stand-ins for the verifier's ports (event log, queue publisher, credentials) and
the Zoho connector's shared state, for fast tests of their logic. The real adapters are tested
against real Postgres and moto's SQS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from devstack.samples import DEV_SECRETS, DEV_TOKENS
from event_router.deliver.zoho import AccessToken
from event_router.errors import DataRejected, QueueUnavailable, StorageUnavailable
from event_router.messages import EventMessage
from event_router.verify.signatures import WebhookCredentials


@dataclass
class InMemoryEventLog:
    """The event log as the verifier sees it: rows by (source, event id), and rejection counts."""

    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    refuses_values: bool = False
    writes: int = 0

    def record(self, event: EventMessage) -> bool:
        self._touch()
        if self.refuses_values:
            raise DataRejected("DatabaseError (SQLSTATE 22003)")
        key = (event.source, event.event_id)
        if key in self.rows:
            return False
        self.rows[key] = {"status": "received", "event": event}
        return True

    def mark_queued(self, event: EventMessage) -> None:
        self._touch()
        row = self.rows[(event.source, event.event_id)]
        if row["status"] == "received":
            row["status"] = "queued"

    def record_rejections(self, rows: list[dict[str, Any]]) -> None:
        self._touch()
        self.rejections.extend(dict(row) for row in rows)

    def status(self, source: str, event_id: str) -> str | None:
        row = self.rows.get((source, event_id))
        return row["status"] if row else None

    def _touch(self) -> None:
        if self.down:
            raise StorageUnavailable("InterfaceError")
        self.writes += 1


@dataclass
class InMemoryPublisher:
    """The module queues: messages in the order they were published."""

    published: list[EventMessage] = field(default_factory=list)
    down: bool = False
    raises: Exception | None = None

    def publish(self, event: EventMessage) -> None:
        if self.raises is not None:
            raise self.raises
        if self.down:
            raise QueueUnavailable("EndpointConnectionError")
        self.published.append(event)


@dataclass
class FixedCredentials:
    """The development secrets (and tokens) of a source, fixed."""

    source: str = "zoho"

    def current(self) -> WebhookCredentials:
        tokens = [DEV_TOKENS[self.source]] if self.source in DEV_TOKENS else []
        return WebhookCredentials.of([DEV_SECRETS[self.source]], tokens)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InMemoryZohoState:
    """The Zoho connector's shared token and call slots, for one process: a lock for the refresh,
    no limit on calls (the Postgres-backed ones are tested against Postgres)."""

    def __init__(self) -> None:
        self.token: AccessToken | None = None
        self._lock = threading.Lock()

    def current(self) -> AccessToken | None:
        return self.token

    @contextmanager
    def refreshing(self) -> Iterator[None]:
        with self._lock:
            yield

    def save(self, token: AccessToken) -> None:
        self.token = token

    @contextmanager
    def slot(self) -> Iterator[None]:
        yield
