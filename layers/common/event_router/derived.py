"""Values derived from the router's secrets, shared by the stage that hands them out and the one
that checks them (so neither imports the other).

Zoho's notification channel echoes a ``token`` in every callback. Zoho takes at most 50 characters
(``INVALID_DATA`` beyond), so the token is 40 hex digits (160 bits) of an HMAC of the Zoho webhook
secret: the channel needs no secret of its own, and rotating the webhook secret rotates it (the
verifier accepts the token of every secret of a rotation, compared in constant time).
"""

from __future__ import annotations

import hashlib
import hmac

CHANNEL_TOKEN_LENGTH = 40


def channel_token(webhook_secret: bytes) -> str:
    """The token Zoho's notification channel carries, derived from the Zoho webhook secret."""
    digest = hmac.new(webhook_secret, b"zoho-notification-channel", hashlib.sha256).hexdigest()
    return digest[:CHANNEL_TOKEN_LENGTH]
