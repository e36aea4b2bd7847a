"""Postgres connection parameters: one URL format, pg8000 underneath, timeouts always set.

``DATABASE_URL`` takes the usual ``postgresql://user:pass@host:port/db`` form
(``?host=/socket/dir`` for a Unix socket, ``?sslmode=require|verify-full`` and
``?sslrootcert=`` for TLS); the driver is always pg8000. This module imports
nothing heavy, so the verifiers can use it without loading SQLAlchemy.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from event_router.settings import Settings

_SCHEMES = ("postgresql", "postgres", "postgresql+pg8000")


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
    tls = _tls_context(query.get("sslmode", "disable"), query.get("sslrootcert"))
    if tls is not None:
        params["ssl_context"] = tls
    return params


def _tls_context(sslmode: str, root_cert: str | None) -> ssl.SSLContext | None:
    if sslmode in ("disable", "allow", "prefer"):
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


def settings_params(settings: Settings, application_name: str) -> dict[str, Any]:
    """Connection parameters from the container's settings."""
    if not settings.database_url:
        raise ValueError("DATABASE_URL is not set")
    return connect_params(
        settings.database_url,
        timeout=settings.db_connect_timeout,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        application_name=application_name,
    )


def describe_error(error: BaseException) -> str:
    """A log-safe description of a driver error: its class and SQLSTATE, never its text.

    Postgres error texts can quote the values of a statement (a conflicting key,
    an invalid JSON fragment), and those values are payload data.
    """
    fields = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    code = fields.get("C")
    return f"{type(error).__name__}" + (f" (SQLSTATE {code})" if code else "")
