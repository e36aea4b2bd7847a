"""Where each source's webhook secrets come from: the environment, or AWS Secrets Manager.

A Secrets Manager secret holds JSON ``{"secrets": [...], "tokens": ...}`` (``secrets`` a list or a
single string; ``tokens`` per route, ``{"student": "...", "grade": ["new", "old"]}``, or a list
valid on every route of the source) or just the secret as plain text. It is cached
for ``SECRETS_MAX_AGE`` seconds, so a rotated secret takes effect without a
redeploy; if Secrets Manager cannot be reached, the last good value is used.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from event_router.contract import Source
from event_router.core.lifecycle import after_restore
from event_router.core.secrets import SecretUnavailable, read_secret
from event_router.errors import CredentialsUnavailable
from event_router.observability import logger
from event_router.settings import Settings
from event_router.verify.signatures import WebhookCredentials


class CredentialSource(Protocol):
    def current(self) -> WebhookCredentials: ...


class StaticCredentials:
    """Secrets fixed at start-up (environment variables, tests)."""

    def __init__(self, credentials: WebhookCredentials) -> None:
        self._credentials = credentials

    def current(self) -> WebhookCredentials:
        return self._credentials


class SecretsManagerCredentials:
    """Secrets read through Powertools parameters, cached, with the last good value kept."""

    def __init__(self, secret_arn: str, max_age: int) -> None:
        self._secret_arn = secret_arn
        self._max_age = max_age
        self._last_raw: str | bytes | None = None
        self._last_good: WebhookCredentials | None = None
        after_restore(self.forget)

    def forget(self) -> None:
        """Keep nothing read before a snapshot: a restored container reads the secret afresh."""
        self._last_raw, self._last_good = None, None

    def current(self) -> WebhookCredentials:
        try:
            raw = read_secret(self._secret_arn, self._max_age)
        except SecretUnavailable as error:
            if self._last_good is None:
                raise CredentialsUnavailable(str(error)) from None
            logger.warning("webhook secret could not be refreshed; using the cached one", error=str(error))
            return self._last_good
        if self._last_good is None or raw != self._last_raw:  # parse once per value, not per request
            self._last_raw, self._last_good = raw, parse_secret(raw)
        return self._last_good


def parse_secret(raw: str | bytes) -> WebhookCredentials:
    """Secret text → credentials. Text that is not a JSON object is the secret itself."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        document = json.loads(text)
    except ValueError:
        return WebhookCredentials.of([text.strip()])
    if not isinstance(document, dict):
        logger.error("webhook secret is JSON but not an object; treating the source as unconfigured")
        return WebhookCredentials()
    tokens = document.get("tokens")
    if isinstance(tokens, dict):  # per route: {"student": "...", "grade": ["new", "old"]}
        per_route = {str(route): _strings(value) for route, value in tokens.items()}
        return WebhookCredentials.of(_strings(document.get("secrets")), (), per_route)
    return WebhookCredentials.of(_strings(document.get("secrets")), _strings(tokens))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def credentials_for(source: Source, settings: Settings) -> CredentialSource:
    """Secrets Manager when ``<SOURCE>_WEBHOOK_SECRET_ARN`` is set, otherwise the environment."""
    arn = settings.webhook_secret_arn(source)
    if arn:
        return SecretsManagerCredentials(arn, settings.secrets_max_age)
    return StaticCredentials(WebhookCredentials.of(settings.webhook_secrets(source), settings.webhook_tokens(source)))
