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

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from event_router.contract import Module
from event_router.core.backoff import Backoff, NoBackoff, queue_backoff
from event_router.deliver.outbox import DeliveryPublisher
from event_router.erasure import ErasureKey, erasure_key
from event_router.mapping import FieldMapping, field_mapping
from event_router.messages import EventMessage
from event_router.process.batch import Batch, RecordSource
from event_router.process.intents import Identity, RouterIdentity, delivery_for, is_echo
from event_router.process.rules import (
    MirrorWrite,
    enrollments,
    grades,
    payments,
    students,
)
from event_router.settings import Settings, load_settings
from event_router.sources.zoho.records import ZohoRecords
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import DeliveryStore
from event_router.store.mirror import Claim, MirrorStore, Write

RULES = {
    "students": students.plan,
    "enrollments": enrollments.plan,
    "grades": grades.plan,
    "payments": payments.plan,
}


class Deliveries(Protocol):
    """Where the deliveries a batch wrote are sent (the destinations' queues)."""

    def enabled(self, destination: str) -> bool: ...
    def send(self, deliveries: list[tuple[int, str]]) -> None: ...


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
        identity: Callable[[], Identity] = Identity,
        records: RecordSource | None = None,
        erasure: Callable[[], ErasureKey | None] = lambda: None,
        mapping: FieldMapping | None = None,
    ) -> None:
        self.module = module
        self.store = store
        self.plan = partial(RULES[module], mapping=mapping)  # the college's Zoho field names
        self.max_receive_count = max_receive_count
        self.backoff = backoff or NoBackoff()
        self.deliveries = deliveries or NoDeliveries()
        self.identity = identity  # who the router is at Moodle and Zoho: its own changes are echoes
        self.records = records  # where the records of events that name them without fields are fetched
        self.erasure = erasure  # the erasure register's key (None: nobody can have been erased)
        self._batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def write(self, claim: Claim | None, event: EventMessage, change: MirrorWrite) -> Write:
        """The mirror change of an event with what it calls for: a delivery, unless it is an echo."""
        if is_echo(event, self.identity()):
            return Write(claim, event, change, notes={"echo": True})
        return Write(claim, event, change, delivery_for(event, change, self.deliveries.enabled))

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """An SQS event in, the partial batch response out."""
        batch = Batch(self, event.get("Records", []))
        batch.run()
        self.deliveries.send(batch.deliveries)  # after the commit: the rows exist before their messages
        self.backoff.postpone(batch.retried())
        try:
            # No Lambda context for the record handler, which only looks its outcome up: given one,
            # Powertools inspects the handler's signature on every batch to see whether it wants it.
            response = process_partial_response(
                event=event, record_handler=batch.outcome, processor=self._batch_processor, context=None
            )
        finally:
            batch.report()
        return dict(response)


def build_processor(settings: Settings | None = None) -> ModuleProcessor:
    """Wire the processor of ``MODULE`` from the container's settings: Postgres, and its queue for back-off."""
    settings = settings or load_settings()
    if settings.module is None:
        raise ValueError("MODULE is not set")
    connection = PreparedConnection(
        connection_params(settings, f"{settings.module}-processor"), settings.db_idle_ping_seconds
    )
    queue_url = settings.queue_urls().get(settings.module)
    backoff = queue_backoff(queue_url, settings)
    identity = RouterIdentity(DeliveryStore(connection))
    # The college's Zoho field names, when FIELD_MAPPING renames any (None: the rules use the guide's).
    mapping = field_mapping(settings) if settings.field_mapping else None
    records = None
    if settings.zoho_configured():  # the client loads urllib3: only a processor that reads Zoho pays for it
        from event_router.deliver.zoho.client import zoho_client  # noqa: PLC0415

        records = ZohoRecords(zoho_client(settings, connection), mapping or field_mapping(settings))
    return ModuleProcessor(
        settings.module,
        MirrorStore(connection),
        settings.max_receive_count,
        backoff,
        DeliveryPublisher(settings),
        identity.current,
        records,
        lambda: erasure_key(settings),
        mapping,
    )
