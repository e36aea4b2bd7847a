"""Sync rules: what one event means for the mirror tables of its module (docs/decisions.md, docs/operate.md).

Each module has a ``plan(event)`` that returns one of three changes, or raises ``CannotApply``
when the event can never apply (a required field is missing):

- ``MirrorWrite``: upsert (or tombstone) one row of a mirror table;
- ``LogOnly``: nothing to mirror, the event-log row is the record (payments);
- ``Skip``: nothing to do, for a stated reason.

The rules are pure: they read the message's typed facts and nothing else, and
``store/mirror.py`` turns a change into SQL with the stale-write guard and the event's
completion in one statement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from event_router.errors import Problem
from event_router.messages import MAX_ID, EventMessage, ZohoRecord


class CannotApply(Exception):
    """The event can never apply: retrying it would fail the same way."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p['field']} {p['problem']}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class MirrorWrite:
    """Upsert one mirror row, or with ``tombstone`` mark it deleted; guarded against stale events."""

    table: str
    key: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    tombstone: bool = False

    @property
    def action(self) -> str:
        return "deleted" if self.tombstone else "upserted"


@dataclass(frozen=True)
class LogOnly:
    """Nothing to mirror; ``summary`` goes into the event's ``result``."""

    summary: dict[str, Any]


@dataclass(frozen=True)
class Skip:
    reason: str


Change = MirrorWrite | LogOnly | Skip


def zoho_record_change(event: EventMessage, table: str, columns: Callable[[dict[str, Any]], dict[str, Any]]) -> Change:
    """The change a Zoho event makes to its mirror row: a tombstone for a delete, otherwise the
    record's mapped ``columns`` plus its fields in ``data``; nothing when the webhook had no fields."""
    key = {"zoho_record_id": event.record_id}
    if event.event_type == "delete":
        return MirrorWrite(table, key, tombstone=True)
    record = zoho_fields(event)
    if record is None:
        return Skip("no_record_data")
    return MirrorWrite(table, key, {**columns(record), "data": record})


def zoho_fields(event: EventMessage) -> dict[str, Any] | None:
    """The record's field values a Zoho event carries (None when it carried none)."""
    return event.facts.fields if isinstance(event.facts, ZohoRecord) else None


# ---------------------------------------------------------------- reading Zoho fields


def text(data: dict[str, Any], *names: str) -> str | None:
    """The first of ``names`` present as text (numbers become text); None when absent or empty."""
    for name in names:
        value = data.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise CannotApply([{"field": name, "problem": "must be text"}])
        return str(value)
    return None


def integer(data: dict[str, Any], name: str) -> int | None:
    """A non-negative integer id that fits a Postgres bigint; None when absent or empty."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return value
    raise CannotApply([{"field": name, "problem": f"must be an integer from 0 to {MAX_ID}"}])


def lookup(data: dict[str, Any], *names: str) -> str | None:
    """A Zoho lookup field's record id: given as ``{"id", "name"}``, a plain id, or a list of one."""
    for name in names:
        value = data.get(name)
        if isinstance(value, list):
            if len(value) != 1:
                raise CannotApply([{"field": name, "problem": "must reference exactly one record"}])
            value = value[0]
        if isinstance(value, dict):
            value = value.get("id")
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise CannotApply([{"field": name, "problem": "must be a record id or an {id, name} object"}])
        return str(value)
    return None


def required(values: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """``values`` unchanged, or ``CannotApply`` naming each missing field (column → Zoho field)."""
    missing = [{"field": zoho, "problem": "is required"} for column, zoho in fields.items() if values[column] is None]
    if missing:
        raise CannotApply(missing)  # type: ignore[arg-type]
    return values
