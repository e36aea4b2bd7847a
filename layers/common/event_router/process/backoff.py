"""Retries spaced out: failed messages hidden for longer on each delivery (docs/operate.md, README "Durability").

With the queue's visibility timeout alone, a message that fails because Postgres is down comes back
within minutes, and ``maxReceiveCount`` receives later it is in the dead-letter queue: a short outage
would dead-letter everything that arrived during it. Growing the wait on each receive makes the same
few receives outlast an outage of hours.
"""

from __future__ import annotations

from typing import Any, Protocol

from event_router.observability import logger
from event_router.settings import Settings

MAX_VISIBILITY_TIMEOUT = 12 * 60 * 60  # SQS's own ceiling
FACTOR = 4  # each wait is four times the last: 2, 8, 32, 128 minutes with the template's defaults


class Backoff(Protocol):
    def postpone(self, records: list[dict[str, Any]]) -> None: ...
    def release(self, records: list[dict[str, Any]]) -> None: ...


class NoBackoff:
    """Retries come back after the queue's visibility timeout (tests that drive SQS by hand)."""

    def postpone(self, records: list[dict[str, Any]]) -> None:
        return None

    def release(self, records: list[dict[str, Any]]) -> None:
        return None


def receive_count(record: dict[str, Any]) -> int:
    """How many times SQS has delivered this message (Lambda's SQS record), this delivery included."""
    return int(record["attributes"].get("ApproximateReceiveCount", 1))


def retry_delay(receive_count: int, base_seconds: int, max_seconds: int) -> int:
    """Seconds to hide a message that failed on its ``receive_count``-th delivery: ``FACTOR`` times
    longer on each delivery, capped."""
    return min(base_seconds * FACTOR ** max(receive_count - 1, 0), max_seconds, MAX_VISIBILITY_TIMEOUT)


def outage_window(base_seconds: int, max_seconds: int, max_receive_count: int) -> int:
    """The longest outage that dead-letters nothing: the time of the last of ``max_receive_count``
    receives, counted from the first (a message is dead-lettered only when its last receive fails)."""
    return sum(retry_delay(n, base_seconds, max_seconds) for n in range(1, max_receive_count))


class VisibilityBackoff:
    """Spaces out SQS's retries of failed events: each failed message stays hidden for
    ``retry_delay(receive count)`` seconds (``ChangeMessageVisibility``), so the queue's few receives
    outlast an outage of the database instead of dead-lettering everything within minutes."""

    def __init__(
        self, queue_url: str, base_seconds: int, max_seconds: int, max_receive_count: int, settings: Settings
    ) -> None:
        self._queue_url = queue_url
        self._base_seconds = base_seconds
        self._max_seconds = max_seconds
        self._max_receive_count = max_receive_count
        self._settings = settings
        self._client: Any = None  # created on first use: most invocations never need it

    def postpone(self, records: list[dict[str, Any]]) -> None:
        """Hide each record's message for its delay; failures are logged (the queue's own timeout applies).
        A message on its last receive is left alone, so it reaches the dead-letter queue without delay."""
        records = [r for r in records if receive_count(r) < self._max_receive_count]
        delays = [retry_delay(receive_count(r), self._base_seconds, self._max_seconds) for r in records]
        self._hide(records, delays, "postpone failed messages")

    def release(self, records: list[dict[str, Any]]) -> None:
        """Make messages visible again at once: work handed back untried (the invocation ran out of time)."""
        self._hide(records, [0] * len(records), "hand back messages")

    def _hide(self, records: list[dict[str, Any]], delays: list[int], doing: str) -> None:
        if not records:
            return
        if self._client is None:
            # Imported here: boto3 would add a third of a second to every processor's cold start.
            from event_router.queues import sqs_client  # noqa: PLC0415

            self._client = sqs_client(self._settings)
        entries = [
            {
                "Id": str(n),
                "ReceiptHandle": record["receiptHandle"],
                "VisibilityTimeout": delay,
            }
            for n, (record, delay) in enumerate(zip(records, delays, strict=True))
        ]
        for start in range(0, len(entries), 10):
            try:
                answer = self._client.change_message_visibility_batch(
                    QueueUrl=self._queue_url, Entries=entries[start : start + 10]
                )
            except Exception as error:  # noqa: BLE001 - best effort: the queue's own timeout still applies
                logger.warning(f"could not {doing}", error=type(error).__name__)
                continue
            if answer.get("Failed"):
                logger.warning(f"could not {doing} (some of them)", count=len(answer["Failed"]))
