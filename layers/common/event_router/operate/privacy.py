"""A student's rights over what the router holds (UK GDPR articles 15 and 17): ``PrivacyFunction``,
behind ``POST /api/v1/privacy`` (IAM-signed; docs/operate.md says who may call it).

``{"action": "erase" | "export" | "history", "student": {<one identifier>}, "dry_run": false,
"requested_by": "<your reference>"}`` with the student given by ``zoho_record_id``, ``student_number``,
``email`` or ``moodle_user_id``. Every request is recorded in ``privacy_requests`` with the caller's
IAM identity as API Gateway verified it; **history** lists those records (who exported or erased).

- **export** answers one JSON document with every row about the student: their mirror rows, the
  events that mention them with their payloads, and their deliveries.
- **erase** redacts every event payload that mentions them (the row, its status and dedup key
  stay), deletes their mirror rows, cancels their open deliveries and scrubs the rest, removes their
  messages from the dead-letter queue, and records one ``erasures`` row (identifiers hashed, counts
  per table). A dry run reports the same counts and changes nothing. Nothing about the student is
  logged: only counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from event_router.core.aws import sqs_client
from event_router.core.problems import problems
from event_router.deliver.outbox import DeliveryMessage
from event_router.erasure import ErasureKey, Identity, erasure_key, row_identities
from event_router.errors import InvalidPayload, QueueUnavailable
from event_router.mapping import FieldMapping, field_mapping
from event_router.messages import EventMessage, MoodleFacts
from event_router.observability import logger
from event_router.process.batch import read_event
from event_router.process.processor import RULES
from event_router.process.rules import MirrorWrite
from event_router.queues import DeadLetterQueue
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.privacy import PrivacyStore, Student
from event_router.verify.apigateway import json_response, webhook_request

MAX_DLQ_MESSAGES = 10_000
EMPTY_RECEIVES = 3  # long-polled empty answers in a row before the sweep gives up on what it expected
NO_KEY = {"field": "ERASURE_KEY_SECRET_ARN", "problem": "is not set: erasures are recorded with a keyed hash"}


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

    action: Literal["erase", "export", "history"]
    student: StudentIdentifier | None = None  # required to erase or export; narrows a history
    dry_run: bool = False
    # The caller's own reference (a subject-access ticket), recorded as given next to the identity
    # API Gateway verified; it never stands for who asked.
    requested_by: str | None = Field(None, min_length=1, max_length=200)
    limit: int = Field(50, ge=1, le=500)  # how many requests a history lists

    @model_validator(mode="after")
    def _student_to_act_on(self) -> PrivacyRequest:
        if self.action != "history" and self.student is None:
            raise ValueError(f"{self.action} needs the student")
        return self


@dataclass(frozen=True)
class Caller:
    """Who sent a privacy request, as API Gateway's IAM authorisation verified them."""

    arn: str
    request_id: str | None = None

    @classmethod
    def of(cls, event: dict[str, Any]) -> Caller | None:
        """The caller of an HTTP API request signed with IAM; None for anything else (a direct invoke)."""
        context = event.get("requestContext")
        if not isinstance(context, dict):
            return None
        iam = (context.get("authorizer") or {}).get("iam") or {}
        arn = iam.get("userArn") if isinstance(iam, dict) else None
        return cls(arn, context.get("requestId")) if isinstance(arn, str) and arn else None


STATUS = {"invalid_request": 400, "erasure_key_missing": 503}
THROUGH_THE_ROUTE = (
    "privacy requests are accepted only as POST /api/v1/privacy signed with IAM, so that who asked is "
    "known and recorded (docs/operate.md)"
)


