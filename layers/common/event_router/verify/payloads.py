"""Webhook bodies (docs/api.md) turned into one ``EventMessage``.

Every shape Zoho CRM and Moodle send is validated by a pydantic model of its own and then
reduced to the same handful of facts: which record, what happened to it, when, an event id that
stays the same when a sender re-sends the same change, and what the module needs to know
(``messages.ZohoRecord`` or ``messages.MoodleFacts``). Nothing downstream reads the body's shape.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import parse_qsl

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from event_router.contract import (
    MOODLE_EVENTS,
    USER_GRADED,
    ZOHO_MODULE_NAMES,
    AuthMethod,
    Module,
    Operation,
    Source,
)
from event_router.errors import InvalidPayload, Problem
from event_router.messages import (
    EventMessage,
    MoodleActor,
    MoodleFacts,
    MoodleGrade,
    MoodleId,
    Timestamp,
    ZohoRecord,
)

MAX_NESTING = 32  # levels of objects and lists a body may nest; deeper is a 400 (docs/decisions.md)
DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=5)

_OPERATIONS: dict[str, Operation] = {
    **dict.fromkeys(("create", "created", "insert", "inserted", "add", "added", "c"), "create"),
    **dict.fromkeys(("update", "updated", "edit", "edited", "modify", "modified", "u"), "update"),
    **dict.fromkeys(("delete", "deleted", "remove", "removed", "d"), "delete"),
}


def _operation(value: Any) -> Any:
    if isinstance(value, str):
        normalised = _OPERATIONS.get(value.strip().lower())
        if normalised is None:
            raise ValueError("unknown operation; expected create, update or delete (or a synonym)")
        return normalised
    return value


def _identifier(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("must be a string or an integer")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


# The models of one source are built when ``prepare(source)`` says that source is wanted, so a
# verifier builds only its own source's validators at start-up (docs/benchmarks.md, cold start).
_SOURCE_SPECIFIC = ConfigDict(defer_build=True)

OperationField = Annotated[Operation, BeforeValidator(_operation)]
Identifier = Annotated[str, BeforeValidator(_identifier), Field(max_length=200)]


# ---------------------------------------------------------------- body decoding


def decode_body(body: bytes) -> dict[str, Any]:
    """JSON object or form fields, decided by the content rather than the Content-Type."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload([{"field": "body", "problem": "is not UTF-8 text"}]) from None
    stripped = text.strip()
    if not stripped:
        raise InvalidPayload([{"field": "body", "problem": "is empty"}])
    if stripped[0] in "{[":
        try:
            value = json.loads(stripped, parse_constant=_refuse_constant)
        except RecursionError:
            raise InvalidPayload([_too_deep("body")]) from None
        except ValueError as error:
            problem = f"is not valid JSON (line {error.lineno}, column {error.colno})"  # type: ignore[attr-defined]
            raise InvalidPayload([{"field": "body", "problem": problem}]) from None
        if not isinstance(value, dict):
            raise InvalidPayload([{"field": "body", "problem": "must be a JSON object"}])
        return _storable(value)
    if "=" not in stripped:
        raise InvalidPayload([{"field": "body", "problem": "is neither a JSON object nor form-encoded"}])
    return _storable(_form_fields(stripped))


def _refuse_constant(name: str) -> float:
    raise InvalidPayload([{"field": "body", "problem": f"holds {name}, which is not a JSON number"}])


def _too_deep(path: str) -> Problem:
    return {"field": _printable(path), "problem": f"nests objects or lists deeper than {MAX_NESTING} levels"}


