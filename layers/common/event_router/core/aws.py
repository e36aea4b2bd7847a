"""AWS clients, from one botocore session per container.

botocore, not boto3: boto3 wraps the same clients and would add its import (and s3transfer's) to every
cold start. One session, so the service models and endpoint data it loads are loaded once, whichever
client (SQS, Secrets Manager) a function makes first, and without botocore's scan of every service it
knows before each first load (``service_data.py``). Sessions are not safe to share between threads
while they make clients (the local stack runs many functions in one process), so making one is locked.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from event_router.settings import Settings

if TYPE_CHECKING:
    from botocore.config import Config
    from botocore.session import Session

_LOCK = threading.Lock()
_SESSION: list[Session] = []


def region() -> str | None:
    """The container's region, as Lambda sets it."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def client(service: str, config: Config | None = None) -> Any:
    """A client of ``service`` in the container's region (endpoints from ``AWS_ENDPOINT_URL_*``)."""
    from botocore.session import get_session  # noqa: PLC0415 - a function that never calls AWS never loads it

    from event_router.core import service_data  # noqa: PLC0415 - with botocore

    with _LOCK:
        if not _SESSION:
            session = get_session()
            service_data.install(session)
            _SESSION.append(session)
        return _SESSION[0].create_client(service, region_name=region(), config=config)


def sqs_client(settings: Settings) -> Any:
    """An SQS client that gives up within a few seconds, so a webhook sender is answered in time."""
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        connect_timeout=settings.sqs_connect_timeout,
        read_timeout=settings.sqs_read_timeout,
        retries={"max_attempts": settings.sqs_max_attempts, "mode": "standard"},
    )
    return client("sqs", config)