class Privacy:
    """Erasure and export for one student at a time."""

    def __init__(
        self,
        store: PrivacyStore,
        dead_letters: DeadLetterQueue | None,
        key: Callable[[], ErasureKey | None],
        mapping: FieldMapping | None = None,
    ) -> None:
        self._store = store
        self._mapping = mapping  # the college's Zoho field names, as the rules read them
        self._dead_letters = dead_letters
        self._key = key  # the erasure register's (event_router/erasure.py)

    def serve(self, event: dict[str, Any]) -> dict[str, Any]:
        """An HTTP API request to ``POST /api/v1/privacy``: the caller from API Gateway's IAM
        authorisation, the request from the body; anything else (a direct invoke) is refused."""
        caller = Caller.of(event)
        if caller is None:
            logger.warning("privacy request refused: not signed through the privacy route")
            return json_response(403, {"success": False, "error": "iam_required", "message": THROUGH_THE_ROUTE})
        try:
            payload = json.loads(webhook_request(event).body or b"null")
        except (ValueError, InvalidPayload):
            payload = None
        if not isinstance(payload, dict):
            details = [{"field": "body", "problem": "must be a JSON object"}]
            return json_response(400, {"success": False, "error": "invalid_request", "details": details})
        answer = self.run(payload, caller)
        return json_response(200 if answer["success"] else STATUS.get(answer["error"], 400), answer)

    def run(self, payload: dict[str, Any], caller: Caller) -> dict[str, Any]:
        try:
            request = PrivacyRequest.model_validate(payload)
        except ValidationError as invalid:
            return {"success": False, "error": "invalid_request", "details": problems(invalid, "input")}
        key = self._key()
        if key is None:  # every request is recorded with the student's identifiers as keyed hashes
            return {"success": False, "error": "erasure_key_missing", "details": [NO_KEY]}
        logger.info("privacy request", caller=caller.arn, action=request.action, dry_run=request.dry_run)
        if request.action == "history":
            return self._history(request, key, caller)
        assert request.student is not None
        student = self._store.resolve(request.student.student())
        if request.action == "export":
            with self._store.transaction():  # no export leaves unrecorded
                document = self._store.export(student)
                self._record(caller, request, key, student)
            logger.info("student data exported", extra={"rows": {k: len(v) for k, v in document.items()}})
            return {"success": True, "action": "export", "student": _identifiers(student), "data": document}
        return self._erase(request, student, key, caller)

    def _record(
        self,
        caller: Caller,
        request: PrivacyRequest,
        key: ErasureKey,
        student: Student | None,
        erasure: int | None = None,
    ) -> None:
        self._store.record_request(
            caller.arn,
            caller.request_id,
            request.action,
            dry_run=request.dry_run,
            reference=request.requested_by,
            digests=list(key.digests(student.identities())) if student is not None else [],
            erasure_id=erasure,
        )

    def _history(self, request: PrivacyRequest, key: ErasureKey, caller: Caller) -> dict[str, Any]:
        """Who exported or erased, newest first: every request, or those about one student (matched
        by keyed hash, so the student need not exist any more)."""
        given = request.student.student() if request.student is not None else None
        digests = list(key.digests(given.identities())) if given is not None else []
        with self._store.transaction():
            found = self._store.requests(digests, request.limit)
            self._record(caller, request, key, given)  # reading the record is recorded too
        listed = [{**r, "requested_at": r["requested_at"].isoformat()} for r in found]
        return {"success": True, "action": "history", "requests": listed}

    def _erase(self, request: PrivacyRequest, student: Student, key: ErasureKey, caller: Caller) -> dict[str, Any]:
        erasure_id = None
        if request.dry_run:
            deliveries = self._store.deliveries(student)
            counts: dict[str, int] = {
                "events_redacted": len(self._store.event_ids(student)),
                "deliveries_cancelled": sum(deliveries.values()),
                "deliveries_scrubbed": len(deliveries),
            }
            counts |= {f"{table}_deleted": n for table, n in self._store.count_mirror_rows(student).items()}
            self._record(caller, request, key, student)
        else:
            with self._store.transaction():
                self._store.lock_register()  # batches in flight finish first; later ones see the register
                deliveries = self._store.deliveries(student)
                counts = self._store.erase(student, self._store.event_ids(student), key)
                digests = key.digests(student.identities())
                hashed: dict[str, list[str]] = {}
                for digest, (kind, _) in sorted(digests.items()):
                    hashed.setdefault(kind, []).append(digest)
                erasure_id = self._store.record_erasure(caller.arn, hashed, counts, dry_run=False)
                self._store.register(list(digests), erasure_id)
                self._record(caller, request, key, student, erasure_id)
        sweep = self._dead_letter_sweep(student, set(deliveries), request.dry_run)
        counts |= {"dead_letters_removed": sweep.matched, "dead_letters_unread": sweep.unread}
        if erasure_id is not None:  # the sweep's figures join the record
            self._store.update_counts(erasure_id, counts)
        message = "student erasure dry run" if request.dry_run else "student erased"
        logger.info(message, extra={"erasure_id": erasure_id, "counts": counts})
        answer = {"success": True, "action": "erase", "dry_run": request.dry_run, "erasure_id": erasure_id}
        if sweep.unread:
            answer["warning"] = (
                f"{sweep.unread} dead-letter message(s) could not be read (in flight or SQS did not answer); "
                "the erasure register keeps them from applying, and erasing again removes them"
            )
        return {**answer, "counts": counts}

    def _dead_letter_sweep(self, student: Student, delivery_ids: set[int], dry_run: bool) -> DeadLetterSweep:
        """Remove (or, in a dry run, count) the student's messages from the dead-letter queue.

        The queue is read until every message it held when the sweep began has been seen (SQS's
        approximate count of visible and in-flight messages), with long polling, so that an empty
        answer means empty rather than "not on the servers sampled"; what could not be seen is
        reported as unread."""
        if self._dead_letters is None:
            return DeadLetterSweep(0, 0)
        identities = student.identities()
        matched, kept, examined, empty, expected = 0, [], 0, 0, 0
        try:
            expected = min(self._dead_letters.total(), MAX_DLQ_MESSAGES)
            while examined < expected and empty < EMPTY_RECEIVES:
                messages = self._dead_letters.receive(min(10, MAX_DLQ_MESSAGES - examined), wait_seconds=1)
                empty = 0 if messages else empty + 1
                for message in messages:
                    examined += 1
                    if _mentions(message.body, identities, delivery_ids, self._mapping):
                        matched += 1
                        if not dry_run:
                            self._dead_letters.delete(message.receipt)
                            continue
                    kept.append(message.receipt)
        except QueueUnavailable as error:
            logger.error("dead-letter queue unavailable; erase again once it is back", error=str(error))
            expected = max(expected, examined + 1)  # at least one message may be there, unread
        finally:
            self._dead_letters.release(kept)
        return DeadLetterSweep(matched, max(0, expected - examined))


