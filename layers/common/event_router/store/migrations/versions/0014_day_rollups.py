"""The day's figures kept by the writes: ``/stats`` reads the last 24 hours from rollups, not from the log.

- ``event_minutes``: per minute of ``received_at`` and status, the events and the sum of their
  ``processing_ms`` (the day's counts by status, and its average);
- ``event_ms_hours``: per hour of ``received_at``, a histogram of ``processing_ms`` in buckets a
  quarter of a power of two wide (about 19%): the day's 95th percentile, to that precision.

Both are kept exact by statement-level triggers on the event log, in the very transactions that write
it (an insert adds, an update moves a row between buckets, a delete removes), split into shards by
the writing session as the counters of migration 0008 are, and run as their owner as those do
(migration 0012). They are backfilled from the last two days of the log; the sweep deletes buckets
older than two days.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SHARDS = 16
# The histogram bucket of a processing time: floor(4 * log2(ms + 1)), the last one open-ended.
BUCKET = "LEAST(63, FLOOR(4 * LOG(2, processing_ms + 1)))"
ROLLUPS = {
    "event_minutes": (
        "date_trunc('minute', received_at) AS minute, status",
        "minute, status",
        "sum(d) AS n, sum(d * (processing_ms IS NOT NULL)::int) AS ms_n, sum(d * coalesce(processing_ms, 0)) AS ms_sum",
        "n <> 0 OR ms_n <> 0 OR ms_sum <> 0",
        "n = {t}.n + EXCLUDED.n, ms_n = {t}.ms_n + EXCLUDED.ms_n, ms_sum = {t}.ms_sum + EXCLUDED.ms_sum",
        "n, ms_n, ms_sum",
    ),
    "event_ms_hours": (
        f"date_trunc('hour', received_at) AS hour, {BUCKET} AS bucket",
        "hour, bucket",
        "sum(d) AS n",
        "n <> 0",
        "n = {t}.n + EXCLUDED.n",
        "n",
    ),
}
TABLES = {  # table → (period column, key column, its type, the sums besides the count)
    "event_minutes": ("minute", "status", sa.Text, ("ms_n", "ms_sum")),
    "event_ms_hours": ("hour", "bucket", sa.SmallInteger, ()),
}
TRANSITIONS = {
    "insert": ("SELECT *, 1 AS d FROM inserted", "REFERENCING NEW TABLE AS inserted"),
    "update": (
        "SELECT *, -1 AS d FROM before_update UNION ALL SELECT *, 1 AS d FROM after_update",
        "REFERENCING OLD TABLE AS before_update NEW TABLE AS after_update",
    ),
    "delete": ("SELECT *, -1 AS d FROM deleted", "REFERENCING OLD TABLE AS deleted"),
}


def _upsert(table: str, rows: str) -> str:
    keys, key_names, sums, nonzero, merge, sum_names = ROLLUPS[table]
    where = "" if table == "event_minutes" else "WHERE processing_ms IS NOT NULL"
    return f"""
        INSERT INTO {table} ({key_names}, shard, {sum_names})
        SELECT * FROM (
            SELECT {keys}, pg_backend_pid() % {SHARDS} AS shard, {sums}
            FROM ({rows}) AS changed {where} GROUP BY 1, 2
        ) AS delta
        WHERE {nonzero}
        ORDER BY 1, 2
        ON CONFLICT ({key_names}, shard) DO UPDATE SET {merge.format(t=table)}"""


def upgrade() -> None:
    for table, (period, key, key_type, sums) in TABLES.items():
        op.create_table(
            table,
            sa.Column(period, sa.DateTime(timezone=True), nullable=False),
            sa.Column(key, key_type, nullable=False),
            sa.Column("shard", sa.SmallInteger, nullable=False),
            *(sa.Column(total, sa.BigInteger, nullable=False) for total in ("n", *sums)),
            sa.PrimaryKeyConstraint(period, key, "shard", name=f"pk_{table}"),
        )
    for operation, (rows, transition) in TRANSITIONS.items():
        function = f"event_rollups_on_{operation}"
        body = ";".join(_upsert(table, rows) for table in ROLLUPS)
        op.execute(f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = public, pg_temp AS $$
            BEGIN {body}; RETURN NULL; END $$""")
        op.execute(
            f"CREATE TRIGGER {function} AFTER {operation.upper()} ON integration_events_log {transition} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    recent = "SELECT *, 1 AS d FROM integration_events_log WHERE received_at >= now() - interval '2 days'"
    for table in ROLLUPS:
        op.execute(_upsert(table, recent))


def downgrade() -> None:
    for operation in TRANSITIONS:
        op.execute(f"DROP TRIGGER event_rollups_on_{operation} ON integration_events_log")
        op.execute(f"DROP FUNCTION event_rollups_on_{operation}()")
    op.drop_table("event_ms_hours")
    op.drop_table("event_minutes")
