"""Payments (Zoho ``BTEC_Payments``): logged only; the event-log row is their record (SPEC §7)."""

from __future__ import annotations

from event_router.payloads import WebhookEvent, zoho_record_fields
from event_router.sync import Change, LogOnly, Skip, lookup, text


def plan(event: WebhookEvent) -> Change:
    if event.source != "zoho":
        return Skip("unsupported_event")
    summary: dict[str, object] = {"record_id": event.record_id, "operation": event.event_type}
    record = zoho_record_fields(event.payload)
    if record is not None and event.event_type != "delete":
        summary |= {
            "student_zoho_id": lookup(record, "Student", "Students"),
            "amount": text(record, "Amount"),
            "currency": text(record, "Currency"),
            "payment_status": text(record, "Payment_Status", "Status"),
        }
    return LogOnly(summary)