def _storable(fields: dict[str, Any]) -> dict[str, Any]:
    """Refuse what could be accepted and then fail on every write: text Postgres cannot store
    (NUL characters; lone surrogates from JSON escapes such as ``\\ud800``, which are not
    Unicode at all), numbers that are not finite, and nesting deeper than ``MAX_NESTING``."""
    pending: list[tuple[str, Any, int]] = [("", fields, 1)]
    while pending:
        path, value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > MAX_NESTING:
            raise InvalidPayload([_too_deep(path)])
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(f"{path}.{key}" if path else str(key), key)
                pending.append((f"{path}.{key}" if path else str(key), item, depth + 1))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(path, value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidPayload([{"field": _printable(path), "problem": "is not a finite number"}])
    return fields


def _check_text(path: str, text: str) -> None:
    if "\x00" in text:
        raise InvalidPayload([{"field": _printable(path), "problem": "contains a NUL character"}])
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayload([{"field": _printable(path), "problem": "is not valid Unicode"}]) from None


def _printable(path: str) -> str:
    return path.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00") or "body"


def _form_fields(text: str) -> dict[str, Any]:
    """Form parameters; PHP-style ``other[itemid]=5`` keys nest, repeated keys become lists."""
    fields: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        name, _, rest = key.removesuffix("[]").partition("[")
        *parents, leaf = [name, *rest.removesuffix("]").split("][")] if rest else [name]
        target = fields
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise InvalidPayload([{"field": part, "problem": "is given both as a value and as an object"}])
        if leaf not in target:
            target[leaf] = value
        elif isinstance(target[leaf], list):
            target[leaf].append(value)
        else:
            target[leaf] = [target[leaf], value]
    return fields


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


class ZohoFullRecord(BaseModel):
    """Shape 1: the record's data with a notification id."""

    model_config = _SOURCE_SPECIFIC

    notification_id: Identifier
    timestamp: Timestamp
    module: ZohoModule | None = None
    operation: OperationField
    record_id: Identifier | None = None
    data: dict[str, Any]


class ZohoMinimal(BaseModel):
    """Shape 2: an id, what happened, to which record."""

    model_config = _SOURCE_SPECIFIC

    event_id: Identifier
    event_type: OperationField
    module: ZohoModule | None = None
    record_id: Identifier
    changed_fields: list[str] | None = None
    timestamp: Timestamp


class ZohoRecordFields(BaseModel):
    """Shape 3: a workflow webhook posting the record's fields, ``id`` being the record id."""

    model_config = _SOURCE_SPECIFIC

    id: Identifier
    operation: OperationField = "update"
    module: ZohoModule | None = None
    modified_time: Timestamp | None = Field(None, validation_alias="Modified_Time")
    timestamp: Timestamp | None = None


class ZohoNotification(BaseModel):
    """Zoho's Notification API callback: which records of which module changed, ids only."""

    model_config = _SOURCE_SPECIFIC

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


class _Facts(NamedTuple):
    """What every shape is reduced to before it becomes an ``EventMessage``."""

    module: Module | None  # the module the body names, if any
    event_id: str | None  # the sender's own id, if any
    operation: Operation
    record_id: str
    occurred_at: datetime
    occurred_field: str  # where occurred_at came from, to name it in a 400


MISSING_MODIFIED_TIME = (
    "is required when the body has no notification_id or event_id: add the record's Modified Time to the "
    "webhook (Zoho CRM: Setup > Actions > Webhooks > Parameters > Module Parameters > Modified Time, "
    "parameter name Modified_Time)"
)


def _zoho_facts(fields: dict[str, Any]) -> _Facts:
    shape = zoho_shape(fields)
    if shape == "full":
        full = ZohoFullRecord.model_validate(fields)
        record_id = full.record_id or _record_id_in_data(full.data)
        modified = _optional_timestamp(full.data, "Modified_Time", "data.Modified_Time")
        when, field = (modified, "data.Modified_Time") if modified else (full.timestamp, "timestamp")
        return _Facts(
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
        return _Facts(
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
        return _Facts(
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
    return _Facts(
        module=flat.module,
        event_id=None,
        operation=flat.operation,
        record_id=flat.id,
        occurred_at=stamp,
        occurred_field="Modified_Time" if flat.modified_time else "timestamp",
    )


def _zoho_event(
    module: Module, fields: dict[str, Any], auth_method: AuthMethod | None = None
) -> tuple[EventMessage, _Facts]:
    facts = _zoho_facts(fields)
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
        return str(_identifier(data.get("id")))
    except ValueError:
        raise InvalidPayload([{"field": "record_id", "problem": "is required (or data.id)"}]) from None


class _Stamp(BaseModel):
    model_config = _SOURCE_SPECIFIC

    at: Timestamp


def _optional_timestamp(data: dict[str, Any], key: str, field: str) -> datetime | None:
    if data.get(key) in (None, ""):
        return None
    try:
        return _Stamp(at=data[key]).at
    except ValidationError:
        raise InvalidPayload([{"field": field, "problem": "is not a date-time"}]) from None


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

    model_config = _SOURCE_SPECIFIC

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


def _moodle_facts(data: MoodleEventData, fields: dict[str, Any]) -> MoodleFacts:
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


def _moodle_event(
    module: Module, fields: dict[str, Any], auth_method: AuthMethod | None = None
) -> tuple[EventMessage, _Facts]:
    data = MoodleEventData.model_validate(fields)
    known = MOODLE_EVENTS.get(data.canonical_name)
    if known is not None and known[0] != module:
        raise InvalidPayload(
            [{"field": "eventname", "problem": f"belongs to {known[0]}, not to this route ({module})"}]
        )
    operation = data.crud or (known[1] if known else _operation_from_name(data.canonical_name))
    moodle = _moodle_facts(data, fields)
    record_id = str(data.objectid) if data.objectid is not None else f"{moodle.student}:{data.courseid}"
    # Moodle's objectid and timecreated (one-second resolution) do not tell two changes apart; what
    # the event says (its name, people, course and "other") does.
    identity = [data.canonical_name, moodle.student, data.courseid, data.other]
    facts = _Facts(
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
        return _OPERATIONS[suffix]
    raise InvalidPayload([{"field": "crud", "problem": "is required when eventname does not say the operation"}])


# ---------------------------------------------------------------- entry point


def derived_event_id(
    source: Source,
    module: Module,
    record_id: str,
    operation: Operation,
    occurred_at: datetime,
    content: Any,
) -> str:
    """A deterministic id for payloads that carry none: the same change always hashes the same.

    The change is identified by source, module, record, operation and source timestamp, and by
    what it says (``content``: a Zoho record's fields; a Moodle event's name, people, course and
    ``other``), so two different changes within one second of each other get different ids.
    """
    facts = [source, module, record_id, operation, occurred_at.isoformat(), content]
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def prepare(source: Source) -> None:
    """Build the validators of ``source``'s payload shapes now rather than on the first request."""
    models = (
        (ZohoFullRecord, ZohoMinimal, ZohoRecordFields, ZohoNotification, _Stamp)
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
            _zoho_event(module, fields, auth_method) if source == "zoho" else _moodle_event(module, fields, auth_method)
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
        event, _ = _zoho_event(module, payload) if source == "zoho" else _moodle_event(module, payload)
    except ValidationError as error:
        raise InvalidPayload(problems(error)) from None
    return event.facts


def problems(error: ValidationError, whole: str = "body") -> list[Problem]:
    """pydantic's errors as ``{"field", "problem"}`` pairs, never echoing the input.

    An error about the whole document (no field) is reported against ``whole``.
    """
    return [
        {"field": ".".join(str(part) for part in e["loc"]) or whole, "problem": e["msg"]}
        for e in error.errors(include_url=False, include_input=False)
    ]
