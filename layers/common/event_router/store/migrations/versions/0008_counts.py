"""Counts that do not grow with history: ``/stats`` reads the event log's and the deliveries' totals
by status from small counter tables, kept exact by statement-level triggers in the very transactions
that insert rows or change their status (docs/operate.md).

Each counter is split into shards by the writing session (``pg_backend_pid() % 16``), so concurrent
verifiers and processors do not queue on one hot row; a statement's changes are applied in key order,
so two sessions never wait on each other in a cycle. The totals are backfilled while the trigger is
already in place (creating it locks out writers until the migration commits).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SHARDS = 16


def _counter(name: str, table: str, keys: tuple[str, ...]) -> None:
    columns = ", ".join(keys)
    op.create_table(
        name,
        *(sa.Column(k, sa.Text, nullable=False) for k in keys),
        sa.Column("shard", sa.SmallInteger, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(*keys, "shard", name=f"pk_{name}"),
    )

    def change(rows: str) -> str:
        return f"""
            INSERT INTO {name} ({columns}, shard, n)
            SELECT {columns}, pg_backend_pid() % {SHARDS}, sum(d) FROM ({rows}) AS changed
            GROUP BY {columns} HAVING sum(d) <> 0
            ORDER BY {columns}
            ON CONFLICT ({columns}, shard) DO UPDATE SET n = {name}.n + EXCLUDED.n"""

    bodies = {
        "INSERT": (f"SELECT {columns}, 1 AS d FROM inserted", "REFERENCING NEW TABLE AS inserted"),
        "UPDATE": (
            f"SELECT {columns}, -1 AS d FROM before_update UNION ALL SELECT {columns}, 1 AS d FROM after_update",
            "REFERENCING OLD TABLE AS before_update NEW TABLE AS after_update",
        ),
        "DELETE": (f"SELECT {columns}, -1 AS d FROM deleted", "REFERENCING OLD TABLE AS deleted"),
    }
    for operation, (rows, transition) in bodies.items():
        function = f"{name}_on_{operation.lower()}"
        op.execute(f"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {change(rows)}; RETURN NULL; END $$""")
        op.execute(
            f"CREATE TRIGGER {function} AFTER {operation} ON {table} {transition} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    op.execute(
        f"INSERT INTO {name} ({columns}, shard, n) SELECT {columns}, 0, count(*) FROM {table} GROUP BY {columns}"
    )


def upgrade() -> None:
    _counter("event_counts", "integration_events_log", ("source", "module", "status"))
    _counter("delivery_counts", "deliveries", ("destination", "status"))
    # The newest failures and deliveries needing a look, found without sorting their whole history.
    op.create_index(
        "ix_integration_events_log_failed_updated_at",
        "integration_events_log",
        ["updated_at"],
        postgresql_where=sa.text("status IN ('failed', 'dead_lettered')"),
    )
    op.create_index("ix_deliveries_status_updated_at", "deliveries", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_updated_at", "deliveries")
    op.drop_index("ix_integration_events_log_failed_updated_at", "integration_events_log")
    for name, table in (("event_counts", "integration_events_log"), ("delivery_counts", "deliveries")):
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER {name}_on_{operation} ON {table}")
            op.execute(f"DROP FUNCTION {name}_on_{operation}()")
        op.drop_table(name)
