"""One SQS batch of a module queue (docs/operate.md, "What happens to an event"): its messages read, the
records it names fetched, every event decided by its rule, then claimed, applied and settled — in one
transaction, or event by event when that fails — and its outcomes reported.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from event_router import queues
from event_router.contract import Module, Source
from event_router.core.backoff import receive_count
from event_router.core.problems import problems
from event_router.erasure import ErasureKey, row_identities
from event_router.errors import DataRejected, DeliveryError, Problem, StorageUnavailable
from event_router.messages import EventMessage, MoodleFacts, ZohoRecord
from event_router.observability import Metric, emit_together, logger
from event_router.process.rules import (
    CannotApply,
    Change,
    LogOnly,
    MirrorWrite,
)
from event_router.sources.zoho.records import with_record
from event_router.store.mirror import BatchRow, Claim, MirrorStore, Settlement, Write

# A message whose event was settled already (a redelivery, a duplicate): acknowledged, counted, not applied.
REDELIVERED = "redelivered"
_METRICS = {
    "completed": Metric.PROCESSED,
    "skipped": Metric.SKIPPED,
    "failed": Metric.FAILED,
    REDELIVERED: Metric.REDELIVERED,
}


class EventNotProcessed(Exception):
    """This event failed for a reason that may pass; SQS will deliver it again."""


class RecordSource(Protocol):
    """Where a Zoho record is read when its event named it without its fields (Zoho CRM itself)."""

    def fetch(self, module: Module, ids: list[str]) -> dict[str, dict[str, Any]]: ...


class Processing(Protocol):
    """What a batch needs of its module's processor (``processor.py``)."""

    module: Module
    store: MirrorStore
    max_receive_count: int
    records: RecordSource | None
    erasure: Callable[[], ErasureKey | None]

    def plan(self, event: EventMessage) -> Change: ...
    def write(self, claim: Claim | None, event: EventMessage, change: MirrorWrite) -> Write: ...


Decision = MirrorWrite | tuple[str, dict[str, Any], str | None]  # a change to apply, or (status, result, error)


