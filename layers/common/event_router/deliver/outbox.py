"""Deliveries on their way: the message a destination's queue carries, and what sends it.

A delivery row is written in the transaction of the mirror change that calls for it; its message
goes out after the commit. If the send fails (or the function dies first), the row stays
``pending`` and the sweep sends it again once it is overdue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import batched
from typing import Any

from event_router.observability import logger
from event_router.settings import Settings


@dataclass(frozen=True)
class DeliveryMessage:
    """What a destination's queue carries: only the delivery's id (no personal data)."""

    delivery_id: int
    destination: str

    def body(self) -> str:
        return json.dumps({"delivery_id": self.delivery_id, "destination": self.destination})

    @classmethod
    def from_json(cls, body: str) -> DeliveryMessage | None:
        try:
            document = json.loads(body)
            return cls(int(document["delivery_id"]), str(document["destination"]))
        except (ValueError, KeyError, TypeError):
            return None


class DeliveryPublisher:
    """Sends deliveries to their destination's queue. A failed send is logged and left to the sweep,
    which sends pending deliveries again once they are overdue."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self._settings = settings
        self._client = client  # made on first use: a processor without deliveries never needs it
        self._queue_urls = {"moodle": settings.moodle_delivery_queue_url, "zoho": settings.zoho_delivery_queue_url}

    def enabled(self, destination: str) -> bool:
        return bool(self._queue_urls.get(destination))

    def send(self, deliveries: list[tuple[int, str]]) -> None:
        by_queue: dict[str, list[DeliveryMessage]] = {}
        for delivery_id, destination in deliveries:
            url = self._queue_urls.get(destination)
            if url:
                by_queue.setdefault(url, []).append(DeliveryMessage(delivery_id, destination))
        if not by_queue:
            return
        if self._client is None:
            # Imported here: the AWS client's modules are left out of the cold start until a delivery is sent.
            from event_router.core.aws import sqs_client  # noqa: PLC0415

            self._client = sqs_client(self._settings)
        for url, messages in by_queue.items():
            for chunk in batched(messages, 10):  # SQS's batch limit
                entries = [{"Id": str(m.delivery_id), "MessageBody": m.body()} for m in chunk]
                try:
                    answer = self._client.send_message_batch(QueueUrl=url, Entries=entries)
                except Exception as error:  # noqa: BLE001 - best effort: the sweep sends overdue deliveries
                    logger.warning("could not send deliveries; the sweep will", error=type(error).__name__)
                    continue
                if answer.get("Failed"):
                    logger.warning("could not send some deliveries; the sweep will", count=len(answer["Failed"]))