@dataclass(frozen=True)
class DeadLetterSweep:
    matched: int  # the student's messages removed (or, in a dry run, found)
    unread: int  # messages the sweep expected but could not read


def _mentions(
    body: str, identities: set[Identity], delivery_ids: set[int], mapping: FieldMapping | None = None
) -> bool:
    """Whether a dead-letter message is about the student: a delivery of theirs, or an event whose
    record, or a mirror row it would write, names one of their identifiers whole."""
    delivery = DeliveryMessage.from_json(body)
    if delivery is not None:
        return delivery.delivery_id in delivery_ids
    event = read_event(body)
    return event is not None and bool(event_identities(event, mapping) & identities)


def event_identities(event: EventMessage, mapping: FieldMapping | None = None) -> set[Identity]:
    """Whom an event is about: its Zoho student record, the Moodle user of a Moodle event, and the
    identifiers of the mirror row its sync rule would write."""
    found: set[Identity] = set()
    if isinstance(event.facts, MoodleFacts):
        found.add(("moodle_user_id", str(event.facts.student)))
    elif event.module == "students":
        found.add(("zoho_record_id", event.record_id))
    try:
        change = RULES[event.module](event, mapping)
    except Exception:  # noqa: BLE001 - an event its rule cannot read names nobody more than the above
        return found
    if isinstance(change, MirrorWrite):
        found |= row_identities(change.table, {**change.key, **change.values})
    return found


def _identifiers(student: Student) -> dict[str, list[str]]:
    return {
        "zoho_record_id": sorted(student.zoho),
        "student_number": sorted(student.numbers),
        "email": sorted(student.emails),
        "moodle_user_id": [str(m) for m in sorted(student.moodle)],
    }


def build_privacy(settings: Settings | None = None) -> Privacy:
    settings = settings or load_settings()
    connection = PreparedConnection(connection_params(settings, "privacy"), settings.db_idle_ping_seconds)
    dead_letters = (
        DeadLetterQueue(sqs_client(settings), settings.dead_letter_queue_url)
        if settings.dead_letter_queue_url
        else None
    )
    return Privacy(PrivacyStore(connection), dead_letters, lambda: erasure_key(settings), field_mapping(settings))
