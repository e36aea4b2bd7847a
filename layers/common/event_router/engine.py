"""SQLAlchemy engines on pg8000, for everything except the verifiers' hot path."""

from __future__ import annotations

from typing import Any

import pg8000.dbapi
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError

from event_router.database import ParamsProvider, connect_params, connection_params
from event_router.settings import Settings

# What a statement raises when Postgres is unreachable, times out or refuses it.
STORE_ERRORS = (SQLAlchemyError, OSError)


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
    """An engine whose connections follow the same URL rules and timeouts as the verifiers'."""
    params = connect_params(
        url, timeout=timeout, statement_timeout_ms=statement_timeout_ms, application_name=application_name
    )
    return _engine(lambda: params, **options)


def settings_engine(settings: Settings, application_name: str) -> Engine:
    """The container's engine: autocommit, so every statement is atomic on its own and costs no
    BEGIN/COMMIT round trips; pre-pinged; ``DB_POOL_SIZE`` connections (one in Lambda, where a
    container runs one invocation at a time)."""
    return _engine(
        connection_params(settings, application_name),
        isolation_level="AUTOCOMMIT",
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_pre_ping=True,
    )
