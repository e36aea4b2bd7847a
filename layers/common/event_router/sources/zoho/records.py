"""Reading Zoho records back: Zoho as the source of a record's fields, and of a class's Moodle course.

An ids-only notification (or Zoho's minimal webhook) names a record without its fields; the
processor reads the record from Zoho, up to 100 a call, before its module's rule runs. The fields
asked for are those the rules and the deliveries read, with the college's mapping applied
(``FieldMapping.zoho_fields``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from itertools import batched
from typing import TYPE_CHECKING, Any

from event_router.contract import ZOHO_CLASSES_MODULE, ZOHO_MODULE_NAMES, ZOHO_RECORDS_PER_CALL, Module
from event_router.mapping import FieldMapping, field_mapping
from event_router.messages import EventMessage, ZohoRecord
from event_router.settings import Settings
from event_router.store.connection import PreparedConnection
from event_router.store.zoho import PgZohoState

if TYPE_CHECKING:  # the client's module loads urllib3: only functions that call Zoho pay for it
    from event_router.deliver.zoho.client import ZohoClient


class ZohoRecords:
    """The processors' source of whole records: Zoho CRM's API."""

    def __init__(self, client: Callable[[], ZohoClient], mapping: FieldMapping) -> None:
        self._client = client
        self._mapping = mapping

    def fetch(self, module: Module, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        fields = self._mapping.zoho_fields(module)
        for chunk in batched(ids, ZOHO_RECORDS_PER_CALL):
            for record in self._client().records(ZOHO_MODULE_NAMES[module], list(chunk), fields):
                found[str(record["id"])] = record
        return found


def with_record(event: EventMessage, record: dict[str, Any]) -> EventMessage:
    """``event`` with the record's fields, dated by the record's own ``Modified_Time``."""
    occurred_at = event.occurred_at
    stamp = record.get("Modified_Time")
    if isinstance(stamp, str):
        with contextlib.suppress(ValueError):
            occurred_at = datetime.fromisoformat(stamp)
    return event.model_copy(update={"facts": ZohoRecord(fields=record), "occurred_at": occurred_at})


class ZohoClassCourses:
    """Classes read from Zoho CRM, their course idnumbers kept in Postgres."""

    def __init__(self, state: PgZohoState, zoho: Callable[[], ZohoClient], mapping: FieldMapping) -> None:
        self._state, self._zoho, self._mapping = state, zoho, mapping

    def course_of(self, class_zoho_id: str) -> str | None:
        known, idnumber = self._state.class_course(class_zoho_id)
        if known:
            return idnumber
        field = self._mapping.class_course_idnumber
        found = self._zoho().records(ZOHO_CLASSES_MODULE, [class_zoho_id], ["Name", field])
        idnumber = str(found[0].get(field) or "").strip() or None if found else None
        if idnumber is not None:  # a class without one yet is asked again next time
            self._state.remember_class(class_zoho_id, idnumber)
        return idnumber


def class_courses(settings: Settings, connection: PreparedConnection) -> ZohoClassCourses | None:
    """The Moodle delivery's source of class courses, when Zoho is connected."""
    if not settings.zoho_configured():
        return None
    from event_router.deliver.zoho.client import zoho_client  # noqa: PLC0415 - urllib3: only where Zoho is read

    state = PgZohoState(connection, settings.zoho_max_concurrent_calls)
    return ZohoClassCourses(state, zoho_client(settings, connection), field_mapping(settings))
