"""Alembic environment: migrates the database named by the caller or ``DATABASE_URL``."""

from __future__ import annotations

import os

from alembic import context

from event_router.engine import make_engine
from event_router.schema import metadata

config = context.config


def run() -> None:
    if context.is_offline_mode():
        context.configure(dialect_name="postgresql", target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.attributes.get("database_url") or os.environ["DATABASE_URL"]
    engine = make_engine(url, application_name="event-router-migrate")
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run()
