"""Lambda's SQS event source mapping, in-process: what makes processors run without AWS.

A ``QueuePoller`` receives a batch the way the mapping does (batch size,
batching window), hands the function an event shaped like Lambda's, deletes
the messages the function did not report as failures, and leaves the failures
to come back after the queue's visibility timeout, where the queue's redrive
policy moves them to the dead-letter queue after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.invoke import LocalContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def lambda_sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str = "eu-west-2") -> dict[str, Any]:
    """The event Lambda passes a function for messages received from an SQS queue."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value["DataType"],
                    }
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


@dataclass
class PollResult:
    received: int = 0
    failed: int = 0


class QueuePoller:
    """Feeds one queue's messages to one function, as an SQS trigger with partial batch responses."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        function_name: str,
        *,
        batch_size: int = 10,
        batching_window: float = 0.0,
        report_batch_item_failures: bool = True,
        retry_immediately: bool = False,
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self._handler = handler
        self.function_name = function_name
        self._batch_size = batch_size
        self._batching_window = batching_window
        self._partial = report_batch_item_failures
        # Tests may skip the visibility timeout's wait; the local stack keeps the real one.
        self._retry_immediately = retry_immediately
        self._queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def _receive(self, wait_seconds: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + self._batching_window
        while len(messages) < self._batch_size:
            batch = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self._batch_size - len(messages)),
                WaitTimeSeconds=wait_seconds if not messages else 0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages += batch
            if not batch and (not messages or time.monotonic() >= deadline):
                break
            if not batch:
                time.sleep(0.05)
        return messages

    def poll_once(self, wait_seconds: int = 0) -> PollResult:
        """Receive one batch and run the function on it."""
        messages = self._receive(wait_seconds)
        if not messages:
            return PollResult()
        event = lambda_sqs_event(messages, self._queue_arn)
        try:
            response = self._handler(event, LocalContext(self.function_name))
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
            if failed and not self._partial:  # without ReportBatchItemFailures, one failure fails the batch
                failed = {m["MessageId"] for m in messages}
        except Exception:  # noqa: BLE001 - a crashed invocation fails its whole batch, as in Lambda
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        if self._retry_immediately:
            for message in messages:
                if message["MessageId"] in failed:
                    self._sqs.change_message_visibility(
                        QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
        return PollResult(received=len(messages), failed=len(failed))

    def drain(self, max_polls: int = 100) -> int:
        """Poll until the queue gives nothing more; the number of messages received."""
        received = 0
        for _ in range(max_polls):
            result = self.poll_once()
            if result.received == 0:
                return received
            received += result.received
        return received
