"""A student's rights over what the router holds (UK GDPR articles 15 and 17): ``PrivacyFunction``.

``{"action": "erase" | "export", "student": {<one identifier>}, "dry_run": false, "requested_by": "..."}``
with the student given by ``zoho_record_id``, ``student_number``, ``email`` or ``moodle_user_id``.

- **export** answers one JSON document with every row about the student: their mirror rows, the
  events that mention them with their payloads, and their deliveries.
- **erase** redacts every event payload that mentions them (the row, its status and dedup key
  stay), deletes their mirror rows, cancels their open deliveries and scrubs the rest, removes their
  messages from the dead-letter queue, and records one ``erasures`` row (identifiers hashed, counts
  per table). A dry run reports the same counts and changes nothing. Nothing about the student is
  logged: only counts.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from event_router.deliver.outbox import DeliveryMessage
from event_router.errors import QueueUnavailable
from event_router.messages import EventMessage, MoodleFacts
from event_router.observability import logger
from event_router.queues import DeadLetterQueue, sqs_client
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.privacy import PrivacyStore, Student
from event_router.verify.payloads import problems

MAX_DLQ_MESSAGES = 10_000


class StudentIdentifier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zoho_record_id: str | None = Field(None, min_length=1, max_length=200)
    student_number: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, min_length=3, max_length=320)
    moodle_user_id: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> StudentIdentifier:
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of zoho_record_id, student_number, email, moodle_user_id")
        return self

    def student(self) -> Student:
        return Student(
            zoho={self.zoho_record_id} if self.zoho_record_id else set(),
            numbers={self.student_number} if self.student_number else set(),
            emails={self.email.lower()} if self.email else set(),
            moodle={self.moodle_user_id} if self.moodle_user_id else set(),
        )


class PrivacyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["erase", "export"]
    student: StudentIdentifier
    dry_run: bool = False
    requested_by: str = Field("operator", min_length=1, max_length=200)  # who asked, for the erasures record


class Privacy:
    """Erasure and export for one student at a time."""

    def __init__(self, store: PrivacyStore, dead_letters: DeadLetterQueue | None) -> None:
        self._store = store
        self._dead_letters = dead_letters

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            request = PrivacyRequest.model_validate(payload)
        except ValidationError as invalid:
            return {"success": False, "error": "invalid_request", "details": problems(invalid, "input")}
        student = self._store.resolve(request.student.student())
        if request.action == "export":
            document = self._store.export(student)
            logger.info("student data exported", extra={"rows": {k: len(v) for k, v in document.items()}})
            return {"success": True, "action": "export", "student": _identifiers(student), "data": document}
        return self._erase(request, student)

    def _erase(self, request: PrivacyRequest, student: Student) -> dict[str, Any]:
        event_ids = self._store.event_ids(student)
        deliveries = self._store.deliveries(student)
        delivery_ids = set(deliveries)
        if request.dry_run:
            counts: dict[str, int] = {
                "events_redacted": len(event_ids),
                "deliveries_cancelled": sum(deliveries.values()),
                "deliveries_scrubbed": len(deliveries),
            }
            counts |= {f"{table}_deleted": n for table, n in self._store.count_mirror_rows(student).items()}
        else:
            with self._store.transaction():
                counts = self._store.erase(student, event_ids)
        counts["dead_letters_removed"] = self._dead_letter_sweep(student, delivery_ids, request.dry_run)
        erasure_id = None
        if not request.dry_run:  # a dry run changes nothing, not even the record of erasures
            hashed = {kind: [_sha256(kind, v) for v in values] for kind, values in _identifiers(student).items()}
            erasure_id = self._store.record_erasure(request.requested_by, hashed, counts, dry_run=False)
        message = "student erasure dry run" if request.dry_run else "student erased"
        logger.info(message, extra={"erasure_id": erasure_id, "counts": counts})
        answer = {"success": True, "action": "erase", "dry_run": request.dry_run, "erasure_id": erasure_id}
        return {**answer, "counts": counts}

    def _dead_letter_sweep(self, student: Student, delivery_ids: set[int], dry_run: bool) -> int:
        """Remove (or, in a dry run, count) the student's messages from the dead-letter queue."""
        if self._dead_letters is None:
            return 0
        values = [v.lower() for v in student.values()]
        matched, kept, examined = 0, [], 0
        try:
            while examined < MAX_DLQ_MESSAGES:
                messages = self._dead_letters.receive(min(10, MAX_DLQ_MESSAGES - examined))
                if not messages:
                    break
                for message in messages:
                    examined += 1
                    if _mentions(message.body, values, student.moodle, delivery_ids):
                        matched += 1
                        if not dry_run:
                            self._dead_letters.delete(message.receipt)
                            continue
                    kept.append(message.receipt)
        except QueueUnavailable as error:
            logger.error("dead-letter queue unavailable; erase again once it is back", error=str(error))
        finally:
            self._dead_letters.release(kept)
        return matched


def _mentions(body: str, values: list[str], moodle: set[int], delivery_ids: set[int]) -> bool:
    delivery = DeliveryMessage.from_json(body)
    if delivery is not None:
        return delivery.delivery_id in delivery_ids
    if any(v in body.lower() for v in values):
        return True
    event = EventMessage.from_json(body)
    return event is not None and isinstance(event.facts, MoodleFacts) and event.facts.student in moodle


def _identifiers(student: Student) -> dict[str, list[str]]:
    return {
        "zoho_record_id": sorted(student.zoho),
        "student_number": sorted(student.numbers),
        "email": sorted(student.emails),
        "moodle_user_id": [str(m) for m in sorted(student.moodle)],
    }


def _sha256(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def build_privacy(settings: Settings | None = None) -> Privacy:
    settings = settings or load_settings()
    connection = PreparedConnection(connection_params(settings, "privacy"), settings.db_idle_ping_seconds)
    dead_letters = (
        DeadLetterQueue(sqs_client(settings), settings.dead_letter_queue_url)
        if settings.dead_letter_queue_url
        else None
    )
    return Privacy(PrivacyStore(connection), dead_letters)
