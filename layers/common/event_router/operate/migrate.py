"""Bring a database's schema up to date with Alembic, and give each kind of function its own login.

``python -m event_router.operate.migrate`` (``make migrate``) migrates ``DATABASE_URL``;
``MigrateFunction`` migrates the deployed database on every deploy. This is the one place the
router uses SQLAlchemy at run time (Alembic needs it); the functions run plain SQL
(``store/``).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pg8000.dbapi
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, String, create_engine, text
from sqlalchemy.exc import DBAPIError

from event_router.core.secrets import json_secret
from event_router.settings import Settings
from event_router.store.connection import ParamsProvider, connect_params, connection_params

MIGRATIONS = Path(__file__).resolve().parent.parent / "store" / "migrations"
APP_ROLE = "event_router_app"  # created by migration 0003: replay, monitor, privacy
IDLE_SESSION_TIMEOUT = "5min"
# One role per kind of function (migration 0012), each with only the rights its statements use.
FUNCTION_ROLES = (
    "event_router_ingest",
    "event_router_process",
    "event_router_deliver",
    "event_router_reconcile",
    APP_ROLE,
)


def _engine(params: ParamsProvider, **options: Any) -> Engine:
    return create_engine(
        "postgresql+pg8000://",
        creator=lambda: pg8000.dbapi.connect(**params()),
        hide_parameters=True,  # error messages must not carry payload values
        **options,
    )


def make_engine(
    url: str,
    *,
    timeout: float = 10.0,
    statement_timeout_ms: int = 0,
    application_name: str = "event-router",
    **options: Any,
) -> Engine:
    """A SQLAlchemy engine on pg8000 whose connections follow the functions' URL rules and timeouts
    (for the migrations, and for tools and tests that inspect a database)."""
    params = connect_params(
        url, timeout=timeout, statement_timeout_ms=statement_timeout_ms, application_name=application_name
    )
    return _engine(lambda: params, **options)


def upgrade_engine(engine: Engine, revision: str = "head") -> str | None:
    """Apply every migration up to ``revision``; returns the revision the database is now at."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    command.upgrade(config, revision)
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(database_url: str, revision: str = "head") -> str | None:
    """Migrate the database at ``database_url``."""
    engine = make_engine(database_url, application_name="event-router-migrate")
    try:
        return upgrade_engine(engine, revision)
    finally:
        engine.dispose()


def upgrade_configured(settings: Settings) -> str | None:
    """Migrate the database the settings point at (``DATABASE_URL`` or the owner secret), then give
    each kind of function its login (``DATABASE_LOGINS``: database role → login secret)."""
    engine = _engine(connection_params(settings, "event-router-migrate"), pool_pre_ping=True)
    try:
        revision = upgrade_engine(engine)
        for role, secret_arn in (settings.database_logins or {}).items():
            login = read_login(secret_arn)
            ensure_login(engine, login["username"], login["password"], role)
        return revision
    finally:
        engine.dispose()


def read_login(secret_arn: str) -> dict[str, str]:
    """``{"username", "password"}`` from a Secrets Manager secret."""
    secret = json_secret(secret_arn, max_age=0)
    return {"username": str(secret["username"]), "password": str(secret["password"])}


def ensure_login(engine: Engine, username: str, password: str, role: str = APP_ROLE) -> None:
    """Create (or update the password of) one kind of function's login: a member of ``role`` (one
    of ``FUNCTION_ROLES``, which migrations 0003 and 0012 give only the rights that kind uses) and
    of no other router role.

    The password itself never reaches Postgres: it is given as its SCRAM-SHA-256 verifier, so no
    statement log, ``pg_stat_statements`` or error message can show it."""
    if role not in FUNCTION_ROLES:
        raise ValueError(f"{role!r} is not one of the functions' database roles")
    name = engine.dialect.identifier_preparer.quote(username)
    process = String().literal_processor(engine.dialect)
    assert process is not None
    verifier = process(scram_verifier(password))
    with engine.begin() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": username}).first()
        try:
            # Role statements take no bound parameters; the verifier is quoted as a literal.
            verb = "ALTER" if exists else "CREATE"
            connection.exec_driver_sql(
                f"{verb} ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {verifier}"
            )
            for other in FUNCTION_ROLES:
                if other != role:  # a login that changed kind keeps nothing of the old one
                    connection.exec_driver_sql(f"REVOKE {other} FROM {name}")
            connection.exec_driver_sql(f"GRANT {role} TO {name}")
            if int(connection.exec_driver_sql("SHOW server_version_num").scalar_one()) >= 140000:
                # A container Lambda froze keeps its connection; Postgres closes it after this long
                # idle, so the connections in use follow the containers at work (docs/decisions.md,
                # "No RDS Proxy"). A thawed container reconnects on its next statement.
                connection.exec_driver_sql(f"ALTER ROLE {name} SET idle_session_timeout = '{IDLE_SESSION_TIMEOUT}'")
        except DBAPIError as error:  # its message would quote the statement
            cause = type(error.orig).__name__
            raise RuntimeError(f"could not set up the functions' database login ({cause})") from None


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """Postgres's stored form of a SCRAM-SHA-256 password
    (``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``), made by scramp, the SCRAM
    library pg8000 signs in with."""
    from scramp import ScramMechanism  # noqa: PLC0415 - only the deploy step needs it

    salt, stored_key, server_key, count = ScramMechanism("SCRAM-SHA-256").make_auth_info(
        password, iteration_count=iterations
    )
    salt_text, stored_text, server_text = (base64.b64encode(raw).decode() for raw in (salt, stored_key, server_key))
    return f"SCRAM-SHA-256${count}:{salt_text}${stored_text}:{server_text}"


if __name__ == "__main__":
    print(f"database at revision {upgrade(os.environ['DATABASE_URL'])}")
