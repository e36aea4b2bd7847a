"""One database role per kind of function, each with only the rights its statements use.

Until now every runtime function signed in as a member of ``event_router_app`` (DML on every
table), so the internet-facing verifiers could read the Zoho access token or rewrite the address it
is sent to. From here (docs/decisions.md, "One login per kind of function"):

- ``event_router_ingest`` (the webhook verifiers): insert an event, read back its id, mark it
  ``queued``; add rejection counts. Column by column: no payload, token or mirror row can be read.
- ``event_router_process`` (the module processors): the event log, the mirror, the deliveries they
  plan; read the router's identities, the erasure register and the Zoho access token (they read
  ids-only records from Zoho), never write the token.
- ``event_router_deliver`` (the Moodle and Zoho delivery functions): the deliveries and what they
  learn about each side (courses, accounts, classes, the Zoho token); read the mirror.
- ``event_router_reconcile`` (the reconciliation): everything the operators' role has, and read the
  Zoho token.
- ``event_router_app`` (replay, monitor, privacy): DML on the router's tables, as before, except the
  Zoho token, which it may no longer read.

The counter triggers of migration 0008 now run as their owner (``SECURITY DEFINER``), so a role
that may insert into the event log need not also be able to write the counters. Tables created by
later migrations reach ``event_router_app`` by default privileges; every other role gets only what
a migration grants it by name.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LOG = "integration_events_log"
MIRRORS = ("students", "enrollments", "grades", "moodle_enrolments", "moodle_grades")
COUNTER_TRIGGERS = tuple(
    f"{counter}_on_{operation}"
    for counter in ("event_counts", "delivery_counts")
    for operation in ("insert", "update", "delete")
)
DML = "SELECT, INSERT, UPDATE, DELETE"
ROLES = ("event_router_ingest", "event_router_process", "event_router_deliver", "event_router_reconcile")
GRANTS: dict[str, tuple[str, ...]] = {
    "event_router_ingest": (
        f"INSERT (event_id, source, module, event_type, record_id, occurred_at, payload, auth_method) ON {LOG}",
        f"SELECT (id, source, event_id, status) ON {LOG}",
        f"UPDATE (status, queued_at, updated_at) ON {LOG}",
        "INSERT (minute, source, route, cause, count, received_at, source_ip, body_size, body_sha256)"
        " ON rejected_requests",
        # An upsert reads the columns it merges (EXCLUDED's too): counts, times, addresses, never a body.
        "SELECT ON rejected_requests",
        "UPDATE (count, received_at, source_ip, body_size, body_sha256) ON rejected_requests",
    ),
    "event_router_process": (
        f"{DML} ON {LOG}, {', '.join(MIRRORS)}, deliveries",
        "SELECT ON destinations, erased_identities, moodle_accounts, zoho_tokens",
    ),
    "event_router_deliver": (
        f"{DML} ON deliveries, destinations, moodle_courses, moodle_accounts, zoho_tokens, zoho_classes",
        f"SELECT ON {LOG}, {', '.join(MIRRORS)}, erased_identities",
    ),
    "event_router_reconcile": ("SELECT ON zoho_tokens",),
}


def upgrade() -> None:
    for function in COUNTER_TRIGGERS:
        op.execute(f"ALTER FUNCTION {function}() SECURITY DEFINER SET search_path = public, pg_temp")
    for role in ROLES:
        op.execute(f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {role} NOLOGIN;
                END IF;
            END $$""")
        for grant in GRANTS[role]:
            op.execute(f"GRANT {grant} TO {role}")
    # The reconciliation does what the operators' role does, and reads the token it calls Zoho with.
    op.execute("GRANT event_router_app TO event_router_reconcile")
    op.execute("REVOKE ALL ON zoho_tokens FROM event_router_app")


def downgrade() -> None:
    op.execute(f"GRANT {DML} ON zoho_tokens TO event_router_app")
    op.execute("REVOKE event_router_app FROM event_router_reconcile")
    for role in ROLES:
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
    for function in COUNTER_TRIGGERS:
        op.execute(f"ALTER FUNCTION {function}() SECURITY INVOKER RESET search_path")
