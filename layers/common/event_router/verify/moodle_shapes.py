"""Moodle's event payloads (docs/connect-moodle.md): the event data the plugin sends, reduced to the
facts a processor needs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from event_router.contract import (
    MOODLE_EVENTS,
    USER_GRADED,
    AuthMethod,
    Module,
    Operation,
)
from event_router.core.problems import problems
from event_router.errors import InvalidPayload
from event_router.messages import (
    EventMessage,
    MoodleActor,
    MoodleFacts,
    MoodleGrade,
    MoodleId,
    Timestamp,
)
from event_router.verify.shapes import (
    OPERATIONS,
    SOURCE_SPECIFIC,
    Facts,
    Identifier,
    OperationField,
    derived_event_id,
)

# ---------------------------------------------------------------- Moodle


def _moodle_other(value: Any) -> Any:
    # PHP serialises an empty associative array as [], and some plugins send the
    # event's "other" as a JSON string.
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("must be an object, a list or null") from None
    if value is None or isinstance(value, list):
        return {}
    return value


class MoodleEventData(BaseModel):
    """Both Moodle shapes: a signed plugin event (with ``eventid``) or raw event data."""

    model_config = SOURCE_SPECIFIC

    eventid: Identifier | None = None
    eventname: Annotated[str, Field(min_length=1, max_length=200)]
    courseid: MoodleId
    userid: MoodleActor | None = None  # the actor: -1 and 0 are Moodle's own (another user, nobody)
    relateduserid: MoodleId | None = None
    objectid: MoodleId | None = None
    crud: OperationField | None = None
    timecreated: Timestamp
    other: Annotated[dict[str, Any], BeforeValidator(_moodle_other)] = Field(default_factory=dict)

    @property
    def canonical_name(self) -> str:
        return self.eventname.strip().lstrip("\\")

    @property
    def student(self) -> int | None:
        """The student the event is about: ``relateduserid`` when present, else ``userid`` (when it
        is a user's id, not one of Moodle's special actors)."""
        if self.relateduserid is not None:
            return self.relateduserid
        return self.userid if self.userid is not None and self.userid > 0 else None


def moodle_facts(data: MoodleEventData, fields: dict[str, Any]) -> MoodleFacts:
    if data.student is None:
        raise InvalidPayload([{"field": "relateduserid", "problem": "or userid is required"}])
    grade = None
    if data.canonical_name == USER_GRADED:
        # user_graded carries the grade item and the final grade in "other"; some plugins put them at the top.
        try:
            grade = MoodleGrade.model_validate({**fields, **data.other})
        except ValidationError as error:
            raise InvalidPayload([{**p, "field": f"other.{p['field']}"} for p in problems(error)]) from None
    return MoodleFacts(
        event_name=data.canonical_name, student=data.student, actor=data.userid, course=data.courseid, grade=grade
    )


def moodle_event(
    module: Module, fields: dict[str, Any], auth_method: AuthMethod | None = None
) -> tuple[EventMessage, Facts]:
    data = MoodleEventData.model_validate(fields)
    known = MOODLE_EVENTS.get(data.canonical_name)
    if known is not None and known[0] != module:
        raise InvalidPayload(
            [{"field": "eventname", "problem": f"belongs to {known[0]}, not to this route ({module})"}]
        )
    operation = data.crud or (known[1] if known else _operation_from_name(data.canonical_name))
    moodle = moodle_facts(data, fields)
    record_id = str(data.objectid) if data.objectid is not None else f"{moodle.student}:{data.courseid}"
    # Moodle's objectid and timecreated (one-second resolution) do not tell two changes apart; what
    # the event says (its name, people, course and "other") does.
    identity = [data.canonical_name, moodle.student, data.courseid, data.other]
    facts = Facts(
        module=module,
        event_id=data.eventid,
        operation=operation,
        record_id=record_id,
        occurred_at=data.timecreated,
        occurred_field="timecreated",
    )
    event = EventMessage(
        source="moodle",
        module=module,
        event_id=data.eventid or derived_event_id("moodle", module, record_id, operation, data.timecreated, identity),
        event_type=operation,
        record_id=record_id,
        occurred_at=data.timecreated,
        payload=fields,
        facts=moodle,
        auth_method=auth_method,
    )
    return event, facts


def _operation_from_name(name: str) -> Operation:
    suffix = name.rsplit("_", 1)[-1]
    if suffix in ("created", "updated", "deleted"):
        return OPERATIONS[suffix]
    raise InvalidPayload([{"field": "crud", "problem": "is required when eventname does not say the operation"}])
