"""Webhook authentication (SPEC §4): HMAC-SHA256 over the raw body, or an opt-in shared token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from event_router.contract import Source
from event_router.errors import SignatureRejected

SIGNATURE_HEADERS: dict[Source, str] = {"zoho": "x-zoho-signature", "moodle": "x-moodle-signature"}
TOKEN_HEADER = "x-webhook-token"  # noqa: S105 - a header name, not a secret
TOKEN_FIELD = "token"  # noqa: S105 - a field name, not a secret
_PREFIX = "sha256="


@dataclass(frozen=True)
class WebhookCredentials:
    """The active secrets of one source (several during a rotation) and its shared tokens."""

    secrets: tuple[bytes, ...] = ()
    tokens: tuple[str, ...] = ()

    @classmethod
    def of(cls, secrets: Iterable[str], tokens: Iterable[str] = ()) -> WebhookCredentials:
        return cls(tuple(s.encode() for s in secrets if s), tuple(t for t in tokens if t))


def sign(secret: str | bytes, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of ``body``: what a sender puts in the signature header."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def any_equal(candidate: bytes, accepted: Iterable[bytes]) -> bool:
    # Compare against every accepted value, so timing does not reveal which one matched.
    matched = False
    for value in accepted:
        matched |= hmac.compare_digest(candidate, value)
    return matched


def authenticate(
    source: Source,
    headers: Mapping[str, str],
    body: bytes,
    credentials: WebhookCredentials,
    body_token: Callable[[], str | None] | None = None,
) -> str:
    """Accept the request or raise ``SignatureRejected``; returns how it was authenticated.

    ``headers`` must have lowercase names (API Gateway's payload v2 does that).
    A signature, when present, decides alone; the shared token is only looked at
    when the sender did not sign and the source has tokens configured, and
    ``body_token`` (which reads the body) is only called when no header carries one.
    """
    if not credentials.secrets and not credentials.tokens:
        raise SignatureRejected("No webhook secret is configured for this source", cause="no_secret_configured")
    signature = headers.get(SIGNATURE_HEADERS[source])
    if signature is None:
        token = headers.get(TOKEN_HEADER)
        if token is None and credentials.tokens and body_token is not None:
            token = body_token()
        if credentials.tokens and token is not None:
            if any_equal(token.encode(), (t.encode() for t in credentials.tokens)):
                return "token"
            raise SignatureRejected("Shared token does not match", cause="token_mismatch")
        raise SignatureRejected("Signature header is missing", cause="missing_signature")
    digest = signature.strip().lower().removeprefix(_PREFIX)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise SignatureRejected("Signature is not a SHA-256 hex digest", cause="malformed_signature")
    if not any_equal(digest.encode(), (sign(secret, body).encode() for secret in credentials.secrets)):
        raise SignatureRejected("Signature does not match", cause="signature_mismatch")
    return "signature"
