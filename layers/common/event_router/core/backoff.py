"""Retries spaced out: failed messages hidden for longer on each delivery (docs/decisions.md, "Retries back off").

With the queue's visibility timeout alone, a message that fails because Postgres is down comes back
within minutes, and ``maxReceiveCount`` receives later it is in the dead-letter queue: a short outage
would dead-letter everything that arrived during it. Growing the wait on each receive makes the same
few receives outlast an outage of hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import batched
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


@dataclass
class VisibilityBackoff:
    """Spaces out SQS's retries of failed events: each failed message stays hidden for
    ``retry_delay(receive count)`` seconds (``ChangeMessageVisibility``), so the queue's few receives
    outlast an outage of the database instead of dead-lettering everything within minutes."""

    queue_url: str
    base_seconds: int
    max_seconds: int
    max_receive_count: int
    settings: Settings
    client: Any = field(default=None, init=False, repr=False)  # made on first use: most invocations never need it

    def postpone(self, records: list[dict[str, Any]]) -> None:
        """Hide each record's message for its delay; failures are logged (the queue's own timeout applies).
        A message on its last receive is left alone, so it reaches the dead-letter queue without delay."""
        records = [r for r in records if receive_count(r) < self.max_receive_count]
        delays = [retry_delay(receive_count(r), self.base_seconds, self.max_seconds) for r in records]
        self._hide(records, delays, "postpone failed messages")

    def release(self, records: list[dict[str, Any]]) -> None:
        """Make messages visible again at once: work handed back untried (the invocation ran out of time)."""
        self._hide(records, [0] * len(records), "hand back messages")

    def _hide(self, records: list[dict[str, Any]], delays: list[int], doing: str) -> None:
        if not records:
            return
        if self.client is None:
            # Imported here: the AWS client's modules are left out of the cold start until a retry needs them.
            from event_router.core.aws import sqs_client  # noqa: PLC0415

            self.client = sqs_client(self.settings)
        entries = [
            {
                "Id": str(n),
                "ReceiptHandle": record["receiptHandle"],
                "VisibilityTimeout": delay,
            }
            for n, (record, delay) in enumerate(zip(records, delays, strict=True))
        ]
        for chunk in batched(entries, 10):  # SQS's batch limit
            try:
                answer = self.client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=list(chunk))
            except Exception as error:  # noqa: BLE001 - best effort: the queue's own timeout still applies
                logger.warning(f"could not {doing}", error=type(error).__name__)
                continue
            if answer.get("Failed"):
                logger.warning(f"could not {doing} (some of them)", count=len(answer["Failed"]))


def queue_backoff(queue_url: str | None, settings: Settings) -> Backoff | None:
    """The back-off of a function fed by the queue ``queue_url``, with the container's settings; None
    without a queue or with ``RETRY_BASE_SECONDS=0`` (then the queue's own visibility timeout spaces
    the retries)."""
    if not queue_url or not settings.retry_base_seconds:
        return None
    return VisibilityBackoff(
        queue_url, settings.retry_base_seconds, settings.retry_max_seconds, settings.max_receive_count, settings
    )
