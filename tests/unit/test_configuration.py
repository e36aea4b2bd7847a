"""Settings, database URLs and webhook secrets: how configuration reaches the functions."""

from __future__ import annotations

import json
import re
import socket
import ssl
import struct
import threading
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from event_router.errors import CredentialsUnavailable
from event_router.settings import Settings
from event_router.store import connection
from event_router.store.connection import connect_params, connection_params, describe_error
from event_router.verify.credentials import SecretsManagerCredentials, credentials_for, parse_secret
from event_router.verify.signatures import WebhookCredentials
from tests.unit.stack import TEMPLATE


def params(url: str) -> dict[str, Any]:
    return connect_params(url, timeout=3, statement_timeout_ms=2500, application_name="test")


def test_database_url_in_the_usual_form_becomes_pg8000_parameters_with_timeouts() -> None:
    result = params("postgresql://router:p%40ss@db.internal:6543/events")

    assert {k: result[k] for k in ("user", "password", "host", "port", "database", "timeout")} == {
        "user": "router",
        "password": "p@ss",
        "host": "db.internal",
        "port": 6543,
        "database": "events",
        "timeout": 3,
    }
    assert result["startup_params"] == {"statement_timeout": "2500"}
    assert result["ssl_context"] is False  # no sslmode: disable, as libpq's URLs mean it


def test_database_url_with_a_socket_directory_connects_through_the_socket() -> None:
    result = params("postgresql://postgres@/postgres?host=/run/pg&port=5433")

    assert result["unix_sock"] == "/run/pg/.s.PGSQL.5433"
    assert "host" not in result


def test_a_tcp_connection_sends_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nagle's algorithm off, as libpq has it: with it on, a statement larger than pg8000's write
    buffer waited 40 ms for the server's delayed acknowledgement (a batch of 100 events: 100 ms)."""
    opened: list[dict[str, Any]] = []
    monkeypatch.setattr(connection.pg8000.native, "Connection", lambda **kw: opened.append(kw) or kw["sock"])
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        sock = connection.open_connection(params(f"postgresql://router@127.0.0.1:{port}/events"))
        with sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
            assert sock.getpeername() == ("127.0.0.1", port)
    assert opened[0]["host"] == "127.0.0.1"  # still there: it names the server TLS checks
    assert opened[0]["user"] == "router"


