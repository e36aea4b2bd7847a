"""Module queues (docs/operate.md): each event goes to the standard SQS queue of its module.

The message body is the ``EventMessage`` as JSON, payload included, so a
processor can write the event-log row itself when the verifier could not (the
Postgres-down path of docs/api.md). Bodies are capped at 256 KiB, so a message
(the body, and the facts drawn from it) stays under SQS's 1 MiB limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from event_router.contract import Module
from event_router.errors import QueueUnavailable
from event_router.messages import EventMessage
from event_router.observability import logger

# The attribute that marks an event the verifier could not log (Postgres was down): its processor
# writes the row first, in one statement, instead of finding it missing after the batch's statement.
UNLOGGED = "unlogged"


def message_attributes(event: EventMessage, *, logged: bool = True) -> dict[str, dict[str, str]]:
    """SQS message attributes that let an operator filter without opening the body, and tell the
    processor when the event has no log row yet."""
    named = (("source", event.source), ("module", event.module), ("event_id", event.event_id))
    return {name: {"DataType": "String", "StringValue": value} for name, value in named} | (
        {} if logged else {UNLOGGED: {"DataType": "String", "StringValue": "true"}}
    )


def unlogged(record: Mapping[str, Any]) -> bool:
    """Whether a received message (a Lambda SQS record) carries an event that was never logged."""
    attribute = record.get("messageAttributes", {}).get(UNLOGGED) or {}
    return attribute.get("stringValue") == "true"


class SqsPublisher:
    """Sends events to their module's queue; any SQS failure becomes ``QueueUnavailable``."""

    def __init__(self, client: Any, queue_urls: Mapping[Module, str]) -> None:
        self._client = client
        self._queue_urls = dict(queue_urls)

    def publish(self, event: EventMessage, *, logged: bool = True) -> None:
        """Queue the event; ``logged=False``: it has no log row (Postgres was down), and says so."""
        try:
            self._client.send_message(
                QueueUrl=self._queue_urls[event.module],
                MessageBody=event.model_dump_json(),
                MessageAttributes=message_attributes(event, logged=logged),
            )
        except (BotoCoreError, ClientError) as error:
            raise QueueUnavailable(type(error).__name__) from None

    def publish_many(self, events: list[EventMessage]) -> list[EventMessage]:
        """Send events ten to a call; the ones SQS took (the rest stay for the sweep)."""
        sent: list[EventMessage] = []
        by_module: dict[Module, list[EventMessage]] = {}
        for event in events:
            by_module.setdefault(event.module, []).append(event)
        for module, batch in by_module.items():
            for start in range(0, len(batch), 10):
                chunk = batch[start : start + 10]
                entries = [
                    {
                        "Id": str(n),
                        "MessageBody": event.model_dump_json(),
                        "MessageAttributes": message_attributes(event),
                    }
                    for n, event in enumerate(chunk)
                ]
                try:
                    answer = self._client.send_message_batch(QueueUrl=self._queue_urls[module], Entries=entries)
                except (BotoCoreError, ClientError) as error:
                    logger.warning("could not queue events; the sweep will", error=type(error).__name__)
                    continue
                refused = {int(f["Id"]) for f in answer.get("Failed", [])}
                sent += [event for n, event in enumerate(chunk) if n not in refused]
        return sent


@dataclass(frozen=True)
class DeadLetter:
    body: str
    receipt: str


class DeadLetterQueue:
    """The shared dead-letter queue, as replay and the monitor use it."""

    def __init__(self, client: Any, url: str) -> None:
        self._client = client
        self.url = url

    def receive(self, at_most: int, wait_seconds: int = 0) -> list[DeadLetter]:
        """Up to ``at_most`` (and 10) messages, hidden from others for a minute while replay decides
        (``wait_seconds`` > 0: long polling, which asks every SQS server rather than a sample)."""
        messages = self._client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=min(10, at_most),
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=wait_seconds,
        ).get("Messages", [])
        return [DeadLetter(m["Body"], m["ReceiptHandle"]) for m in messages]

    def delete(self, receipt: str) -> None:
        self._client.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)

    def release(self, receipts: list[str]) -> None:
        """Make messages visible again at once (replay left them where they were)."""
        for receipt in receipts:
            self._client.change_message_visibility(QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=0)

    def total(self) -> int:
        """Messages held, waiting or in flight (approximate, as SQS counts them); raises when SQS
        does not answer."""
        try:
            attributes = self._client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        except (BotoCoreError, ClientError) as error:
            raise QueueUnavailable(type(error).__name__) from None
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def depth(self) -> int | None:
        """Messages waiting; None when SQS does not answer."""
        try:
            attributes = self._client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
        except (BotoCoreError, ClientError):
            return None
        return int(attributes["ApproximateNumberOfMessages"])


def queues_answer(client: Any, urls: list[str]) -> bool:
    """True when SQS answers for every queue of ``urls``."""
    try:
        for url in urls:
            client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    except (BotoCoreError, ClientError) as error:
        logger.warning("queues unavailable", error=type(error).__name__)
        return False
    return True
