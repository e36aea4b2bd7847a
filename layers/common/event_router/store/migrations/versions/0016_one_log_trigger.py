"""The day's events by module, and one trigger per write on the event log.

- ``event_minutes`` gains ``module``: the console's overview shows the day's events by status *and*
  module from the rollups, as ``/stats`` shows them by status (docs/operate.md, "The console").
  The table is rebuilt and backfilled from the last two days of the log, as migration 0014 did.
- The log's statement triggers of migrations 0008 (``event_counts``) and 0014 (``event_minutes``,
  ``event_ms_hours``) become one per operation: one statement that reads the statement's changed
  rows once and updates the three tables, instead of two trigger calls and three statements. Every
  batch a processor settles pays for these triggers (docs/benchmarks.md); what they keep, and how
  (shards by the writing session, changes in key order, run as their owner), is unchanged; the
  histogram's bucket is computed in double precision instead of numeric, the same buckets at a
  fraction of the cost.

Creating the triggers locks out writers to the log until the migration commits; the backfill reads
two days of the log (a few seconds on a busy day).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

SHARDS = 16
SHARD = f"pg_backend_pid() % {SHARDS}"
# The histogram bucket of a processing time: floor(4 * log2(ms + 1)), the last one open-ended. In
# double precision: 0014's two-argument LOG is numeric's, and took half the triggers' time; both give
# the same bucket for every time an integer column can hold (tests/integration/test_migrations.py).
BUCKET = "LEAST(63, FLOOR(4 * LN(processing_ms + 1::float8) / LN(2::float8)))"
CHANGED = "source, module, status, received_at, processing_ms"  # all the triggers read of a log row
TRANSITIONS = {
    "insert": (f"SELECT {CHANGED}, 1 AS d FROM inserted", "REFERENCING NEW TABLE AS inserted"),
    "update": (
        f"SELECT {CHANGED}, -1 AS d FROM before_update UNION ALL SELECT {CHANGED}, 1 AS d FROM after_update",
        "REFERENCING OLD TABLE AS before_update NEW TABLE AS after_update",
    ),
    "delete": (f"SELECT {CHANGED}, -1 AS d FROM deleted", "REFERENCING OLD TABLE AS deleted"),
}


def _counts() -> str:
    """All-time totals by source, module and status (migration 0008)."""
    return f"""
        INSERT INTO event_counts (source, module, status, shard, n)
        SELECT source, module, status, {SHARD}, sum(d) FROM changed
        GROUP BY source, module, status HAVING sum(d) <> 0
        ORDER BY source, module, status
        ON CONFLICT (source, module, status, shard) DO UPDATE SET n = event_counts.n + EXCLUDED.n"""


def _minutes(by_module: bool) -> str:
    """The day's counts and processing times by minute, status (and module): migration 0014."""
    keys = "minute, module, status" if by_module else "minute, status"
    return f"""
        INSERT INTO event_minutes ({keys}, shard, n, ms_n, ms_sum)
        SELECT date_trunc('minute', received_at) AS minute, {keys.removeprefix("minute, ")}, {SHARD},
            sum(d), sum(d * (processing_ms IS NOT NULL)::int), sum(d * coalesce(processing_ms, 0))
        FROM changed GROUP BY {keys}
        HAVING sum(d) <> 0 OR sum(d * (processing_ms IS NOT NULL)::int) <> 0
            OR sum(d * coalesce(processing_ms, 0)) <> 0
        ORDER BY {keys}
        ON CONFLICT ({keys}, shard) DO UPDATE SET n = event_minutes.n + EXCLUDED.n,
            ms_n = event_minutes.ms_n + EXCLUDED.ms_n, ms_sum = event_minutes.ms_sum + EXCLUDED.ms_sum"""


def _hours() -> str:
    """The day's histogram of processing times by hour (migration 0014)."""
    return f"""
        INSERT INTO event_ms_hours (hour, bucket, shard, n)
        SELECT date_trunc('hour', received_at) AS hour, {BUCKET} AS bucket, {SHARD}, sum(d)
        FROM changed WHERE processing_ms IS NOT NULL
        GROUP BY hour, bucket HAVING sum(d) <> 0
        ORDER BY hour, bucket
        ON CONFLICT (hour, bucket, shard) DO UPDATE SET n = event_ms_hours.n + EXCLUDED.n"""


def _one_statement(rows: str, writes: list[str]) -> str:
    """``writes`` (upserts reading ``changed``) as one statement over ``rows``, read once."""
    *first, last = writes
    steps = "".join(f", w{i} AS ({write})" for i, write in enumerate(first))
    return f"WITH changed AS MATERIALIZED ({rows}){steps} {last}"


def _trigger(function: str, operation: str, writes: list[str]) -> None:
    rows, transition = TRANSITIONS[operation]
    op.execute(f"""
        CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN {_one_statement(rows, writes)}; RETURN NULL; END $$""")
    op.execute(
        f"CREATE TRIGGER {function} AFTER {operation.upper()} ON integration_events_log {transition} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    )


def _drop_trigger(function: str) -> None:
    op.execute(f"DROP TRIGGER {function} ON integration_events_log")
    op.execute(f"DROP FUNCTION {function}()")


def _event_minutes(by_module: bool) -> None:
    """``event_minutes`` rebuilt, and backfilled from the last two days of the log."""
    op.drop_table("event_minutes")
    keys = ("minute", "module", "status") if by_module else ("minute", "status")
    op.create_table(
        "event_minutes",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(key, sa.Text, nullable=False) for key in keys[1:]),
        sa.Column("shard", sa.SmallInteger, nullable=False),
        *(sa.Column(total, sa.BigInteger, nullable=False) for total in ("n", "ms_n", "ms_sum")),
        sa.PrimaryKeyConstraint(*keys, "shard", name="pk_event_minutes"),
    )
    recent = f"SELECT {CHANGED}, 1 AS d FROM integration_events_log WHERE received_at >= now() - interval '2 days'"
    op.execute(_one_statement(recent, [_minutes(by_module)]))


def upgrade() -> None:
    for operation in TRANSITIONS:
        _drop_trigger(f"event_counts_on_{operation}")
        _drop_trigger(f"event_rollups_on_{operation}")
        _trigger(f"event_log_on_{operation}", operation, [_counts(), _minutes(True), _hours()])
    _event_minutes(by_module=True)


def downgrade() -> None:
    for operation in TRANSITIONS:
        _drop_trigger(f"event_log_on_{operation}")
        _trigger(f"event_counts_on_{operation}", operation, [_counts()])
        _trigger(f"event_rollups_on_{operation}", operation, [_minutes(False), _hours()])
    _event_minutes(by_module=False)
