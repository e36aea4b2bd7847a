"""Bring a database's schema up to date with Alembic.

``python -m event_router.migrate`` (``make migrate``) migrates ``DATABASE_URL``;
``MigrateFunction`` migrates the deployed database on every deploy.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from event_router.engine import make_engine, settings_engine
from event_router.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


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
    """Migrate the database the settings point at (``DATABASE_URL`` or the secret)."""
    engine = settings_engine(settings, "event-router-migrate")
    try:
        return upgrade_engine(engine)
    finally:
        engine.dispose()


if __name__ == "__main__":
    print(f"database at revision {upgrade(os.environ['DATABASE_URL'])}")
