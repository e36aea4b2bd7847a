"""Payments (Zoho ``BTEC_Payments``): logged only; the event-log row is their record (docs/decisions.md)."""

from __future__ import annotations

from event_router.messages import EventMessage
from event_router.process.rules import Change, LogOnly, Skip, lookup, text, zoho_fields


def plan(event: EventMessage) -> Change:
    if event.source != "zoho":
        return Skip("unsupported_event")
    summary: dict[str, object] = {"record_id": event.record_id, "operation": event.event_type}
    record = zoho_fields(event)
    if record is not None and event.event_type != "delete":
        summary |= {
            "student_zoho_id": lookup(record, "Student", "Students"),
            "amount": text(record, "Amount"),
            "currency": text(record, "Currency"),
            "payment_status": text(record, "Payment_Status", "Status"),
        }
    return LogOnly(summary)