class Batch:
    """One invocation's events, their claims and outcomes (a status, or the error to retry on)."""

    def __init__(self, processor: Processing, records: list[dict[str, Any]]) -> None:
        self._processor = processor
        self._store = processor.store
        self._records = records
        self._events = {r["messageId"]: read_event(r["body"]) for r in records}
        self._claims: dict[tuple[str, str], Claim] = {}
        self._outcomes: dict[str, str | EventNotProcessed] = {}
        self.deliveries: list[tuple[int, str]] = []  # written by this batch: (delivery id, destination)
        self._unfetched: dict[str, str] = {}  # message id → why its record could not be fetched
        self._timings: defaultdict[tuple[Metric, str], list[float]] = defaultdict(list)  # (metric, source) → ms
        self._key: ErasureKey | None = None  # the erasure register's, read once per batch

    def run(self) -> None:
        """Settle every event: the whole batch in one statement where it can be, else in one
        transaction, or event by event if that fails."""
        self._fetch()
        # The rules are pure: every decision is made before the database is touched.
        decisions = {m: self._decide(e) for m, e in self._events.items() if e is not None}
        self._key = self._processor.erasure()
        self._store.begin_batch()
        self._log_unlogged()
        if not self._in_one_statement(decisions):
            self._settle_usual(self._records, decisions)

    def _log_unlogged(self) -> None:
        """Write the log rows of the events whose messages say the verifier could not (Postgres was
        down): one statement, so the batch then goes as if they had been logged. If it fails it
        wrote nothing (a value the log refuses, the database out of reach), and the claim writes
        them instead, the usual way, where each event's failure is its own."""
        unlogged = [
            event
            for record in self._records
            if queues.unlogged(record) and (event := self._events[record["messageId"]]) is not None
        ]
        try:
            self._store.log_unlogged(unlogged)
        except Exception as error:  # noqa: BLE001 - one event's bad value must not fail the batch here
            reason = str(error) if isinstance(error, StorageUnavailable) else type(error).__name__
            logger.warning("could not log the events queued without a log row", error=reason)

    def _settle_usual(self, records: list[dict[str, Any]], decisions: dict[str, Decision]) -> None:
        """``records``' events claimed together (those not logged get their rows, those settled
        already are redeliveries) and settled in one transaction, or event by event if that fails."""
        only = {r["messageId"] for r in records}
        events = [e for m, e in self._events.items() if m in only and e is not None and m not in self._unfetched]
        # One statement is a transaction by itself: no BEGIN and COMMIT, unless the erasure register
        # is read: its lock must last until the writes commit.
        guarded = self._key is not None and any(isinstance(decisions.get(m), MirrorWrite) for m in only)
        together = len(events) > 1 or guarded
        started = time.monotonic()
        try:
            with self._store.connection.transaction(needed=together):
                self._claims |= self._store.claim(events)
                self._outcomes |= self._settle_together(decisions, only)
        except Exception as error:  # noqa: BLE001 - one event's failure must not fail the others
            if together:
                for event in events:  # rolled back with the rest: each claims again, alone
                    self._claims.pop((event.source, event.event_id), None)
            self._one_by_one(records, decisions, error)
            return
        settled = [e for m, e in self._events.items() if m in only and e and not _retried(self._outcomes.get(m))]
        if settled:  # one figure for the batch: its events shared the statements
            per_event = (time.monotonic() - started) * 1000 / len(settled)
            for source in {e.source for e in settled}:
                self._timings[Metric.PROCESSING_TIME, source].append(per_event)

    def _one_by_one(self, records: list[dict[str, Any]], decisions: dict[str, Decision], error: Exception) -> None:
        reason = str(error) if isinstance(error, StorageUnavailable) else f"unexpected {type(error).__name__}"
        logger.warning("batch transaction failed; settling its events one by one", error=reason)
        for record in records:
            self._outcomes[record["messageId"]] = self._settle_alone(record, decisions)

    def _in_one_statement(self, decisions: dict[str, Decision]) -> bool:
        """The common batch in one statement (``MirrorStore.apply_batch``): every message an event
        whose rule wrote one change of the same kind to a different row. Claiming, the erasure
        check, the changes, their deliveries and the events' settling then cost one round trip
        and no BEGIN or COMMIT. The events it leaves open (about an erased identity, not yet logged,
        or settled already) go the usual way, together. If the statement fails nothing was written:
        with the database out of reach, each event on its own (as the usual way would end up);
        otherwise the whole batch the usual way. False: not such a batch, or the statement failed."""
        writes = [d for d in decisions.values() if isinstance(d, MirrorWrite)]
        if not writes or len(writes) != len(self._records) or self._unfetched:
            return False
        kinds = {(d.table, d.tombstone) for d in writes}
        if len(kinds) > 1 or len({tuple(d.key.values()) for d in writes}) < len(writes):
            return False
        started = time.monotonic()
        rows: list[BatchRow] = []
        try:
            for message_id, event in self._events.items():
                change = decisions[message_id]
                if event is None or not isinstance(change, MirrorWrite):
                    return False  # (every message is a decided event: counted above)
                named = row_identities(change.table, {**change.key, **change.values})
                digests = sorted(self._key.digests(named)) if self._key is not None else []
                at = event.occurred_at.timestamp() * 1000 if event.occurred_at is not None else None
                # (writing asks who the router is, which may read the database)
                rows.append(BatchRow(self._processor.write(None, event, change), at, digests))
            applied = self._store.apply_batch(rows)
        except StorageUnavailable as error:
            self._one_by_one(self._records, decisions, error)
            return True
        except Exception as error:  # noqa: BLE001 - nothing was written (a value refused): the usual way
            logger.warning("one-statement batch failed; settling it the usual way", error=type(error).__name__)
            return False
        settled = {identity: done for identity, done in applied.items() if done.status != "erased"}
        per_event = (time.monotonic() - started) * 1000 / max(len(settled), 1)
        left = []
        for record, row in zip(self._records, rows, strict=True):
            event = row.write.event
            done = applied.get((event.source, event.event_id))
            if done is not None:
                self._claims[event.source, event.event_id] = done.claim
            if done is None or done.status == "erased":
                left.append(record)  # not claimed, or claimed and still open
                continue
            self._outcomes[record["messageId"]] = done.status
            self.deliveries += done.deliveries
            self._timings[Metric.PROCESSING_TIME, event.source].append(per_event)
        if left:  # rare
            self._settle_usual(left, decisions)
        return True

    def _settle_together(
        self, decisions: dict[str, Decision], only: set[str] | None = None
    ) -> dict[str, str | EventNotProcessed]:
        """The fast path: every change of one kind in one statement, every other ending in one more."""
        outcomes: dict[str, str | EventNotProcessed] = {}
        claimed: dict[str, Claim] = {}
        claimed_events: dict[str, tuple[EventMessage, Claim, Decision]] = {}
        writes: list[Write] = []
        settles: list[Settlement] = []
        for message_id, event in self._events.items():
            if only is not None and message_id not in only:
                continue
            if event is None:
                outcomes[message_id] = EventNotProcessed("message body is not an event")
                continue
            if message_id in self._unfetched:
                outcomes[message_id] = EventNotProcessed(self._unfetched[message_id])
                continue
            claim = self._claims.get((event.source, event.event_id))
            if claim is None:
                outcomes[message_id] = REDELIVERED  # already completed, skipped or failed
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
            outcomes[message_id] = statuses.get(claim.log_id, REDELIVERED)
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
                    return REDELIVERED  # already completed, skipped or failed
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
            return self._store.settle_many([(claim, *decision)]).get(claim.log_id, REDELIVERED)
        try:
            with self._store.connection.transaction(needed=self._key is not None):
                erased = self._erased({"one": (event, claim, decision)})
                if erased:
                    return self._store.forget(list(erased.values())).get(claim.log_id, REDELIVERED)
                statuses, deliveries = self._store.apply_many([self._processor.write(claim, event, decision)])
            self.deliveries += deliveries
        except DataRejected as refused:
            # The database will refuse these values every time: park the event, do not retry it.
            error = f"the database refused a value of this event ({refused})"
            statuses = self._store.settle_many([(claim, "failed", {"reason": "refused_by_database"}, error)])
        return statuses.get(claim.log_id, REDELIVERED)

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
        # One EMF document per source: its counts and timings share their dimensions.
        by_source: defaultdict[str, dict[Metric, tuple[list[float], MetricUnit]]] = defaultdict(dict)
        for (metric, origin), value in counts.items():
            by_source[origin][metric] = ([value], MetricUnit.Count)
        for (metric, origin), values in self._timings.items():
            by_source[origin][metric] = (values, MetricUnit.Milliseconds)
        for origin, metrics in by_source.items():
            emit_together(metrics, source=origin, module=module)


def _retried(outcome: str | EventNotProcessed | None) -> bool:
    return isinstance(outcome, EventNotProcessed)


def read_event(body: str) -> EventMessage | None:
    """The event a module queue's message carries (None: not one), version 1's included."""
    return EventMessage.from_json(body, _upgrade)


def _upgrade(source: Source, module: Module, payload: dict[str, Any]) -> ZohoRecord | MoodleFacts:
    """A version-1 message's facts, parsed as the verifier parses a webhook (rare: loaded when met)."""
    from event_router.verify.payloads import facts_of  # noqa: PLC0415

    return facts_of(source, module, payload)
