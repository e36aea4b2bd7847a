"""Postgres for development and tests without a server to install: ``pgserver``'s binaries.

Also the few admin statements tests and the local stack need: create and
drop a database of their own, and point a URL at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pg8000.native

from event_router.store.connection import connect_params


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) the embedded server whose data lives in ``data_dir``.

    Returns an admin URL (Unix socket, trust auth) and the server handle, whose
    ``cleanup()`` stops it.
    """
    import pgserver  # noqa: PLC0415 - a dev-only dependency, imported only when used

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    info = server.get_postmaster_info()
    return f"postgresql://postgres@/postgres?host={info.socket_dir}&port={info.port}", server


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin(url: str) -> pg8000.native.Connection:
    return pg8000.native.Connection(
        **connect_params(url, timeout=10, statement_timeout_ms=30_000, application_name="event-router-admin")
    )


def create_database(url: str, database: str, *, exist_ok: bool = False) -> str:
    """Create ``database`` on the server of ``url``; returns its URL."""
    connection = _admin(url)
    try:
        exists = connection.run("SELECT 1 FROM pg_database WHERE datname = :name", name=database)
        if exists and not exist_ok:
            raise RuntimeError(f"database {database} already exists")
        if not exists:
            connection.run(f"CREATE DATABASE {pg8000.native.identifier(database)}")
    finally:
        connection.close()
    return with_database(url, database)


def drop_database(url: str, database: str) -> None:
    """Drop ``database`` (and its connections) from the server of ``url``."""
    connection = _admin(url)
    try:
        connection.run(f"DROP DATABASE IF EXISTS {pg8000.native.identifier(database)} WITH (FORCE)")
    finally:
        connection.close()


class StoppablePostgres:
    """An embedded server that tests can stop and start again, its data kept (fault tests)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None
        self.admin_url = ""

    def start(self) -> str:
        self.admin_url, self._server = start_embedded(self.data_dir)
        return self.admin_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
