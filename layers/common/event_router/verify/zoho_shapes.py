"""Zoho CRM's payload shapes (docs/connect-zoho.md): the full record, the minimal webhook, the record's
fields, and the Notification API's ids-only callback, each reduced to the same facts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from event_router.contract import (
    ZOHO_MODULE_NAMES,
    AuthMethod,
    Module,
)
from event_router.errors import InvalidPayload
from event_router.messages import (
    EventMessage,
    Timestamp,
    ZohoRecord,
)
from event_router.verify.shapes import (
    SOURCE_SPECIFIC,
    Facts,
    Identifier,
    OperationField,
    derived_event_id,
    identifier,
)

# ---------------------------------------------------------------- Zoho CRM


def _zoho_module(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    wanted = value.strip().lower()
    for module, api_name in ZOHO_MODULE_NAMES.items():
        if wanted in (module, api_name.lower()):
            return module
    raise ValueError("is not one of the BTEC modules")


ZohoModule = Annotated[Module, BeforeValidator(_zoho_module)]


class _Shape(BaseModel):
    """What the webhook shapes share: the module may be named (the route says it otherwise)."""

    model_config = SOURCE_SPECIFIC

    module: ZohoModule | None = None


class ZohoFullRecord(_Shape):
    """Shape 1: the record's data with a notification id."""

    notification_id: Identifier
    timestamp: Timestamp
    operation: OperationField
    record_id: Identifier | None = None
    data: dict[str, Any]


class ZohoMinimal(_Shape):
    """Shape 2: an id, what happened, to which record."""

    event_id: Identifier
    event_type: OperationField
    record_id: Identifier
    changed_fields: list[str] | None = None
    timestamp: Timestamp


class ZohoRecordFields(_Shape):
    """Shape 3: a workflow webhook posting the record's fields, ``id`` being the record id."""

    id: Identifier
    operation: OperationField = "update"
    modified_time: Timestamp | None = Field(None, validation_alias="Modified_Time")
    timestamp: Timestamp | None = None


class ZohoNotification(BaseModel):
    """Zoho's Notification API callback: which records of which module changed, ids only."""

    model_config = SOURCE_SPECIFIC

    server_time: int = Field(ge=0)  # milliseconds since the epoch
    module: ZohoModule
    ids: list[Identifier] = Field(min_length=1, max_length=1000)
    operation: OperationField
    channel_id: Identifier


def zoho_shape(fields: dict[str, Any]) -> Literal["full", "minimal", "record", "notification"]:
    """Which of the Zoho shapes of docs/api.md a body is (or an ids-only notification of Zoho's
    Notification API, one id to an event)."""
    if "channel_id" in fields and "ids" in fields:
        return "notification"
    if "notification_id" in fields or "data" in fields:
        return "full"
    if "event_id" in fields or "event_type" in fields:
        return "minimal"
    return "record"


def _record_fields(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The record's field values a Zoho payload carries; None for the minimal shape, which has none."""
    shape = zoho_shape(payload)
    if shape == "full":
        data = payload.get("data")
        return data if isinstance(data, dict) else None
    return payload if shape == "record" else None


MISSING_MODIFIED_TIME = (
    "is required when the body has no notification_id or event_id: add the record's Modified Time to the "
    "webhook (Zoho CRM: Setup > Actions > Webhooks > Parameters > Module Parameters > Modified Time, "
    "parameter name Modified_Time)"
)


def zoho_facts(fields: dict[str, Any]) -> Facts:
    shape = zoho_shape(fields)
    if shape == "full":
        full = ZohoFullRecord.model_validate(fields)
        record_id = full.record_id or _record_id_in_data(full.data)
        modified = _optional_timestamp(full.data, "Modified_Time", "data.Modified_Time")
        when, field = (modified, "data.Modified_Time") if modified else (full.timestamp, "timestamp")
        return Facts(
            module=full.module,
            event_id=full.notification_id,
            operation=full.operation,
            record_id=record_id,
            occurred_at=when,
            occurred_field=field,
        )
    if shape == "notification":
        notification = ZohoNotification.model_validate(fields)
        record_id = notification.ids[0]
        return Facts(
            module=notification.module,
            event_id=(
                f"zoho-notify-{notification.channel_id}-{notification.server_time}-{notification.operation}-{record_id}"
            ),
            operation=notification.operation,
            record_id=record_id,
            occurred_at=datetime.fromtimestamp(notification.server_time / 1000, UTC),
            occurred_field="server_time",
        )
    if shape == "minimal":
        minimal = ZohoMinimal.model_validate(fields)
        return Facts(
            module=minimal.module,
            event_id=minimal.event_id,
            operation=minimal.event_type,
            record_id=minimal.record_id,
            occurred_at=minimal.timestamp,
            occurred_field="timestamp",
        )
    flat = ZohoRecordFields.model_validate(fields)
    stamp = flat.modified_time or flat.timestamp
    if stamp is None:
        raise InvalidPayload([{"field": "Modified_Time", "problem": MISSING_MODIFIED_TIME}])
    return Facts(
        module=flat.module,
        event_id=None,
        operation=flat.operation,
        record_id=flat.id,
        occurred_at=stamp,
        occurred_field="Modified_Time" if flat.modified_time else "timestamp",
    )


def zoho_event(
    module: Module, fields: dict[str, Any], auth_method: AuthMethod | None = None
) -> tuple[EventMessage, Facts]:
    facts = zoho_facts(fields)
    if facts.module is not None and facts.module != module:
        raise InvalidPayload(
            [{"field": "module", "problem": f"contradicts the route, which takes {ZOHO_MODULE_NAMES[module]}"}]
        )
    event = EventMessage(
        source="zoho",
        module=module,
        event_id=facts.event_id
        or derived_event_id("zoho", module, facts.record_id, facts.operation, facts.occurred_at, fields),
        event_type=facts.operation,
        record_id=facts.record_id,
        occurred_at=facts.occurred_at,
        payload=fields,
        facts=ZohoRecord(fields=_record_fields(fields)),
        auth_method=auth_method,
    )
    return event, facts


def _record_id_in_data(data: dict[str, Any]) -> str:
    try:
        return str(identifier(data.get("id")))
    except ValueError:
        raise InvalidPayload([{"field": "record_id", "problem": "is required (or data.id)"}]) from None


class Stamp(BaseModel):
    model_config = SOURCE_SPECIFIC

    at: Timestamp


def _optional_timestamp(data: dict[str, Any], key: str, field: str) -> datetime | None:
    if data.get(key) in (None, ""):
        return None
    try:
        return Stamp(at=data[key]).at
    except ValidationError:
        raise InvalidPayload([{"field": field, "problem": "is not a date-time"}]) from None
