"""The migrations build exactly the schema the code declares."""

from __future__ import annotations

import re

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from event_router.contract import DeliveryStatus, EventStatus
from event_router.store.schema import metadata


def test_migrated_database_matches_the_schema_metadata(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)

    assert differences == []


STATUS_CHECK = """
SELECT pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = CAST(:table AS regclass) AND contype = 'c' AND pg_get_constraintdef(oid) LIKE 'CHECK ((status %'"""


def _allowed(engine: Engine, table: str) -> set[str]:
    """The statuses the CHECK constraint on ``table.status`` of the migrated database allows."""
    with engine.connect() as connection:
        definition = connection.execute(text(STATUS_CHECK), {"table": table}).scalar_one()
    return set(re.findall(r"'([a-z_]+)'", definition))


def test_the_status_vocabularies_are_the_ones_the_database_allows(engine: Engine) -> None:
    assert _allowed(engine, "deliveries") == {s.value for s in DeliveryStatus}
    assert _allowed(engine, "integration_events_log") == {s.value for s in EventStatus}
