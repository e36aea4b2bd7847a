"""Connections to Postgres: one URL format, pg8000 underneath, timeouts always set, and one
connection per container running named prepared statements.

``DATABASE_URL`` takes the usual ``postgresql://user:pass@host:port/db`` form (``?host=/socket/dir``
for a Unix socket, ``?sslmode=require|verify-full`` and ``?sslrootcert=`` for TLS); the driver is
always pg8000. Deployed, the login comes from Secrets Manager instead.

A prepared statement costs one round trip per execution (pg8000's unnamed statements cost three)
and Postgres plans it once. Every statement of every function goes through ``PreparedConnection``;
the store classes next to this module hold the SQL.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from time import monotonic
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pg8000.native

from event_router.core.lifecycle import after_restore, before_snapshot
from event_router.core.secrets import json_secret
from event_router.errors import DataRejected, StorageUnavailable
from event_router.settings import Settings

_SCHEMES = ("postgresql", "postgres", "postgresql+pg8000")
ParamsProvider = Callable[[], dict[str, Any]]


def connect_params(url: str, *, timeout: float, statement_timeout_ms: int, application_name: str) -> dict[str, Any]:
    """Keyword arguments for ``pg8000.native.Connection`` / ``pg8000.dbapi.connect``.

    ``timeout`` bounds connecting and every read from the socket; the server
    cancels a statement after ``statement_timeout_ms``, which should be shorter.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError("DATABASE_URL must start with postgresql://")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    params: dict[str, Any] = {
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password) if parts.password is not None else None,
        "database": unquote(parts.path.lstrip("/")) or "postgres",
        "timeout": timeout,
        "application_name": application_name,
        "startup_params": {"statement_timeout": str(statement_timeout_ms)},
    }
    port = parts.port or int(query.get("port", 5432))
    host = query.get("host") or parts.hostname or "localhost"
    if host.startswith("/"):
        params["unix_sock"] = f"{host}/.s.PGSQL.{port}"
    else:
        params["host"], params["port"] = host, port
    params["ssl_context"] = _tls_context(query.get("sslmode", "disable"), query.get("sslrootcert"))
    return params


def open_connection(params: dict[str, Any]) -> pg8000.native.Connection:
    """A pg8000 connection whose TCP socket sends at once, as libpq's does (``TCP_NODELAY``).

    pg8000 leaves Nagle's algorithm on: a statement whose parameters outgrow its write buffer
    (a batch of 100 events, 30 erasure digests) leaves in several writes, and the last one waits for
    the server's delayed acknowledgement, 40 ms on Linux, on every such statement.
    """
    if "host" not in params:
        return pg8000.native.Connection(**params)  # a Unix socket: nothing to wait for
    sock = socket.create_connection((params["host"], params["port"]), params["timeout"])
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return pg8000.native.Connection(**params, sock=sock)  # ``host`` still names the TLS server
    except BaseException:
        sock.close()
        raise


def _tls_context(sslmode: str, root_cert: str | None) -> ssl.SSLContext | bool | None:
    """pg8000's ``ssl_context`` for a libpq ``sslmode``. Left out (``None``), pg8000 asks every server
    for TLS and takes it unverified: ``prefer``. ``disable`` (and ``allow``, which pg8000 cannot
    retry) must say ``False``, or each connection pays for the request's round trip and for loading
    the system's certificate store (about 18 ms of a cold start) to talk TLS to anyone."""
    if sslmode in ("disable", "allow"):
        return False
    if sslmode == "prefer":
        return None
    context = ssl.create_default_context(cafile=root_cert)
    if sslmode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif sslmode == "verify-ca":
        context.check_hostname = False
    elif sslmode != "verify-full":
        raise ValueError(f"unsupported sslmode {sslmode!r}")
    return context


