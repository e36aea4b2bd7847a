"""Rejections counted per minute; mirror rows remember the log row that wrote them; an app role.

- ``rejected_requests`` becomes one row per (minute, source, route, cause) with a ``count``, so a
  flood of forged requests costs a bounded number of writes (existing rows are merged).
- Every mirror table gets ``last_log_id``: between two events with the same source timestamp, the
  one that arrived later (higher event-log id) wins, whatever order they are processed in.
- ``event_router_app``, a role without login holding DML rights on the router's tables, for the
  functions' own login (``MigrateFunction`` creates that login from its secret).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MIRRORS = ("students", "enrollments", "grades", "moodle_enrolments", "moodle_grades")
APP_ROLE = "event_router_app"


def upgrade() -> None:
    op.add_column("rejected_requests", sa.Column("minute", sa.DateTime(timezone=True)))
    op.add_column("rejected_requests", sa.Column("count", sa.Integer, nullable=False, server_default="1"))
    op.execute("UPDATE rejected_requests SET minute = date_trunc('minute', received_at)")
    op.execute("""
        WITH grouped AS (
            SELECT min(id) AS keep, minute, source, route, cause, count(*) AS n, max(received_at) AS last
            FROM rejected_requests GROUP BY minute, source, route, cause HAVING count(*) > 1
        ), merged AS (
            UPDATE rejected_requests r SET count = g.n, received_at = g.last FROM grouped g WHERE r.id = g.keep
        )
        DELETE FROM rejected_requests r USING grouped g
        WHERE (r.minute, r.source, r.route, r.cause) = (g.minute, g.source, g.route, g.cause) AND r.id <> g.keep""")
    op.alter_column("rejected_requests", "minute", nullable=False)
    op.execute("UPDATE rejected_requests SET source = 'unknown' WHERE source IS NULL")
    op.alter_column("rejected_requests", "source", nullable=False)
    op.create_unique_constraint(
        "uq_rejected_requests_minute_source_route_cause", "rejected_requests", ["minute", "source", "route", "cause"]
    )

    for table in MIRRORS:
        op.add_column(table, sa.Column("last_log_id", sa.BigInteger))

    op.execute(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            END IF;
        END $$""")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"REVOKE ALL ON alembic_version FROM {APP_ROLE}")
    # Postgres 15 and later already refuse CREATE in public to everyone but its owner; older ones do not.
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    # Tables later migrations create get the same rights (they run as the same owner).
    defaults = "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT"
    op.execute(f"{defaults} SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}")
    op.execute(f"{defaults} USAGE, SELECT ON SEQUENCES TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    for table in MIRRORS:
        op.drop_column(table, "last_log_id")
    op.drop_constraint("uq_rejected_requests_minute_source_route_cause", "rejected_requests")
    op.alter_column("rejected_requests", "source", nullable=True)
    op.drop_column("rejected_requests", "count")
    op.drop_column("rejected_requests", "minute")
