"""The whole pipeline behind its queues with the Zoho and Moodle stand-ins a test owns: the verifiers,
the processors, both delivery functions, and the reconciliation, each loaded as Lambda loads it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from devstack.moodle_standin import MoodleStandIn
from devstack.poller import QueuePoller
from devstack.samples import Sample
from devstack.zoho_standin import ZohoStandIn
from event_router.deliver.zoho.client import zoho_client
from event_router.settings import Settings
from event_router.store.connection import PreparedConnection, connection_params
from tests.conftest import Queues

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class ZohoPipeline:
    """The verifiers, the four processors, and both delivery functions behind their queues; the Zoho
    and Moodle stand-ins the test owns."""

    def __init__(
        self,
        load: Callable[..., Invoke],
        queues: Queues,
        zoho: ZohoStandIn,
        moodle: MoodleStandIn,
        db: Engine,
        database_url: str,
    ) -> None:
        self.queues, self.zoho, self.moodle, self._load, self.db = queues, zoho, moodle, load, db
        sqs = queues.sqs
        dlq_arn = sqs.get_queue_attributes(QueueUrl=queues.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
        prefix = queues.urls["students"].rsplit("/", 1)[1]
        self.urls = {
            d: sqs.create_queue(
                QueueName=f"{prefix}-{d}-delivery", Attributes={"VisibilityTimeout": "30", "RedrivePolicy": redrive}
            )["QueueUrl"]
            for d in ("moodle", "zoho")
        }
        self.wiring = {
            "MOODLE_DELIVERY_QUEUE_URL": self.urls["moodle"],
            "ZOHO_DELIVERY_QUEUE_URL": self.urls["zoho"],
            "ZOHO_ACCOUNTS_URL": zoho.url,
            "ZOHO_CREDENTIALS": json.dumps(zoho.credentials),
            "MAX_RECEIVE_COUNT": "3",
            "RETRY_BASE_SECONDS": "0",
        }
        self.verifiers = {"zoho": load("ZohoWebhookFunction"), "moodle": load("MoodleWebhookFunction")}
        self.processors = [
            self._poller(f"{m.capitalize()}Processor", queues.urls[m]) for m in ("students", "enrollments", "grades")
        ]
        self.moodle_delivery = self._poller(
            "MoodleDeliveryFunction", self.urls["moodle"], MOODLE_URL=moodle.url, MOODLE_TOKEN=moodle.site.token
        )
        self.restart_zoho_delivery()
        self.seed_zoho_token(database_url)

    def _poller(self, name: str, url: str, batch_size: int = 10, **overrides: str) -> QueuePoller:
        invoke = self._load(name, **self.wiring, **overrides)
        return QueuePoller(
            self.queues.sqs, url, lambda event, _: invoke(event), name, batch_size=batch_size, retry_immediately=True
        )

    def seed_zoho_token(self, database_url: str) -> None:
        """The shared access token, as the Zoho delivery function's first scheduled check leaves it:
        the other functions hold no Zoho secret and call Zoho with this token."""
        settings = Settings.model_validate({**self.wiring, "DATABASE_URL": database_url})
        connection = PreparedConnection(connection_params(settings, "tests"))
        try:
            zoho_client(settings, connection)().check_token()
        finally:
            connection.close()

    def restart_zoho_delivery(self, **overrides: str) -> None:
        self.zoho_delivery = self._poller("ZohoDeliveryFunction", self.urls["zoho"], batch_size=100, **overrides)
        check = self._load("ZohoDeliveryFunction", **self.wiring, ZOHO_NOTIFY_URL="http://127.0.0.1:9/notify")
        self.check = lambda: check({"check": "zoho"})

    def send(self, *samples: Sample) -> list[dict[str, Any]]:
        answers = []
        for sample in samples:
            response = self.verifiers[sample.source](sample.event())
            assert response["statusCode"] in (200, 202), response
            answers.append(json.loads(response["body"]))
        return answers

    def run(self) -> None:
        for _ in range(30):
            moved = sum(p.drain() for p in self.processors)
            moved += self.moodle_delivery.drain() + self.zoho_delivery.drain()
            if moved == 0:
                return
        raise AssertionError("the pipeline did not settle")

    def upserts(self) -> int:
        return self.zoho.org.calls["POST /crm/v8/BTEC_Grades/upsert"]

    def replay(self, request: dict[str, Any]) -> dict[str, Any]:
        """The replay function, as an operator runs it."""
        return self._load("ReplayFunction", **self.wiring)(request)

    def reconcile(self, **request: Any) -> dict[str, Any]:
        """One invocation of the reconciliation (``make reconcile ARGS=...``)."""
        invoke = self._load(
            "ReconcileFunction", **self.wiring, MOODLE_URL=self.moodle.url, MOODLE_TOKEN=self.moodle.site.token
        )
        return invoke(request)
