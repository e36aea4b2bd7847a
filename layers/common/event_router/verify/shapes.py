"""What every source's payload shapes share: operation synonyms, identifiers, the facts a shape is
reduced to, and the event id derived for a payload that carries none (docs/decisions.md).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Annotated, Any, NamedTuple

from pydantic import BeforeValidator, ConfigDict, Field

from event_router.contract import (
    Module,
    Operation,
    Source,
)

DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=5)

OPERATIONS: dict[str, Operation] = {
    **dict.fromkeys(("create", "created", "insert", "inserted", "add", "added", "c"), "create"),
    **dict.fromkeys(("update", "updated", "edit", "edited", "modify", "modified", "u"), "update"),
    **dict.fromkeys(("delete", "deleted", "remove", "removed", "d"), "delete"),
}


def _operation(value: Any) -> Any:
    if isinstance(value, str):
        normalised = OPERATIONS.get(value.strip().lower())
        if normalised is None:
            raise ValueError("unknown operation; expected create, update or delete (or a synonym)")
        return normalised
    return value


def identifier(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("must be a string or an integer")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


# The models of one source are built when ``prepare(source)`` says that source is wanted, so a
# verifier builds only its own source's validators at start-up (docs/benchmarks.md, cold start).
SOURCE_SPECIFIC = ConfigDict(defer_build=True)

OperationField = Annotated[Operation, BeforeValidator(_operation)]
Identifier = Annotated[str, BeforeValidator(identifier), Field(max_length=200)]


class Facts(NamedTuple):
    """What every shape is reduced to before it becomes an ``EventMessage``."""

    module: Module | None  # the module the body names, if any
    event_id: str | None  # the sender's own id, if any
    operation: Operation
    record_id: str
    occurred_at: datetime
    occurred_field: str  # where occurred_at came from, to name it in a 400


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
