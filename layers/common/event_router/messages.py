"""The message between the verifiers and the processors: one typed, versioned event.

A verifier turns a webhook body into an ``EventMessage`` once (``verify/payloads.py``): which
record, what happened to it, when, under which event id, and the facts its module needs, typed
(``ZohoRecord`` or ``MoodleFacts``). It goes on the module's queue as JSON, and the processor
validates it back into the same model: no processor looks at the body's shape again. The raw body
travels along as ``payload`` for the event log, which keeps what the sender sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from event_router.contract import AuthMethod, Module, Operation, Source
from event_router.errors import InvalidPayload

VERSION: Literal[2] = 2  # 1 had no facts: such messages are upgraded on reading (``EventMessage.from_json``)
MAX_ID = 2**63 - 1  # Moodle ids are Postgres bigints


def _moodle_id(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, str) and value.strip().removeprefix("-").isdigit():
        return int(value)
    return value


def _grade(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


MoodleId = Annotated[int, BeforeValidator(_moodle_id), Field(ge=0, le=MAX_ID, strict=True)]
# Who did something in Moodle: a user id, or one of Moodle's special actors (``\core\event\base``):
# 0 for nobody (cron, CLI, a guest) and -1 (USER_OTHER) for "another user", as when Moodle computes a
# course total itself.
MoodleActor = Annotated[int, BeforeValidator(_moodle_id), Field(ge=-1, le=MAX_ID, strict=True)]
Grade = Annotated[float | None, BeforeValidator(_grade)]
Timestamp = Annotated[datetime, AfterValidator(_as_utc)]


class ZohoRecord(BaseModel):
    """What a Zoho webhook says about its record: the record's field values, or None when the
    webhook named the record without them (the minimal shape)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["zoho"] = "zoho"
    fields: dict[str, Any] | None


class MoodleGrade(BaseModel):
    """What ``user_graded`` says about the grade: its item, and the final grade (None when cleared)."""

    model_config = ConfigDict(frozen=True)

    itemid: MoodleId
    finalgrade: Grade = None
    grade_letter: Annotated[str, Field(max_length=100)] | None = None  # as the gradebook shows it (the plugin sends it)
    scaleid: MoodleId | None = None  # the item's scale, when it uses one


class MoodleFacts(BaseModel):
    """What a Moodle event says: which event, about which student, in which course, by whom."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["moodle"] = "moodle"
    event_name: str  # without the leading backslash: core\event\user_graded
    student: MoodleId  # relateduserid when the event has one, else userid
    actor: MoodleActor | None = None  # userid: who did it (the router's own web-service user, for an echo)
    course: MoodleId
    grade: MoodleGrade | None = None  # user_graded only


Facts = Annotated[ZohoRecord | MoodleFacts, Field(discriminator="kind")]
# Version 1's payload → its facts: (source, module, payload) → facts, or InvalidPayload.
Upgrade = Callable[[Source, Module, dict[str, Any]], ZohoRecord | MoodleFacts]


class _Event(BaseModel):
    """What every version of the message says about the event."""

    # Built when first used: only a message of version 1 (no facts) is read with it.
    model_config = ConfigDict(frozen=True, defer_build=True)

    source: Source
    module: Module
    event_id: str
    event_type: Operation
    record_id: str
    occurred_at: datetime | None
    payload: dict[str, Any]


class EventMessage(_Event):
    """A verified webhook: what the event log records and what a processor applies."""

    model_config = ConfigDict(frozen=True, defer_build=False)

    version: Literal[2] = VERSION
    facts: Facts
    auth_method: AuthMethod | None = None  # how the verifier authenticated it

    @classmethod
    def from_json(cls, body: str, upgrade: Upgrade | None = None) -> EventMessage | None:
        """The event a queue message carries; None if it is not one. A message of version 1 (no
        facts) is read by deriving its facts from its payload with ``upgrade``, as the verifier
        would have (the verifier's parsing: ``verify.payloads.facts_of``)."""
        try:
            return cls.model_validate_json(body)
        except ValidationError:
            pass
        try:
            legacy = _Event.model_validate_json(body)
        except ValidationError:
            return None
        if upgrade is None:
            return None
        try:
            facts = upgrade(legacy.source, legacy.module, legacy.payload)
        except InvalidPayload:  # it could not be processed either way
            return None
        return cls(**legacy.model_dump(), facts=facts)
