"""One HTTP exchange with a destination (Moodle's web services, Zoho's API and accounts server).

Connections are pooled per container and kept alive, so a batch of deliveries opens one connection
(and one TLS handshake) to each host rather than one per call. urllib3 comes with the Lambda
runtime's botocore, as boto3 does. Redirects are not followed: a destination URL that redirects is
misconfigured, and following a POST's redirect would drop its body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import urllib3

from event_router.core.lifecycle import after_restore

_POOL = urllib3.PoolManager(maxsize=4)
after_restore(_POOL.clear)  # a restored container opens its own connections (core/lifecycle.py)


class Unreachable(Exception):
    """The destination could not be reached, or did not answer within the timeout."""


@dataclass(frozen=True)
class Answer:
    """What the destination answered; an HTTP error status is an answer, not an exception."""

    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None


def send(method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float) -> Answer:
    """One request, never retried here (the delivery's own retries decide); ``Unreachable`` when no
    answer came."""
    try:
        response = _POOL.request(
            method, url, body=body, headers=dict(headers), timeout=timeout, retries=False, redirect=False
        )
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise Unreachable(type(error).__name__) from None
    return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.data)
