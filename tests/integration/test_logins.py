"""Each kind of function signs in to Postgres with a login of its own, holding only the rights its
statements use (migration 0012): what one function's login can do is what that function does.

The rest of the integration suite runs every function under its own kind's login (``load`` in
``conftest.py``), so a right a function needs and lacks fails those tests; here, what each login
must not do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pg8000.native
import pytest
from sqlalchemy import Engine, text

from event_router.store.connection import connect_params, sqlstate

INSUFFICIENT_PRIVILEGE = "42501"
TOKEN = """
INSERT INTO zoho_tokens (name, access_token, api_domain, expires_at)
VALUES ('crm', 'x', 'https://www.zohoapis.eu', now())"""
READ_TOKEN = "SELECT access_token, api_domain FROM zoho_tokens"
REDIRECT_TOKEN = "UPDATE zoho_tokens SET api_domain = 'http://127.0.0.1'"
LOG_EVENT = """
INSERT INTO integration_events_log (event_id, source, module, event_type, record_id, payload, auth_method)
VALUES ('probe-1', 'zoho', 'students', 'create', 'R1', '{"First_Name": "Ada"}', 'signature') RETURNING id"""


@pytest.fixture
def sign_in(function_logins: dict[str, str]) -> Iterator[Callable[[str], pg8000.native.Connection]]:
    opened: list[pg8000.native.Connection] = []

    def connect(role: str) -> pg8000.native.Connection:
        params = connect_params(function_logins[role], timeout=10, statement_timeout_ms=5000, application_name="t")
        opened.append(pg8000.native.Connection(**params))
        return opened[-1]

    yield connect
    for connection in opened:
        connection.close()


def refused(connection: pg8000.native.Connection, sql: str) -> bool:
    """Whether Postgres refuses ``sql`` for want of a privilege (anything else is re-raised)."""
    try:
        connection.run(sql)
    except pg8000.native.DatabaseError as error:
        if sqlstate(error) == INSUFFICIENT_PRIVILEGE:
            return True
        raise
    return False


@pytest.fixture
def token(db: Engine) -> None:
    with db.begin() as connection:
        connection.execute(text(TOKEN))


@pytest.mark.usefixtures("token")
def test_the_verifiers_login_writes_the_log_and_rejections_and_reads_nothing_else(
    sign_in: Callable[[str], pg8000.native.Connection],
) -> None:
    verifier = sign_in("event_router_ingest")

    # It logs an event and learns its id, as the verifier does...
    [[log_id]] = verifier.run(LOG_EVENT)
    assert log_id > 0
    # ...but cannot read a payload back, nor the Zoho token, nor send that token elsewhere,
    assert refused(verifier, "SELECT payload FROM integration_events_log")
    assert refused(verifier, READ_TOKEN)
    assert refused(verifier, REDIRECT_TOKEN)
    # nor read or change the mirror, the deliveries, the erasure register, or rewrite history.
    assert refused(verifier, "SELECT * FROM students")
    assert refused(verifier, "UPDATE students SET name = 'x'")
    assert refused(verifier, "SELECT * FROM deliveries")
    assert refused(verifier, "DELETE FROM erased_identities")
    assert refused(verifier, "DELETE FROM integration_events_log")
    assert refused(verifier, "UPDATE integration_events_log SET payload = '{}'")


@pytest.mark.usefixtures("token")
def test_only_the_functions_that_call_zoho_read_its_token_and_only_the_zoho_delivery_writes_it(
    sign_in: Callable[[str], pg8000.native.Connection],
) -> None:
    # Those that call Zoho read the token: the processors (ids-only notifications), the reconciliation...
    for role in ("event_router_process", "event_router_reconcile"):
        caller = sign_in(role)
        assert caller.run(READ_TOKEN) == [["x", "https://www.zohoapis.eu"]]
        assert refused(caller, REDIRECT_TOKEN), role
    # ...the delivery functions, whose Zoho delivery refreshes it, may write it...
    assert sign_in("event_router_deliver").run(READ_TOKEN)
    # ...and replay, monitor and privacy, which never call Zoho, cannot even read it.
    operator = sign_in("event_router_app")
    assert refused(operator, READ_TOKEN)
    assert refused(operator, REDIRECT_TOKEN)


def test_the_processors_and_deliveries_logins_cannot_touch_what_their_functions_never_do(
    sign_in: Callable[[str], pg8000.native.Connection],
) -> None:
    processor = sign_in("event_router_process")
    assert refused(processor, "DELETE FROM erased_identities")  # the register is the privacy function's
    assert refused(processor, "SELECT * FROM erasures")
    assert refused(processor, "UPDATE zoho_tokens SET access_token = 'x'")
    delivery = sign_in("event_router_deliver")
    assert refused(delivery, "UPDATE students SET name = 'x'")  # the mirror is the processors'
    assert refused(delivery, "DELETE FROM integration_events_log")
    assert refused(delivery, "SELECT * FROM erasures")
