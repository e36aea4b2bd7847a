"""SQLAlchemy engines on pg8000, for everything except the verifiers' hot path."""

from __future__ import annotations

from typing import Any

import pg8000.dbapi
from sqlalchemy import Engine, create_engine

from event_router.database import connect_params


def make_engine(
    url: str,
    *,
    timeout: float = 10.0,
    statement_timeout_ms: int = 0,
    application_name: str = "event-router",
    **pool: Any,
) -> Engine:
    """An engine whose connections use the same URL rules and timeouts as the verifiers'."""
    params = connect_params(
        url, timeout=timeout, statement_timeout_ms=statement_timeout_ms, application_name=application_name
    )
    return create_engine(
        "postgresql+pg8000://",
        creator=lambda: pg8000.dbapi.connect(**params),
        hide_parameters=True,  # error messages must not carry payload values
        **pool,
    )
