"""The migrations build exactly the schema the code declares."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from event_router.contract import DeliveryStatus, EventStatus
from event_router.operate.migrate import MIGRATIONS, make_engine, upgrade_engine
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


def _migrate(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    step(config, revision)


LOG_TOTALS = """
SELECT source, module, status, count(*) FROM integration_events_log GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
COUNTED = "SELECT source, module, status, sum(n) FROM event_counts GROUP BY 1, 2, 3 HAVING sum(n) <> 0 ORDER BY 1, 2, 3"
DAY_LOG = "SELECT {keys}, count(*), count(processing_ms) FROM integration_events_log GROUP BY {keys} ORDER BY {keys}"
DAY_ROLLUP = "SELECT {keys}, sum(n), sum(ms_n) FROM event_minutes GROUP BY {keys} HAVING sum(n) <> 0 ORDER BY {keys}"
WRITES = (
    "INSERT INTO integration_events_log (event_id, source, module, event_type, record_id, payload, status)"
    " SELECT 'undo-{round}-' || i, 'zoho', (ARRAY['students', 'grades'])[1 + i % 2], 'update', 'r', '{{}}', 'queued'"
    " FROM generate_series(1, 20) AS i",
    "UPDATE integration_events_log SET status = 'completed', processing_ms = id % 50 WHERE id % 3 = 0",
    "DELETE FROM integration_events_log WHERE id % 7 = 0",
)


def test_the_one_log_trigger_of_0016_can_be_undone_and_redone(fresh_database: Callable[[str], str]) -> None:
    """Downgrading to 0015 puts back the two triggers a write fired before, each keeping its table
    exact; upgrading again backfills the day by module and keeps every total exact."""
    engine = make_engine(fresh_database("undo_0016"))

    def write_and_compare(round_: int, day_keys: str) -> None:
        with engine.begin() as connection:
            for write in WRITES:
                connection.execute(text(write.format(round=round_)))
        with engine.connect() as connection:
            assert connection.execute(text(COUNTED)).all() == connection.execute(text(LOG_TOTALS)).all()
            rollup = connection.execute(text(DAY_ROLLUP.format(keys=day_keys))).all()
            assert rollup == connection.execute(text(DAY_LOG.format(keys=day_keys))).all()

    try:
        upgrade_engine(engine)
        write_and_compare(1, "module, status")
        _migrate(engine, command.downgrade, "0015")
        write_and_compare(2, "status")
        _migrate(engine, command.upgrade, "head")
        write_and_compare(3, "module, status")
    finally:
        engine.dispose()


def test_the_histograms_bucket_in_double_precision_is_the_exact_one(engine: Engine) -> None:
    """Migration 0016 computes the processing-time histogram's bucket, floor(4 * log2(ms + 1)), in
    double precision: it must be the bucket 0014 computed exactly, for every time an int can hold
    (the boundaries are the powers of two; elsewhere an integer is never near one)."""
    spec = importlib.util.spec_from_file_location("m0016", MIGRATIONS / "versions" / "0016_one_log_trigger.py")
    assert spec is not None
    assert spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    differing = f"""
        SELECT processing_ms FROM (
            SELECT generate_series(0, 100000) AS processing_ms
            UNION ALL SELECT (2::bigint ^ k)::bigint + d FROM generate_series(0, 30) AS k, generate_series(-2, 1) AS d
            UNION ALL SELECT 2147483647
        ) AS times
        WHERE processing_ms >= 0 AND {migration.BUCKET} <> LEAST(63, FLOOR(4 * LOG(2, processing_ms + 1)))"""
    with engine.connect() as connection:
        assert connection.execute(text(differing)).all() == []
