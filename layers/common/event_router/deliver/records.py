"""Reading Zoho records back, and the Zoho client a function makes from its settings.

An ids-only notification (or Zoho's minimal webhook) names a record without its fields; the
processor reads the record from Zoho, up to 100 a call, before its module's rule runs. The fields
asked for are those the rules and the deliveries read, with the college's mapping applied.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from event_router.contract import ZOHO_MODULE_NAMES, Module
from event_router.messages import EventMessage, ZohoRecord
from event_router.settings import Settings

if TYPE_CHECKING:  # the client's module loads urllib: only functions that call Zoho pay for it
    from event_router.deliver.provision import FieldMapping
    from event_router.deliver.zoho import Credentials, ZohoClient
    from event_router.store.connection import PreparedConnection

COMMON = ("Name", "Modified_Time", "Modified_By")
_FIELDS: dict[Module, tuple[str, ...]] = {
    "students": ("First_Name", "Last_Name", "Student_ID_Number", "Academic_Email", "Moodle_User_ID"),
    "enrollments": ("Enrolled_Students", "Student", "Classes", "Class", "Enrollment_Status", "Status"),
    "grades": ("Student", "Students", "Enrolled_Students", "Grade", "Class"),
    "payments": ("Student", "Amount", "Currency", "Payment_Status"),
}


def fields_of(module: Module, mapping: FieldMapping) -> list[str]:
    """What to ask Zoho for of a ``module`` record (Zoho's API wants the list)."""
    mapped: dict[Module, tuple[str, ...]] = {
        "students": (
            mapping.student_number,
            mapping.email,
            mapping.first_name,
            mapping.last_name,
            mapping.name,
            mapping.moodle_user_id,
        ),
        "enrollments": (mapping.course_idnumber,),
        "grades": (),
        "payments": (),
    }
    return list(dict.fromkeys((*COMMON, *_FIELDS[module], *mapped[module])))


class ZohoRecords:
    """The processors' source of whole records: Zoho CRM's API."""

    def __init__(self, client: Callable[[], ZohoClient], mapping: FieldMapping) -> None:
        self._client = client
        self._mapping = mapping

    def fetch(self, module: Module, ids: list[str]) -> dict[str, dict[str, Any]]:
        from event_router.deliver.zoho import batches  # noqa: PLC0415

        found: dict[str, dict[str, Any]] = {}
        for chunk in batches(ids):
            fields = fields_of(module, self._mapping)
            for record in self._client().records(ZOHO_MODULE_NAMES[module], chunk, fields):
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


def zoho_client(settings: Settings, connection: PreparedConnection) -> Callable[[], ZohoClient]:
    """The Zoho client of this container, made on first use: the data centre's accounts server (or
    ``ZOHO_ACCOUNTS_URL``), the credentials of ``ZOHO_CREDENTIALS`` or the Secrets Manager secret
    (read again every ``SECRETS_MAX_AGE``), the token and call slots shared through Postgres. A
    function given no credentials (``ZOHO_API=true`` alone) calls with the shared token only."""
    made: list[ZohoClient] = []

    def client() -> ZohoClient:
        if not made:
            from event_router.deliver.zoho import API_DOMAINS, DATA_CENTRES, ZohoClient, ZohoError  # noqa: PLC0415
            from event_router.store.zoho import PgZohoState  # noqa: PLC0415

            centre = DATA_CENTRES.get(settings.zoho_data_centre)
            if settings.zoho_accounts_url:  # a Zoho stand-in (development): its API is on its own host
                accounts, api_domains = settings.zoho_accounts_url, API_DOMAINS | {settings.zoho_accounts_url}
            elif centre is not None:
                accounts, api_domains = centre.accounts, frozenset({centre.api})
            else:
                raise ZohoError("configuration", "datacentre", f"unknown data centre {settings.zoho_data_centre!r}")
            state = PgZohoState(connection, settings.zoho_max_concurrent_calls)
            made.append(
                ZohoClient(
                    accounts,
                    (lambda: credentials(settings)) if settings.zoho_refreshes() else None,
                    state,
                    state,
                    timeout=settings.zoho_timeout_seconds,
                    api_domains=api_domains,
                )
            )
        return made[0]

    return client


def credentials(settings: Settings) -> Credentials:
    from event_router.deliver.zoho import Credentials, ZohoError  # noqa: PLC0415

    if settings.zoho_credentials:
        return Credentials.from_json(settings.zoho_credentials)
    if not settings.zoho_credentials_secret_arn:
        raise ZohoError("configuration", "nocredentials", "no Zoho credentials are configured")
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - only where a secret is used

    try:
        raw = parameters.get_secret(settings.zoho_credentials_secret_arn, max_age=settings.secrets_max_age)
    except Exception as error:  # noqa: BLE001 - an unreadable secret: try again later
        raise ZohoError("transient", "secretunavailable", type(error).__name__) from None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return Credentials.from_json(text if text.strip().startswith("{") else json.dumps({}))