def connection_params(settings: Settings, application_name: str) -> ParamsProvider:
    """How this container opens a connection, called on every (re)connect.

    ``DATABASE_URL`` when set (local development, tests). Otherwise the host,
    port, database and TLS mode from the environment, and the username and
    password from the Secrets Manager secret ``DATABASE_SECRET_ARN`` (an RDS
    secret: ``{"username", "password"}``, optionally ``host``, ``port``,
    ``dbname``). The secret is cached for ``SECRETS_MAX_AGE`` seconds and read
    again on reconnect, so a rotated password is picked up without a redeploy.
    """
    connect = partial(
        connect_params,
        timeout=settings.db_connect_timeout,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        application_name=application_name,
    )
    if settings.database_url:
        params = connect(settings.database_url)
        return lambda: params
    secret_arn = settings.database_secret_arn
    if not secret_arn:
        raise ValueError("set DATABASE_URL, or DATABASE_SECRET_ARN with DATABASE_HOST")

    def from_secret() -> dict[str, Any]:
        try:
            secret = json_secret(secret_arn, settings.secrets_max_age)
            user, password = secret["username"], secret["password"]
        except Exception as error:  # noqa: BLE001 - whatever the cause, the database is out of reach
            raise ConnectionError(f"database secret unavailable ({type(error).__name__})") from None
        host = settings.database_host or secret.get("host", "")
        port = settings.database_port if settings.database_host else secret.get("port", settings.database_port)
        name = secret.get("dbname", settings.database_name) if not settings.database_host else settings.database_name
        url = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(name)}"
        tls = {"sslmode": settings.database_sslmode}
        if settings.database_sslrootcert:
            tls["sslrootcert"] = settings.database_sslrootcert
        return connect(f"{url}?{urlencode(tls)}")

    return from_secret


def sqlstate(error: BaseException) -> str:
    """The SQLSTATE of a pg8000 server error ("" for errors that are not the server's answer)."""
    fields = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    return str(fields.get("C") or "")


def describe_error(error: BaseException) -> str:
    """A log-safe description of a driver error: its class and SQLSTATE, never its text.

    Postgres error texts can quote the values of a statement (a conflicting key,
    an invalid JSON fragment), and those values are payload data.
    """
    code = sqlstate(error)
    return f"{type(error).__name__}" + (f" (SQLSTATE {code})" if code else "")


DRIVER_ERRORS: tuple[type[Exception], ...] = (pg8000.native.Error, OSError)
# SQLSTATE classes that say the values were wrong, not that the database is unwell: 22 (data
# exception: out of range, invalid text representation...) and 23 (integrity constraint violation).
DATA_ERROR_CLASSES = ("22", "23")


_CONNECTIONS: weakref.WeakSet[PreparedConnection] = weakref.WeakSet()


@before_snapshot
def _close_connections() -> None:
    for connection in list(_CONNECTIONS):
        connection.close_all()


@after_restore
def _forget_connections() -> None:
    for connection in list(_CONNECTIONS):
        connection.forget()


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
        self._opened: weakref.WeakSet[pg8000.native.Connection] = weakref.WeakSet()  # every thread's
        _CONNECTIONS.add(self)

    def forget(self) -> None:
        """Start afresh: every connection of this object is dropped unopened (a container restored
        from a snapshot must not reuse a socket the snapshot held)."""
        self._local = threading.local()
        self._opened = weakref.WeakSet()

    def close_all(self) -> None:
        """Close the connections of every thread (before a snapshot, which must hold no socket)."""
        for connection in list(self._opened):
            with contextlib.suppress(*DRIVER_ERRORS):
                connection.close()
        self.forget()

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        """Execute ``sql`` (``:name`` parameters) as a prepared statement; its rows."""
        try:
            rows: list[list[Any]] = self._statement(sql).run(**params)
        except DRIVER_ERRORS as error:
            if sqlstate(error)[:2] in DATA_ERROR_CLASSES:
                self._local.last_used = monotonic()  # the connection is still good: it just answered
                raise DataRejected(describe_error(error)) from None
            self.close()
            raise StorageUnavailable(describe_error(error)) from None
        self._local.last_used = monotonic()
        return rows

    @contextmanager
    def transaction(self, needed: bool = True) -> Iterator[None]:
        """Statements inside share one transaction: committed together, or rolled back on error.
        (One statement is a transaction by itself: ``needed=False`` spares the BEGIN and COMMIT.)"""
        if not needed:
            yield
            return
        self.run("BEGIN")
        try:
            yield
        except BaseException:
            with contextlib.suppress(StorageUnavailable):
                self.run("ROLLBACK")
            raise
        self.run("COMMIT")

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
            connection = local.connection = open_connection(self._params())
            # Used now, whatever its first statement does: a connection whose first statement Postgres
            # refused (a data error) had no time of last use, and every later call failed on it.
            local.statements, local.last_used = {}, monotonic()
            self._opened.add(connection)
        statement = local.statements.get(sql)
        if statement is None:
            statement = local.statements[sql] = connection.prepare(sql)
        return statement