def test_a_unix_socket_connection_is_left_to_pg8000(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[dict[str, Any]] = []
    monkeypatch.setattr(connection.pg8000.native, "Connection", lambda **kw: opened.append(kw))
    connection.open_connection(params("postgresql://postgres@/postgres?host=/run/pg"))
    assert opened[0]["unix_sock"] == "/run/pg/.s.PGSQL.5432"
    assert "sock" not in opened[0]


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+pg8000"])
def test_database_url_accepts_the_common_schemes(scheme: str) -> None:
    assert params(f"{scheme}://u@h/d")["host"] == "h"


def test_database_url_of_another_database_is_refused() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        params("mysql://u@h/d")


@pytest.mark.parametrize(
    ("mode", "verify", "hostname"),
    [
        ("require", ssl.CERT_NONE, False),
        ("verify-ca", ssl.CERT_REQUIRED, False),
        ("verify-full", ssl.CERT_REQUIRED, True),
    ],
)
def test_sslmode_sets_up_tls(mode: str, verify: ssl.VerifyMode, hostname: bool) -> None:
    context = params(f"postgresql://u@h/d?sslmode={mode}")["ssl_context"]

    assert (context.verify_mode, context.check_hostname) == (verify, hostname)


SSL_REQUEST = struct.pack("!ii", 8, 80877103)


@pytest.mark.parametrize(("mode", "asks_for_tls"), [("disable", False), ("allow", False), ("prefer", True)])
def test_a_connection_asks_for_tls_only_when_its_sslmode_says_so(mode: str, asks_for_tls: bool) -> None:
    """What pg8000 sends first to a server on loopback: its TLS request, or its start-up message."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        first: list[bytes] = []

        def answer() -> None:
            peer, _ = server.accept()
            with peer:
                first.append(peer.recv(8))

        listener = threading.Thread(target=answer)
        listener.start()
        with pytest.raises(Exception):  # noqa: B017, PT011 - the fake server hangs up, whatever was asked
            connection.open_connection(params(f"postgresql://router@127.0.0.1:{port}/events?sslmode={mode}"))
        listener.join()

    assert (first[0] == SSL_REQUEST) is asks_for_tls


def test_driver_errors_are_described_without_their_text() -> None:
    error = Exception({"S": "ERROR", "C": "23505", "M": "duplicate key", "D": "Key (event_id)=(ada@example) exists"})

    assert describe_error(error) == "Exception (SQLSTATE 23505)"


def test_settings_split_comma_separated_secrets_and_hide_values_in_errors() -> None:
    settings = Settings.model_validate({"ZOHO_WEBHOOK_SECRET": " new , old ,", "DB_CONNECT_TIMEOUT": "1.5"})

    assert settings.webhook_secrets("zoho") == ("new", "old")
    assert settings.db_connect_timeout == 1.5
    with pytest.raises(ValueError, match="DB_CONNECT_TIMEOUT") as invalid:
        Settings.model_validate({"DB_CONNECT_TIMEOUT": "soon-secret"})
    assert "soon-secret" not in str(invalid.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain-secret", WebhookCredentials.of(["plain-secret"])),
        ('{"secrets": "one"}', WebhookCredentials.of(["one"])),
        ('{"secrets": ["new", "old"], "tokens": ["t"]}', WebhookCredentials.of(["new", "old"], ["t"])),
        ('{"tokens": []}', WebhookCredentials()),
        ('["not", "an", "object"]', WebhookCredentials()),
    ],
)
def test_secret_documents_are_parsed(raw: str, expected: WebhookCredentials) -> None:
    assert parse_secret(raw) == expected


@mock_aws
def test_secrets_manager_secret_is_read_and_a_rotation_takes_effect_without_a_restart() -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-2")
    arn = client.create_secret(Name="zoho-webhook", SecretString=json.dumps({"secrets": ["old"]}))["ARN"]
    settings = Settings.model_validate({"ZOHO_WEBHOOK_SECRET_ARN": arn, "SECRETS_MAX_AGE": "0"})
    source = credentials_for("zoho", settings)
    assert source.current() == WebhookCredentials.of(["old"])

    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"secrets": ["new", "old"]}))

    assert source.current() == WebhookCredentials.of(["new", "old"])


@mock_aws
def test_unreachable_secret_falls_back_to_the_last_good_value_or_fails_loudly() -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-2")
    arn = client.create_secret(Name="moodle-webhook", SecretString="s1")["ARN"]
    source = SecretsManagerCredentials(arn, max_age=0)
    assert source.current() == WebhookCredentials.of(["s1"])

    client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)

    assert source.current() == WebhookCredentials.of(["s1"])
    with pytest.raises(CredentialsUnavailable):
        SecretsManagerCredentials(arn, max_age=0).current()


def test_without_an_arn_the_secrets_come_from_the_environment() -> None:
    settings = Settings.model_validate({"MOODLE_WEBHOOK_SECRET": "a,b", "MOODLE_WEBHOOK_TOKEN": "t"})

    assert credentials_for("moodle", settings).current() == WebhookCredentials.of(["a", "b"], ["t"])


@mock_aws
def test_database_login_comes_from_its_secret_and_a_rotated_password_is_used_on_reconnect() -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-2")
    login = {"username": "router", "password": "first-p@ss", "engine": "postgres", "host": "db-1.internal"}
    arn = client.create_secret(Name="db", SecretString=json.dumps(login))["ARN"]
    settings = Settings.model_validate(
        {
            "DATABASE_SECRET_ARN": arn,
            "DATABASE_HOST": "proxy.internal",
            "DATABASE_NAME": "events",
            "SECRETS_MAX_AGE": "0",
            "DATABASE_SSLMODE": "verify-full",
        }
    )
    provider = connection_params(settings, "test")

    first = provider()
    client.put_secret_value(SecretId=arn, SecretString=json.dumps({**login, "password": "second-p@ss"}))
    second = provider()

    assert (first["user"], first["password"], first["host"], first["database"]) == (
        "router",
        "first-p@ss",
        "proxy.internal",  # DATABASE_HOST (an RDS Proxy, say) wins over the secret's host
        "events",
    )
    assert first["ssl_context"].check_hostname is True
    assert second["password"] == "second-p@ss"


@mock_aws
def test_database_host_may_come_from_the_secret() -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-2")
    login = {"username": "u", "password": "p", "host": "db.internal", "port": 6432, "dbname": "college"}
    arn = client.create_secret(Name="db", SecretString=json.dumps(login))["ARN"]

    params = connection_params(Settings.model_validate({"DATABASE_SECRET_ARN": arn}), "test")()

    assert (params["host"], params["port"], params["database"]) == ("db.internal", 6432, "college")


@mock_aws
def test_unreadable_database_secret_is_a_connection_error_without_details() -> None:
    settings = Settings.model_validate({"DATABASE_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:gone"})

    with pytest.raises(ConnectionError, match=r"^database secret unavailable \(\w+\)$"):
        connection_params(settings, "test")()


def test_a_database_must_be_configured() -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        connection_params(Settings(), "test")


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://moodle.example.ac.uk", True),
        ("http://127.0.0.1:8089", True),  # a Moodle on this machine: development and tests
        ("http://localhost:8089", True),
        ("http://[::1]:8089", True),
        ("http://moodle.example.ac.uk", False),  # the token would cross the network in clear
        ("http://10.0.0.5", False),
        ("ftp://moodle.example.ac.uk", False),
        ("moodle.example.ac.uk", False),
    ],
)
def test_moodle_url_is_https_unless_it_is_this_machine(url: str, accepted: bool) -> None:
    if accepted:
        assert Settings.model_validate({"MOODLE_URL": url}).moodle_url == url
    else:
        with pytest.raises(ValidationError, match="https://"):
            Settings.model_validate({"MOODLE_URL": url})
    pattern = TEMPLATE["Parameters"]["MoodleUrl"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, url)) is url.startswith("https://")
