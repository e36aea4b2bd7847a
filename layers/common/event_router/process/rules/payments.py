"""Payments (Zoho ``BTEC_Payments``): logged only; the event-log row is their record (docs/decisions.md)."""

from __future__ import annotations

from event_router.mapping import FieldMapping, default_mapping
from event_router.messages import EventMessage
from event_router.process.rules import Change, LogOnly, Skip, lookup, text, zoho_fields


def plan(event: EventMessage, mapping: FieldMapping | None = None) -> Change:
    if event.source != "zoho":
        return Skip("unsupported_event")
    summary: dict[str, object] = {"record_id": event.record_id, "operation": event.event_type}
    record = zoho_fields(event)
    if record is not None and event.event_type != "delete":
        m = mapping or default_mapping()
        summary |= {
            "student_zoho_id": lookup(record, *m.names("payment_student")),
            "amount": text(record, *m.names("payment_amount")),
            "currency": text(record, *m.names("payment_currency")),
            "payment_status": text(record, *m.names("payment_status")),
        }
    return LogOnly(summary)
