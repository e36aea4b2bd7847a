"""What the Zoho connector keeps in Postgres: the one shared access token and the lock its refresh
holds, the organisation's concurrent-call slots, and the classes' Moodle courses.

Locks are advisory and per session, in a namespace of their own (the two-key form), so they never
meet the delivery targets' locks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from event_router.store.connection import PreparedConnection

NAMESPACE = 0x20480  # the first key of every Zoho advisory lock
TOKEN_LOCK = 0  # the second key of the refresh lock; slots are 1..N

READ_ACCESS_SQL = """
SELECT access_token, api_domain, extract(epoch FROM expires_at), accounts_url FROM zoho_tokens WHERE name = 'crm'"""
SAVE_ACCESS_SQL = """
INSERT INTO zoho_tokens (name, access_token, api_domain, expires_at, accounts_url, refreshed_at)
VALUES ('crm', :token, :api_domain, to_timestamp(:expires_at), :accounts_url, now())
ON CONFLICT (name) DO UPDATE SET access_token = EXCLUDED.access_token, api_domain = EXCLUDED.api_domain,
    expires_at = EXCLUDED.expires_at, accounts_url = EXCLUDED.accounts_url, refreshed_at = now()"""
CLASS_SQL = "SELECT moodle_course_idnumber FROM zoho_classes WHERE class_zoho_id = :id"
REMEMBER_CLASS_SQL = """
INSERT INTO zoho_classes (class_zoho_id, moodle_course_idnumber) VALUES (:id, :idnumber)
ON CONFLICT (class_zoho_id) DO UPDATE SET
    moodle_course_idnumber = EXCLUDED.moodle_course_idnumber, fetched_at = now()"""


@dataclass(frozen=True)
class AccessToken:
    """The one access token every function shares, and the API domain it is for."""

    token: str
    api_domain: str
    expires_at: float  # epoch seconds
    accounts_url: str = ""  # the accounts server that issued it

    def fresh(self, now: float, margin: float) -> bool:
        return now < self.expires_at - margin


class CallsBusy(Exception):
    """Every one of the organisation's concurrent-call slots stayed taken."""


class PgZohoState:
    """The access token, the refresh lock and the call slots, on one connection."""

    def __init__(self, connection: PreparedConnection, max_calls: int = 5, slot_wait_seconds: float = 20.0) -> None:
        self.connection = connection
        self._max_calls = max_calls
        self._slot_wait = slot_wait_seconds

    # ------------------------------------------------------------ TokenStore

    def current(self) -> AccessToken | None:
        rows = self.connection.run(READ_ACCESS_SQL)
        if not rows:
            return None
        token, api_domain, expires_at, accounts_url = rows[0]
        return AccessToken(str(token), str(api_domain), float(expires_at), str(accounts_url or ""))

    @contextmanager
    def refreshing(self) -> Iterator[None]:
        self.connection.run("SELECT pg_advisory_lock(:ns, :key)", ns=NAMESPACE, key=TOKEN_LOCK)
        try:
            yield
        finally:
            self.connection.run("SELECT pg_advisory_unlock(:ns, :key)", ns=NAMESPACE, key=TOKEN_LOCK)

    def save(self, token: AccessToken) -> None:
        self.connection.run(
            SAVE_ACCESS_SQL,
            token=token.token,
            api_domain=token.api_domain,
            expires_at=token.expires_at,
            accounts_url=token.accounts_url,
        )

    # ------------------------------------------------------------ CallSlots

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One of the organisation's concurrent calls; waits for one to free up, then gives up
        (a transient error: the delivery is retried later)."""
        deadline = time.monotonic() + self._slot_wait
        while True:
            for key in range(1, self._max_calls + 1):
                [[taken]] = self.connection.run("SELECT pg_try_advisory_lock(:ns, :key)", ns=NAMESPACE, key=key)
                if taken:
                    try:
                        yield
                    finally:
                        self.connection.run("SELECT pg_advisory_unlock(:ns, :key)", ns=NAMESPACE, key=key)
                    return
            if time.monotonic() > deadline:
                raise CallsBusy(f"all {self._max_calls} concurrent Zoho calls are in use")
            time.sleep(0.05)

    # ------------------------------------------------------------ classes

    def class_course(self, class_zoho_id: str) -> tuple[bool, str | None]:
        """(known, the class's Moodle course idnumber)."""
        rows = self.connection.run(CLASS_SQL, id=class_zoho_id)
        return (True, rows[0][0]) if rows else (False, None)

    def remember_class(self, class_zoho_id: str, idnumber: str | None) -> None:
        self.connection.run(REMEMBER_CLASS_SQL, id=class_zoho_id, idnumber=idnumber)
