"""In-memory stand-ins for the verifier's ports (event log, queue publisher, credentials), the Zoho
connector's shared state and the delivery stage's ports, for fast tests of their logic. The real
adapters are tested against real Postgres and moto's SQS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from devstack.samples import DEV_SECRETS, DEV_TOKENS
from event_router.contract import DONE_DELIVERIES
from event_router.deliver.zoho.client import AccessToken
from event_router.errors import DataRejected, QueueUnavailable, StorageUnavailable
from event_router.messages import EventMessage
from event_router.store.deliveries import Delivery, Intent, Link, Outcome
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
    unlogged: list[str] = field(default_factory=list)  # the ids of events published as never logged
    down: bool = False
    raises: Exception | None = None

    def publish(self, event: EventMessage, *, logged: bool = True) -> None:
        if self.raises is not None:
            raise self.raises
        if self.down:
            raise QueueUnavailable("EndpointConnectionError")
        self.published.append(event)
        if not logged:
            self.unlogged.append(event.event_id)


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


@dataclass
class InMemoryDeliveries:
    """The delivery ports (``deliver/ports.py``) in memory: the deliveries, the destinations' state and
    the mirror rows a deliverer reads, with the semantics of ``store/deliveries.py``."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    students: dict[str, tuple[dict[str, Any], Any]] = field(default_factory=dict)  # zoho id → (data, deleted at)
    enrolments: dict[str, tuple[str | None, str | None, str | None, dict[str, Any], Any]] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    courses: dict[str, int] = field(default_factory=dict)
    grades: dict[tuple[int, int], tuple[Any, int | None, str | None, int | None]] = field(default_factory=dict)
    locked: list[tuple[str, ...]] = field(default_factory=list)  # the targets of each lock taken

    def add(self, destination: str, action: str, target_key: str, status: str = "pending") -> int:
        delivery_id = len(self.rows) + 1
        self.rows[delivery_id] = {
            "destination": destination,
            "action": action,
            "target_key": target_key,
            "status": status,
            "attempts": 0,
        }
        return delivery_id

    def status(self, delivery_id: int) -> str:
        return str(self.rows[delivery_id]["status"])

    # ------------------------------------------------------------ Ledger

    def load(self, delivery_id: int) -> Delivery | None:
        row = self.rows.get(delivery_id)
        if row is None:
            return None
        return Delivery(
            delivery_id, row["destination"], row["action"], row["target_key"], row["status"], row["attempts"]
        )

    @contextmanager
    def target_lock(self, *deliveries: Delivery) -> Iterator[None]:
        self.locked.append(tuple(sorted(d.target_key for d in deliveries)))
        yield

    def supersede(self, delivery: Delivery) -> bool:
        row = self.rows[delivery.id]
        newer = any(
            other_id > delivery.id
            and (other["destination"], other["action"], other["target_key"])
            == (row["destination"], row["action"], row["target_key"])
            and other["status"] in ("pending", "waiting", "paused")
            for other_id, other in self.rows.items()
        )
        if newer and row["status"] not in DONE_DELIVERIES:
            row["status"] = "superseded"
            return True
        return False

    def settle(self, delivery: Delivery, outcome: Outcome) -> None:
        row = self.rows[delivery.id]
        if row["status"] in DONE_DELIVERIES:
            return
        row.update(
            status=str(outcome.status), result=outcome.result, error=outcome.error, waiting_on=outcome.waiting_on
        )
        row["attempts"] += 1 if outcome.attempted else 0

    def requeue(
        self, statuses: list[str], destination: str | None = None, ids: list[int] | None = None, max_rows: int = 1000
    ) -> list[tuple[int, str]]:
        found = [
            (i, str(row["destination"]))
            for i, row in sorted(self.rows.items())
            if row["status"] in statuses and destination in (None, row["destination"]) and (ids is None or i in ids)
        ][:max_rows]
        for i, _ in found:
            self.rows[i].update(status="pending", waiting_on=None, error=None)
        return found

    def paused(self, name: str) -> str | None:
        return self.destinations.get(name, {}).get("paused")

    def pause(self, name: str, reason: str) -> None:
        self.destinations.setdefault(name, {})["paused"] = reason

    def resume(self, name: str) -> bool:
        return self.destinations.setdefault(name, {}).pop("paused", None) is not None

    def record_check(self, name: str, identity: dict[str, Any], checks: dict[str, Any]) -> None:
        self.destinations.setdefault(name, {}).update(identity=identity, checks=checks)

    def identity(self, name: str) -> dict[str, Any]:
        return dict(self.destinations.get(name, {}).get("identity", {}))

    # ------------------------------------------------------------ what the deliverers read and learn

    def student(self, zoho_id: str) -> tuple[dict[str, Any], Any, int | None] | None:
        if zoho_id not in self.students:
            return None
        data, deleted_at = self.students[zoho_id]
        link = self.links.get(zoho_id)
        return data, deleted_at, link.moodle_user_id if link else None

    def enrolment(self, zoho_id: str) -> tuple[str | None, str | None, str | None, dict[str, Any], Any] | None:
        return self.enrolments.get(zoho_id)

    def link(self, zoho_id: str) -> Link | None:
        return self.links.get(zoho_id)

    def claim(self, zoho_id: str, link: Link) -> bool:
        if any(s != zoho_id and held.moodle_user_id == link.moodle_user_id for s, held in self.links.items()):
            return False
        self.links[zoho_id] = link
        return True

    def release(self, zoho_id: str) -> None:
        self.links.pop(zoho_id, None)

    def course_id(self, idnumber: str) -> int | None:
        return self.courses.get(idnumber)

    def remember_course(self, idnumber: str, course_id: int) -> None:
        self.courses[idnumber] = course_id

    def forget_course(self, idnumber: str) -> None:
        self.courses.pop(idnumber, None)

    def course_idnumber(self, course_id: int) -> str | None:
        return next((idnumber for idnumber, known in self.courses.items() if known == course_id), None)

    def wake(self, waiting_on: str) -> list[tuple[int, str]]:
        woken = [
            (i, str(row["destination"]))
            for i, row in sorted(self.rows.items())
            if row["status"] == "waiting" and row.get("waiting_on") == waiting_on
        ]
        for i, _ in woken:
            self.rows[i].update(status="pending", waiting_on=None, error=None)
        return woken

    def create(self, intent: Intent) -> tuple[int, str]:
        return self.add(intent.destination, intent.action, intent.target_key), intent.destination

    def moodle_grade(self, user: int, item: int) -> tuple[Any, int | None, str | None, int | None] | None:
        return self.grades.get((user, item))

    def student_of_moodle_user(self, user: int) -> tuple[str, str | None] | None:
        for zoho_id, link in self.links.items():
            data, deleted_at = self.students.get(zoho_id, ({}, None))
            if link.moodle_user_id == user and deleted_at is None:
                return zoho_id, data.get("Name")
        return None
