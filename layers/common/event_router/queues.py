"""Module queues (SPEC §8): each event goes to the standard SQS queue of its module.

The message body is the ``WebhookEvent`` as JSON, payload included, so a
processor can write the event-log row itself when the verifier could not (the
Postgres-down path of SPEC §6). Bodies are capped at 256 KiB, so a message
always fits SQS's 1 MiB limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from event_router.errors import QueueUnavailable
from event_router.payloads import WebhookEvent
from event_router.routes import Module
from event_router.settings import Settings


def sqs_client(settings: Settings) -> Any:
    """An SQS client that gives up within a few seconds, so a webhook sender is answered in time."""
    config = Config(
        connect_timeout=settings.sqs_connect_timeout,
        read_timeout=settings.sqs_read_timeout,
        retries={"max_attempts": settings.sqs_max_attempts, "mode": "standard"},
    )
    return boto3.client("sqs", config=config)


def message_attributes(event: WebhookEvent) -> dict[str, dict[str, str]]:
    """SQS message attributes that let an operator filter without opening the body."""
    return {
        name: {"DataType": "String", "StringValue": value}
        for name, value in (("source", event.source), ("module", event.module), ("event_id", event.event_id))
    }


class SqsPublisher:
    """Sends events to their module's queue; any SQS failure becomes ``QueueUnavailable``."""

    def __init__(self, client: Any, queue_urls: Mapping[Module, str]) -> None:
        self._client = client
        self._queue_urls = dict(queue_urls)

    def publish(self, event: WebhookEvent) -> None:
        try:
            self._client.send_message(
                QueueUrl=self._queue_urls[event.module],
                MessageBody=event.model_dump_json(),
                MessageAttributes=message_attributes(event),
            )
        except (BotoCoreError, ClientError) as error:
            raise QueueUnavailable(type(error).__name__) from None
