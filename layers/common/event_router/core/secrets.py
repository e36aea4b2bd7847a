"""Reading a secret from AWS Secrets Manager, the one way every function does it.

Each secret is kept for ``max_age`` seconds (``SECRETS_MAX_AGE``), so a rotated or corrected secret
takes effect within that time and without a deploy, and a warm container does not call Secrets
Manager on every request. The client is botocore's (``aws.py``), made on first use: Powertools' parameters
utility would import boto3 on top of botocore, a tenth of a second of every cold start for a cache
of a few lines (docs/decisions.md, "Secrets through botocore").
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from event_router.core import aws
from event_router.core.lifecycle import after_restore
from event_router.errors import Refusal

_KEPT: dict[str, tuple[str, float]] = {}  # secret ARN → (its text, when it was read)
_CLIENTS: dict[tuple[str | None, str | None], Any] = {}  # (endpoint, region) → a Secrets Manager client
_LOCK = threading.Lock()


class SecretUnavailable(Exception):
    """Secrets Manager did not give the secret; the message names only the kind of failure."""


@after_restore
def forget_secrets() -> None:
    """Read every secret afresh (a container restored from a snapshot: it may have been rotated since)."""
    with _LOCK:
        _KEPT.clear()
        _CLIENTS.clear()


def _client() -> Any:
    """The Secrets Manager client of the endpoint configured now (tests point it at a stand-in)."""
    key = (os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or os.environ.get("AWS_ENDPOINT_URL"), aws.region())
    with _LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = aws.client("secretsmanager")
        return _CLIENTS[key]


def read_secret(arn: str, max_age: int) -> str:
    """The text of the secret ``arn`` (kept for ``max_age`` seconds)."""
    now = time.monotonic()
    kept = _KEPT.get(arn)
    if kept is not None and now - kept[1] < max_age:
        return kept[0]
    try:
        answer = _client().get_secret_value(SecretId=arn)
        text = answer["SecretString"] if "SecretString" in answer else answer["SecretBinary"].decode()
    except Exception as error:  # noqa: BLE001 - whatever the cause, the secret is out of reach
        raise SecretUnavailable(type(error).__name__) from None
    _KEPT[arn] = (str(text), now)
    return str(text)


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
