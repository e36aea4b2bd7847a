"""Alembic environment: migrates the engine the caller passes, or ``DATABASE_URL``."""

from __future__ import annotations

import os

from alembic import context

from event_router.operate.migrate import make_engine
from event_router.store.schema import metadata

config = context.config


def run() -> None:
    if context.is_offline_mode():
        context.configure(dialect_name="postgresql", target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = config.attributes.get("engine") or make_engine(
        os.environ["DATABASE_URL"], application_name="event-router-migrate"
    )
    # Migrations run in one transaction of their own, whatever the engine's isolation level.
    with engine.connect().execution_options(isolation_level="READ COMMITTED") as connection:
        context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()


run()
