"""Webhook authentication (docs/api.md): HMAC-SHA256 over the raw body, or an opt-in shared token."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from event_router.contract import AuthMethod, Source
from event_router.errors import SignatureRejected

SIGNATURE_HEADERS: dict[Source, str] = {"zoho": "x-zoho-signature", "moodle": "x-moodle-signature"}
# A signed timestamp (Unix seconds): the signature then covers ``<timestamp>.<body>``, so a captured
# request cannot be replayed once ``max_age`` has passed.
TIMESTAMP_HEADERS: dict[Source, str] = {"zoho": "x-zoho-timestamp", "moodle": "x-moodle-timestamp"}
DEFAULT_MAX_AGE = 300
TOKEN_HEADER = "x-webhook-token"  # noqa: S105 - a header name, not a secret
TOKEN_FIELD = "token"  # noqa: S105 - a field name, not a secret
_PREFIX = "sha256="


@dataclass(frozen=True)
class WebhookCredentials:
    """The active secrets of one source (several during a rotation) and its shared tokens: per route
    (``route_tokens``: a token opens its own route and no other) or, for senders that need one token
    everywhere, for every route of the source (``tokens``)."""

    secrets: tuple[bytes, ...] = ()
    tokens: tuple[str, ...] = ()
    route_tokens: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # route segment → tokens

    @classmethod
    def of(
        cls, secrets: Iterable[str], tokens: Iterable[str] = (), route_tokens: Mapping[str, Iterable[str]] | None = None
    ) -> WebhookCredentials:
        per_route = {route: tuple(t for t in ts if t) for route, ts in (route_tokens or {}).items()}
        return cls(
            tuple(s.encode() for s in secrets if s),
            tuple(t for t in tokens if t),
            {route: ts for route, ts in per_route.items() if ts},
        )

    def accepts_tokens(self) -> bool:
        return bool(self.tokens or self.route_tokens)


def sign(secret: str | bytes, body: bytes, timestamp: int | str | None = None) -> str:
    """The lowercase hex HMAC-SHA256 a sender puts in the signature header: of ``body``, or with a
    timestamp (sent in the timestamp header) of ``<timestamp>.<body>``."""
    key = secret.encode() if isinstance(secret, str) else secret
    signed = body if timestamp is None else f"{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


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
    route: str = "",
    *,
    now: float | None = None,
    max_age: int = DEFAULT_MAX_AGE,
    untimed: bool = True,
) -> AuthMethod:
    """Accept the request or raise ``SignatureRejected``; returns how it was authenticated
    (``signature`` or ``token``).

    ``headers`` must have lowercase names (``apigateway.webhook_request`` lowers them); ``route`` is the
    route's last segment (``student``, ``grade``...), which a per-route token must match.
    A signature, when present, decides alone: hex (with or without ``sha256=``) or base64, the two
    encodings senders produce (Deluge's ``zoho.encryption.hmacsha256`` gives base64). With a
    timestamp header it covers ``<timestamp>.<body>`` and is refused once the timestamp is more than
    ``max_age`` seconds from ``now``; without one it covers the body alone, accepted while
    ``untimed`` (a transition for senders that do not send a timestamp yet). The shared
    token is only looked at when the sender did not sign and the source has tokens configured, and
    ``body_token`` (which reads the body) is only called when no header carries one.
    """
    if not credentials.secrets and not credentials.accepts_tokens():
        raise SignatureRejected("No webhook secret is configured for this source", cause="no_secret_configured")
    signature = headers.get(SIGNATURE_HEADERS[source])
    if signature is None:
        token = headers.get(TOKEN_HEADER)
        if token is None and credentials.accepts_tokens() and body_token is not None:
            token = body_token()
        if credentials.accepts_tokens() and token is not None:
            allowed = (*credentials.tokens, *credentials.route_tokens.get(route, ()))
            others = tuple(t for r, ts in credentials.route_tokens.items() if r != route for t in ts)
            candidate = token.encode()
            if any_equal(candidate, (t.encode() for t in allowed)):
                return "token"
            if any_equal(candidate, (t.encode() for t in others)):
                raise SignatureRejected("Token belongs to another route", cause="token_wrong_route")
            raise SignatureRejected("Shared token does not match", cause="token_mismatch")
        raise SignatureRejected("Signature header is missing", cause="missing_signature")
    digest = _hex_digest(signature)
    if digest is None:
        raise SignatureRejected("Signature is not a SHA-256 digest in hex or base64", cause="malformed_signature")
    header = headers.get(TIMESTAMP_HEADERS[source])
    if header is None and not untimed:
        raise SignatureRejected("A signed timestamp is required", cause="missing_timestamp")
    timestamp = None
    if header is not None:
        stamp = timestamp = header.strip()
        if not stamp.isdigit() or len(stamp) > 12:
            raise SignatureRejected("Timestamp is not Unix seconds", cause="malformed_timestamp")
        if abs((time.time() if now is None else now) - int(stamp)) > max_age:
            raise SignatureRejected("Timestamp is outside the accepted window", cause="stale_timestamp")
    if not any_equal(digest.encode(), (sign(secret, body, timestamp).encode() for secret in credentials.secrets)):
        raise SignatureRejected("Signature does not match", cause="signature_mismatch")
    return "signature"


def _hex_digest(signature: str) -> str | None:
    """The lowercase hex of a SHA-256 signature sent as hex (optionally ``sha256=``) or base64."""
    text = signature.strip()
    if text.lower().startswith(_PREFIX):
        text = text[len(_PREFIX) :]
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.lower()
    if len(text) == 44 and text.endswith("="):
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw.hex() if len(raw) == 32 else None
    return None
