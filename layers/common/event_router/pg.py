"""Postgres on the hot paths: one pg8000 connection per container and named prepared statements.

A prepared statement costs one round trip per execution (pg8000's unnamed
statements cost three) and Postgres plans it once. The verifiers and the
processors send every statement of their per-event work through here;
``compiled()`` turns a SQLAlchemy Core statement into the text and constant
parameters to prepare, so those statements are still written against the
schema in ``schema.py``.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from time import monotonic
from typing import Any

import pg8000.native

from event_router.database import ParamsProvider, describe_error, sqlstate
from event_router.errors import DataRejected, StorageUnavailable

DRIVER_ERRORS: tuple[type[Exception], ...] = (pg8000.native.Error, OSError)
# SQLSTATE classes that say the values were wrong, not that the database is unwell: 22 (data
# exception: out of range, invalid text representation...) and 23 (integrity constraint violation).
DATA_ERROR_CLASSES = ("22", "23")


class PreparedConnection:
    """One connection per container (per thread, where a local server runs several).

    Opened on first use, reopened after it breaks, and pinged only when it has
    been idle: a frozen Lambda container may thaw with a dead socket, but a
    busy one should not pay a round trip per request. Every failure to reach
    or use Postgres becomes ``StorageUnavailable``, described without values.
    """

    def __init__(self, params: ParamsProvider, idle_ping_seconds: float = 30.0) -> None:
        self._params = params
        self._idle_ping_seconds = idle_ping_seconds
        self._local = threading.local()

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        """Execute ``sql`` (``:name`` parameters) as a prepared statement; its rows."""
        try:
            rows: list[list[Any]] = self._statement(sql).run(**params)
        except DRIVER_ERRORS as error:
            if sqlstate(error)[:2] in DATA_ERROR_CLASSES:
                raise DataRejected(describe_error(error)) from None  # the connection is still good
            self.close()
            raise StorageUnavailable(describe_error(error)) from None
        self._local.last_used = monotonic()
        return rows

    def close(self) -> None:
        """Drop this thread's connection (it is reopened on next use)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection, self._local.statements = None, {}
        if connection is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                connection.close()

    def _statement(self, sql: str) -> Any:
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is not None and monotonic() - local.last_used >= self._idle_ping_seconds:
            try:
                connection.run("SELECT 1")
            except DRIVER_ERRORS:
                self.close()
                connection = None
        if connection is None:
            connection = local.connection = pg8000.native.Connection(**self._params())
            local.statements = {}
        statement = local.statements.get(sql)
        if statement is None:
            statement = local.statements[sql] = connection.prepare(sql)
        return statement


@dataclass(frozen=True)
class Compiled:
    """A SQLAlchemy statement as prepared-statement text, with the values of its constant parameters."""

    sql: str
    constants: dict[str, Any]

    def run(self, connection: PreparedConnection, **params: Any) -> list[list[Any]]:
        return connection.run(self.sql, **{**self.constants, **params})


def compiled(statement: Any) -> Compiled:
    """Compile once for pg8000's ``:name`` style; parameters without a value are supplied per run."""
    from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - the verifiers never compile

    result = statement.compile(dialect=postgresql.dialect(paramstyle="named"))
    constants = {result.bind_names[bind]: bind.effective_value for bind in result.binds.values() if not bind.required}
    return Compiled(result.string, constants)
