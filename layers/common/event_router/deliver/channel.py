"""The token of Zoho's notification channel: Zoho echoes it in every callback, and the verifier
checks it. It is derived from the Zoho webhook secret, so the channel needs no secret of its own and
rotating the webhook secret rotates it (the verifier accepts every secret of a rotation)."""

from __future__ import annotations

import hashlib
import hmac


def channel_token(webhook_secret: bytes) -> str:
    return hmac.new(webhook_secret, b"zoho-notification-channel", hashlib.sha256).hexdigest()
