"""The erasure register: who has been erased, kept so that nothing received before stays able to
bring them back.

An erasure (``operate/privacy.py``) removes a student from the log, the mirror, the deliveries and
the dead-letter queue, but copies of their events may still be waiting where the privacy function
cannot reach or has not reached: a module queue, a message in flight, a replay. So the erasure
also writes each of the student's identifiers to ``erased_identities`` as a keyed hash (HMAC-SHA256
with a key in Secrets Manager, never stored in the database: the register, like the ``erasures``
record, cannot be reversed by someone who can only read the database), with the time of the erasure.

Before a processor writes a mirror row, it hashes the identifiers the row names (``identities``) and
looks them up; an event about an erased identity whose own time (the source's timestamp, else when
the router received it) is not after the erasure is settled ``skipped`` (reason ``erased``) and
changes nothing. A genuinely new change made at the source after the erasure applies as usual.

Identifiers are matched whole and by kind: a student number ``12`` is not a grade of 12, nor part
of ``B-120012``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Literal

from event_router.core.secrets import SecretUnavailable, read_secret, secret_field
from event_router.errors import CredentialsUnavailable
from event_router.settings import Settings

Kind = Literal["zoho_record_id", "student_number", "email", "moodle_user_id"]
KINDS: tuple[Kind, ...] = ("zoho_record_id", "student_number", "email", "moodle_user_id")

# Mirror table → the columns of a row that say whom it is about, and what kind of identifier each is.
# The students row's Moodle_User_ID is Zoho's hint (it may name anyone's account): not an identity.
IDENTITY_COLUMNS: dict[str, dict[str, Kind]] = {
    "students": {"zoho_record_id": "zoho_record_id", "student_id_number": "student_number", "academic_email": "email"},
    "enrollments": {"student_zoho_id": "zoho_record_id"},
    "grades": {"student_zoho_id": "zoho_record_id"},
    "moodle_enrolments": {"moodle_user_id": "moodle_user_id"},
    "moodle_grades": {"moodle_user_id": "moodle_user_id"},
}

Identity = tuple[Kind, str]


def normalised(kind: Kind, value: object) -> str:
    """The form an identifier is compared in: text, an e-mail address in lower case."""
    text = str(value).strip()
    return text.lower() if kind == "email" else text


def row_identities(table: str, row: dict[str, object]) -> set[Identity]:
    """Whom a mirror row (its key and values) is about."""
    return {
        (kind, normalised(kind, row[column]))
        for column, kind in IDENTITY_COLUMNS.get(table, {}).items()
        if row.get(column) not in (None, "")
    }


class ErasureKey:
    """The key of the register's hashes."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the erasure key must be at least 16 bytes")
        self._key = key

    def digest(self, identity: Identity) -> str:
        kind, value = identity
        message = f"{kind}:{normalised(kind, value)}".encode()
        return hmac.digest(self._key, message, "sha256").hex()  # OpenSSL's one-shot HMAC

    def label(self, text: str) -> str:
        """A keyed hash of any text that named a student (an event id), to keep it unique without it."""
        return hmac.digest(self._key, f"label:{text}".encode(), "sha256").hex()

    def digests(self, identities: Iterable[Identity]) -> dict[str, Identity]:
        return {self.digest(identity): identity for identity in identities}


def erasure_key(settings: Settings) -> ErasureKey | None:
    """The key: ``ERASURE_KEY`` (local development), else the ``key`` of the Secrets Manager secret
    ``ERASURE_KEY_SECRET_ARN``; None when neither is configured (then nothing can have been erased)."""
    if settings.erasure_key:
        return ErasureKey(settings.erasure_key.encode())
    if not settings.erasure_key_secret_arn:
        return None
    try:
        text = read_secret(settings.erasure_key_secret_arn, settings.secrets_max_age)
    except SecretUnavailable as error:
        raise CredentialsUnavailable(f"erasure key ({error})") from None
    return ErasureKey(secret_field(text, "key").encode())
