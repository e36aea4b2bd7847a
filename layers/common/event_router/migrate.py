"""Bring a database's schema up to date: ``python -m event_router.migrate`` (``make migrate``)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` to the database at ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    command.upgrade(config, revision)


if __name__ == "__main__":
    upgrade(os.environ["DATABASE_URL"])
    print("migrations applied")
