"""Processors (docs/operate.md): consume a module queue, mirror each event exactly once, report failures.

One invocation handles one SQS batch, in one transaction when all goes well:

1. the batch is claimed in the event log in one statement (``MirrorStore.claim``);
2. each event's sync rule plans its change from the message's facts, and one statement per kind
   of change applies the changes and completes their events; one more settles the rest;
3. the transaction commits: one commit for the batch. If any statement fails, the transaction is
   rolled back and the batch is done again event by event, each in its own transaction, so that
   one poison event cannot hold back the others;
4. Powertools' batch processing turns the outcomes into the partial batch response. An event that
   can never apply ends ``failed`` and is not retried; any other failure is a batch item failure,
   postponed by the back-off (``backoff.py``), and after the last receive the queue's redrive
   policy moves it to the dead-letter queue (its row: ``dead_lettered``).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from event_router.contract import Module
from event_router.deliver.intents import Identity, delivery_for, is_echo
from event_router.deliver.outbox import DeliveryPublisher
from event_router.deliver.records import ZohoRecords, with_record, zoho_client
from event_router.erasure import ErasureKey, erasure_key, row_identities
from event_router.errors import DataRejected, DeliveryError, Problem, StorageUnavailable
from event_router.messages import EventMessage, ZohoRecord
from event_router.observability import Metric, count, emit, logger
from event_router.process.backoff import Backoff, NoBackoff, VisibilityBackoff, receive_count
from event_router.process.rules import (
    CannotApply,
    Change,
    LogOnly,
    MirrorWrite,
    enrollments,
    grades,
    payments,
    students,
)
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import DeliveryStore
from event_router.store.mirror import Claim, MirrorStore, Outcome, Write
from event_router.verify.payloads import problems

RULES = {
    "students": students.plan,
    "enrollments": enrollments.plan,
    "grades": grades.plan,
    "payments": payments.plan,
}
_METRICS = {
    "completed": Metric.PROCESSED,
    "skipped": Metric.SKIPPED,
    "failed": Metric.FAILED,
    "settled": Metric.REDELIVERED,
}


class EventNotProcessed(Exception):
    """This event failed for a reason that may pass; SQS will deliver it again."""


class Deliveries(Protocol):
    """Where the deliveries a batch wrote are sent (the destinations' queues)."""

    def enabled(self, destination: str) -> bool: ...
    def send(self, deliveries: list[tuple[int, str]]) -> None: ...


class RecordSource(Protocol):
    """Where a Zoho record is read when its event named it without its fields (Zoho CRM itself)."""

    def fetch(self, module: Module, ids: list[str]) -> dict[str, dict[str, Any]]: ...


class NoDeliveries:
    def enabled(self, destination: str) -> bool:
        return False

    def send(self, deliveries: list[tuple[int, str]]) -> None:
        return None


class ModuleProcessor:
    """The processor of one module's queue."""

    def __init__(
        self,
        module: Module,
        store: MirrorStore,
        max_receive_count: int,
        backoff: Backoff | None = None,
        deliveries: Deliveries | None = None,
        router: Callable[[], Identity] = Identity,
        records: RecordSource | None = None,
        erasure: Callable[[], ErasureKey | None] = lambda: None,
    ) -> None:
        self.module = module
        self.store = store
        self.plan = RULES[module]
        self.max_receive_count = max_receive_count
        self.backoff = backoff or NoBackoff()
        self.deliveries = deliveries or NoDeliveries()
        self.router = router
        self.records = records  # where the records of events that name them without fields are fetched
        self.erasure = erasure  # the erasure register's key (None: nobody can have been erased)
        self._batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def write(self, claim: Claim, event: EventMessage, change: MirrorWrite) -> Write:
        """The mirror change of an event with what it calls for: a delivery, unless it is an echo."""
        if is_echo(event, self.router()):
            return Write(claim, event, change, notes={"echo": True})
        return Write(claim, event, change, delivery_for(event, change, self.deliveries.enabled))

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """An SQS event in, the partial batch response out."""
        batch = _Batch(self, event.get("Records", []))
        batch.run()
        self.deliveries.send(batch.deliveries)  # after the commit: the rows exist before their messages
        self.backoff.postpone(batch.retried())
        try:
            response = process_partial_response(
                event=event, record_handler=batch.outcome, processor=self._batch_processor, context=context
            )
        finally:
            batch.report()
        return dict(response)


Decision = MirrorWrite | tuple[str, dict[str, Any], str | None]  # a change to apply, or (status, result, error)


class _Batch:
    """One invocation's events, their claims and outcomes (a status, or the error to retry on)."""

    def __init__(self, processor: ModuleProcessor, records: list[dict[str, Any]]) -> None:
        self._processor = processor
        self._store = processor.store
        self._records = records
        self._events = {r["messageId"]: EventMessage.from_json(r["body"]) for r in records}
        self._claims: dict[tuple[str, str], Claim] = {}
        self._outcomes: dict[str, str | EventNotProcessed] = {}
        self.deliveries: list[tuple[int, str]] = []  # written by this batch: (delivery id, destination)
        self._unfetched: dict[str, str] = {}  # message id → why its record could not be fetched
        self._timings: defaultdict[tuple[Metric, str], list[float]] = defaultdict(list)  # (metric, source) → ms
        self._key: ErasureKey | None = None  # the erasure register's, read once per batch

    def run(self) -> None:
        """Settle every event: the whole batch in one transaction, or event by event if that fails."""
        self._fetch()
        # The rules are pure: every decision is made before the database is touched.
        decisions = {m: self._decide(e) for m, e in self._events.items() if e is not None}
        events = [e for m, e in self._events.items() if e is not None and m not in self._unfetched]
        self._key = self._processor.erasure()
        # One statement is a transaction by itself: no BEGIN and COMMIT, unless the erasure register
        # is read: its lock must last until the writes commit.
        guarded = self._key is not None and any(isinstance(d, MirrorWrite) for d in decisions.values())
        together = len(events) > 1 or guarded
        started = time.monotonic()
        self._store.begin_batch()
        try:
            with self._store.connection.transaction(needed=together):
                self._claims = self._store.claim(events)
                self._outcomes = self._settle_together(decisions)
        except Exception as error:  # noqa: BLE001 - one event's failure must not fail the others
            reason = str(error) if isinstance(error, StorageUnavailable) else f"unexpected {type(error).__name__}"
            logger.warning("batch transaction failed; settling its events one by one", error=reason)
            if together:
                self._claims = {}  # rolled back with the rest
            self._outcomes = {r["messageId"]: self._settle_alone(r, decisions) for r in self._records}
            return
        settled = [e for m, e in self._events.items() if e is not None and not _retried(self._outcomes[m])]
        if settled:  # one figure for the batch: its events shared the statements
            per_event = (time.monotonic() - started) * 1000 / len(settled)
            for source in {e.source for e in settled}:
                self._timings[Metric.PROCESSING_TIME, source].append(per_event)

    def _settle_together(self, decisions: dict[str, Decision]) -> dict[str, str | EventNotProcessed]:
        """The fast path: every change of one kind in one statement, every other ending in one more."""
        outcomes: dict[str, str | EventNotProcessed] = {}
        claimed: dict[str, Claim] = {}
        claimed_events: dict[str, tuple[EventMessage, Claim, Decision]] = {}
        writes: list[Write] = []
        settles: list[Outcome] = []
        for message_id, event in self._events.items():
            if event is None:
                outcomes[message_id] = EventNotProcessed("message body is not an event")
                continue
            if message_id in self._unfetched:
                outcomes[message_id] = EventNotProcessed(self._unfetched[message_id])
                continue
            claim = self._claims.get((event.source, event.event_id))
            if claim is None:
                outcomes[message_id] = "settled"  # already completed, skipped or failed
                continue
            claimed[message_id] = claim
            claimed_events[message_id] = (event, claim, decisions[message_id])
        erased = self._erased(claimed_events)
        for message_id, (event, claim, decision) in claimed_events.items():
            if message_id in erased:
                continue
            if isinstance(decision, MirrorWrite):
                writes.append(self._processor.write(claim, event, decision))
            else:
                settles.append((claim, *decision))
        statuses, deliveries = self._store.apply_many(writes)
        statuses |= self._store.settle_many(settles)
        statuses |= self._store.forget(list(erased.values()))
        self.deliveries = deliveries
        for message_id, claim in claimed.items():
            outcomes[message_id] = statuses.get(claim.log_id, "settled")
        return outcomes

    def _settle_alone(self, record: dict[str, Any], decisions: dict[str, Decision]) -> str | EventNotProcessed:
        """The slow path: one event, its claim and its change each a statement of their own (the claim
        commits on its own, so the attempt counts even if the change fails); a failure is this event's alone."""
        message_id = record["messageId"]
        event = self._events[message_id]
        if event is None:
            return EventNotProcessed("message body is not an event")
        if message_id in self._unfetched:
            return EventNotProcessed(self._unfetched[message_id])
        started = time.monotonic()
        claim: Claim | None = None
        try:
            claim = self._claims.get((event.source, event.event_id))
            if claim is None:
                claim = self._store.claim([event]).get((event.source, event.event_id))
                if claim is None:
                    return "settled"  # already completed, skipped or failed
                self._claims[event.source, event.event_id] = claim
            status = self._apply_one(claim, event, decisions[message_id])
        except Exception as error:  # noqa: BLE001 - whatever it is, it is this event's failure alone
            reason = str(error) if isinstance(error, StorageUnavailable) else f"unexpected {type(error).__name__}"
            if claim is not None:
                self._release(claim, reason, last=receive_count(record) >= self._processor.max_receive_count)
            return EventNotProcessed(reason)
        self._timings[Metric.PROCESSING_TIME, event.source].append((time.monotonic() - started) * 1000)
        return status

    def _apply_one(self, claim: Claim, event: EventMessage, decision: Decision) -> str:
        if not isinstance(decision, MirrorWrite):
            return self._store.settle_many([(claim, *decision)]).get(claim.log_id, "settled")
        try:
            with self._store.connection.transaction(needed=self._key is not None):
                erased = self._erased({"one": (event, claim, decision)})
                if erased:
                    return self._store.forget(list(erased.values())).get(claim.log_id, "settled")
                statuses, deliveries = self._store.apply_many([self._processor.write(claim, event, decision)])
            self.deliveries += deliveries
        except DataRejected as refused:
            # The database will refuse these values every time: park the event, do not retry it.
            error = f"the database refused a value of this event ({refused})"
            statuses = self._store.settle_many([(claim, "failed", {"reason": "refused_by_database"}, error)])
        return statuses.get(claim.log_id, "settled")

    def _erased(
        self, candidates: dict[str, tuple[EventMessage, Claim, Decision]]
    ) -> dict[str, tuple[Claim, str | None]]:
        """Which of these claimed events would write about an identity erased after the event's own
        time (the source's timestamp, else its arrival): message id → (claim, the new event id when
        theirs names the student). Those are forgotten, not applied (event_router/erasure.py)."""
        if self._key is None:
            return {}
        about = {
            m: self._key.digests(row_identities(d.table, {**d.key, **d.values}))
            for m, (_, _, d) in candidates.items()
            if isinstance(d, MirrorWrite)
        }
        digests = sorted({digest for found in about.values() for digest in found})
        if not digests:
            return {}
        register = self._store.erased(digests)
        erased: dict[str, tuple[Claim, str | None]] = {}
        for message_id, found in about.items():
            event, claim, _ = candidates[message_id]
            at = event.occurred_at.timestamp() * 1000 if event.occurred_at is not None else claim.received_ms
            if any(register.get(digest, -1) >= at for digest in found):
                names = set(re.split(r"[^A-Za-z0-9]+", event.event_id)) & {v for _, v in found.values()}
                erased[message_id] = (claim, f"erased-{self._key.label(event.event_id)}" if names else None)
        return erased

    def _fetch(self) -> None:
        """Read from Zoho the records that events name without their fields (an ids-only notification,
        Zoho's minimal webhook), up to 100 a call, so the rules see them whole. A record Zoho no
        longer has stays without fields (the rule skips it); if Zoho cannot answer, those events are
        retried."""
        source = self._processor.records
        if source is None:
            return
        wanted = {
            m: e
            for m, e in self._events.items()
            if e is not None
            and isinstance(e.facts, ZohoRecord)
            and e.facts.fields is None
            and e.event_type != "delete"
            and e.module == self._processor.module
        }
        if not wanted:
            return
        try:
            found = source.fetch(self._processor.module, sorted({e.record_id for e in wanted.values()}))
        except DeliveryError as error:
            reason = f"could not read the record from Zoho ({getattr(error, 'code', type(error).__name__)})"
            self._unfetched = dict.fromkeys(wanted, reason)
            return
        for message_id, event in wanted.items():
            record = found.get(event.record_id)
            if record is not None:
                self._events[message_id] = with_record(event, record)

    def _decide(self, event: EventMessage) -> Decision:
        """The sync rule's verdict: a mirror change to apply, or how the event ends without one."""
        module = self._processor.module
        if event.module != module:
            return "failed", {"reason": "wrong_queue"}, f"a {event.module} event on the {module} queue"
        try:
            change: Change = self._processor.plan(event)
        except (CannotApply, ValidationError) as invalid:
            # An event that can never apply: parked as ``failed``, reachable by replay, not retried.
            details: list[Problem] = invalid.problems if isinstance(invalid, CannotApply) else problems(invalid)
            error = "; ".join(f"{p['field']} {p['problem']}" for p in details)
            return "failed", {"reason": "invalid", "problems": details}, error
        except Exception as bug:  # noqa: BLE001 - the rules are pure: the same event would fail the same way
            logger.exception("sync rule failed unexpectedly", event_id=event.event_id)
            error = f"unexpected {type(bug).__name__} in the {module} sync rule"
            return "failed", {"reason": "unexpected_error", "error": type(bug).__name__}, error
        if isinstance(change, MirrorWrite):
            return change
        if isinstance(change, LogOnly):
            return "completed", {"action": "logged", **change.summary}, None
        return "skipped", {"reason": change.reason}, None

    def _release(self, claim: Claim, error: str, last: bool) -> None:
        try:
            self._store.release(claim, error, last_attempt=last)
        except StorageUnavailable as unrecorded:
            logger.warning("could not record the failed attempt", error=str(unrecorded))

    def retried(self) -> list[dict[str, Any]]:
        """The records of events SQS will deliver again (not unreadable messages: time cannot mend them)."""
        return [
            r
            for r in self._records
            if _retried(self._outcomes.get(r["messageId"])) and self._events[r["messageId"]] is not None
        ]

    def outcome(self, record: SQSRecord) -> str:
        """Powertools' record handler: the event's status, or raise to have SQS deliver it again."""
        result = self._outcomes[record.message_id]
        if isinstance(result, EventNotProcessed):
            raise result
        return result

    def report(self) -> None:
        """The batch's logs and metrics: a line for each event that did not complete, one for the
        batch, and one EMF line per metric and source."""
        module = self._processor.module
        counts: Counter[tuple[Metric, str]] = Counter()
        completed: list[str] = []
        now_ms = time.time() * 1000
        for record in self._records:
            event, outcome = self._events[record["messageId"]], self._outcomes.get(record["messageId"])
            source = event.source if event is not None else "unknown"
            if isinstance(outcome, EventNotProcessed) or outcome is None:
                last = receive_count(record) >= self._processor.max_receive_count
                counts[Metric.DEAD_LETTERED if last else Metric.RETRIED, source] += 1
                logger.set_correlation_id(event.event_id if event is not None else None)
                logger.error("event not processed; SQS will retry it", error=str(outcome), last_attempt=last)
                continue
            counts[_METRICS[outcome], source] += 1
            claim = self._claims.get((event.source, event.event_id)) if event is not None else None
            if outcome == "completed" and event is not None and claim is not None:
                completed.append(event.event_id)
                self._timings[Metric.END_TO_END_LATENCY, source].append(now_ms - claim.received_ms)
            elif event is not None:
                logger.set_correlation_id(event.event_id)
                logger.info("event processed", status=outcome, event_module=module)
        logger.set_correlation_id(None)
        logger.info("batch processed", event_module=module, completed=completed, received=len(self._records))
        for (metric, origin), value in counts.items():
            count(metric, value=value, source=origin, module=module)
        for (metric, origin), values in self._timings.items():
            emit(metric, values, MetricUnit.Milliseconds, source=origin, module=module)


def _retried(outcome: str | EventNotProcessed | None) -> bool:
    return isinstance(outcome, EventNotProcessed)


def build_processor(settings: Settings | None = None) -> ModuleProcessor:
    """Wire the processor of ``MODULE`` from the container's settings: Postgres, and its queue for back-off."""
    settings = settings or load_settings()
    if settings.module is None:
        raise ValueError("MODULE is not set")
    connection = PreparedConnection(
        connection_params(settings, f"{settings.module}-processor"), settings.db_idle_ping_seconds
    )
    queue_url = settings.queue_urls().get(settings.module)
    backoff = (
        VisibilityBackoff(
            queue_url, settings.retry_base_seconds, settings.retry_max_seconds, settings.max_receive_count, settings
        )
        if queue_url and settings.retry_base_seconds
        else None
    )
    identity = RouterIdentity(DeliveryStore(connection))
    records = None
    if settings.zoho_configured():
        from event_router.deliver.provision import field_mapping  # noqa: PLC0415 - pydantic model: only when used

        records = ZohoRecords(zoho_client(settings, connection), field_mapping(settings))
    return ModuleProcessor(
        settings.module,
        MirrorStore(connection),
        settings.max_receive_count,
        backoff,
        DeliveryPublisher(settings),
        identity.current,
        records,
        lambda: erasure_key(settings),
    )


class RouterIdentity:
    """Who the router is at Moodle (its web-service user) and at Zoho (its API user), as the delivery
    functions' health checks last learned; read at most once a minute per container."""

    def __init__(self, store: DeliveryStore, max_age_seconds: float = 60.0) -> None:
        self._store = store
        self._max_age = max_age_seconds
        self._read_at = -max_age_seconds
        self._identity = Identity()

    def current(self) -> Identity:
        if time.monotonic() - self._read_at >= self._max_age:
            moodle = self._store.identity("moodle").get("userid")
            zoho = self._store.identity("zoho").get("userid")
            self._identity = Identity(
                int(moodle) if moodle is not None else None, str(zoho) if zoho is not None else None
            )
            self._read_at = time.monotonic()
        return self._identity
