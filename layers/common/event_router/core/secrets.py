"""Reading a secret from AWS Secrets Manager, the one way every function does it.

Powertools caches each secret for ``max_age`` seconds, so a rotated or corrected secret takes effect
within that time and without a deploy, and a warm container does not call Secrets Manager on every
request. Powertools is imported on first use: a function configured without secrets never pays for
the import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from event_router.errors import Refusal


class SecretUnavailable(Exception):
    """Secrets Manager did not give the secret; the message names only the kind of failure."""


def read_secret(arn: str, max_age: int) -> str:
    """The text of the secret ``arn`` (cached for ``max_age`` seconds)."""
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - only where a secret is used

    try:
        raw = parameters.get_secret(arn, max_age=max_age)
    except Exception as error:  # noqa: BLE001 - whatever the cause, the secret is out of reach
        raise SecretUnavailable(type(error).__name__) from None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def connector_secret(
    arn: str | None, max_age: int, refused: Callable[[Refusal, str, str], Exception], missing: tuple[str, str]
) -> str:
    """The secret of a connector (Moodle's token, Zoho's client): none configured is the router's set-up
    (``refused("configuration", ...)``, which pauses deliveries), an unreadable one a passing trouble."""
    if not arn:
        raise refused("configuration", *missing)
    try:
        return read_secret(arn, max_age)
    except SecretUnavailable as error:
        raise refused("transient", "secretunavailable", str(error)) from None


def json_secret(arn: str, max_age: int) -> dict[str, Any]:
    """The secret ``arn`` as a JSON object (a login's ``{"username", "password", ...}``)."""
    document = json.loads(read_secret(arn, max_age))
    if not isinstance(document, dict):
        raise SecretUnavailable("the secret is not a JSON object")
    return document


def secret_field(text: str, key: str) -> str:
    """``key`` of a secret stored as a JSON object, or the whole text of a plain secret."""
    try:
        document = json.loads(text)
    except ValueError:
        return text.strip()
    return str(document.get(key, "")) if isinstance(document, dict) else text.strip()
