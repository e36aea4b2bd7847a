"""Webhook bodies (docs/api.md) turned into one ``EventMessage``.

Every shape Zoho CRM and Moodle send is validated by a pydantic model of its own and then
reduced to the same handful of facts: which record, what happened to it, when, an event id that
stays the same when a sender re-sends the same change, and what the module needs to know
(``messages.ZohoRecord`` or ``messages.MoodleFacts``). Nothing downstream reads the body's shape.

This module is the way in; the shapes are in ``zoho_shapes.py`` and ``moodle_shapes.py``, what they
share in ``shapes.py``, and decoding a body in ``bodies.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from event_router.contract import (
    AuthMethod,
    Module,
    Source,
)
from event_router.core.problems import problems
from event_router.errors import InvalidPayload
from event_router.messages import (
    EventMessage,
    MoodleFacts,
    MoodleGrade,
    ZohoRecord,
)
from event_router.verify.moodle_shapes import MoodleEventData, moodle_event
from event_router.verify.shapes import DEFAULT_MAX_CLOCK_SKEW
from event_router.verify.zoho_shapes import (
    Stamp,
    ZohoFullRecord,
    ZohoMinimal,
    ZohoNotification,
    ZohoRecordFields,
    zoho_event,
)


def prepare(source: Source) -> None:
    """Build the validators of ``source``'s payload shapes now rather than on the first request."""
    models = (
        (ZohoFullRecord, ZohoMinimal, ZohoRecordFields, ZohoNotification, Stamp)
        if source == "zoho"
        else (MoodleEventData, MoodleGrade)
    )
    for model in models:
        model.model_rebuild()


def parse_event(
    source: Source,
    module: Module,
    fields: dict[str, Any],
    *,
    received_at: datetime | None = None,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    auth_method: AuthMethod | None = None,
) -> EventMessage:
    """Validate one decoded body from ``source`` arriving on ``module``'s route (authenticated by
    ``auth_method``, which the message records).

    An event dated more than ``max_clock_skew`` after ``received_at`` (now) is refused: stored, it
    would make every later real change of its record look stale.
    """
    try:
        event, facts = (
            zoho_event(module, fields, auth_method) if source == "zoho" else moodle_event(module, fields, auth_method)
        )
    except ValidationError as error:
        raise InvalidPayload(problems(error)) from None
    latest = (received_at or datetime.now(UTC)) + max_clock_skew
    if facts.occurred_at > latest:
        skew = int(max_clock_skew.total_seconds())
        problem = f"is more than {skew} seconds in the future; check the sending system's clock"
        raise InvalidPayload([{"field": facts.occurred_field, "problem": problem}])
    return event


def parse_notification(
    fields: dict[str, Any], *, received_at: datetime | None = None, max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW
) -> list[EventMessage]:
    """An ids-only notification (its channel token already removed) → one event per record it
    names, each logged with the notification narrowed to its id."""
    try:
        notification = ZohoNotification.model_validate(fields)
    except ValidationError as error:
        raise InvalidPayload(problems(error)) from None
    return [
        parse_event(
            "zoho",
            notification.module,
            {**fields, "ids": [record_id]},
            received_at=received_at,
            max_clock_skew=max_clock_skew,
            auth_method="channel_token",
        )
        for record_id in dict.fromkeys(notification.ids)
    ]


def facts_of(source: Source, module: Module, payload: dict[str, Any]) -> ZohoRecord | MoodleFacts:
    """The facts of a payload that was accepted before (an event-log row, an old queue message)."""
    try:
        event, _ = zoho_event(module, payload) if source == "zoho" else moodle_event(module, payload)
    except ValidationError as error:
        raise InvalidPayload(problems(error)) from None
    return event.facts
