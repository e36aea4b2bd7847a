"""Delivery (SPEC §11): make Moodle match what the mirror holds — a student's user, an enrolment.

Deployed as MoodleDeliveryFunction. In: an SQS batch of Moodle's delivery queue (each message names
one delivery), or ``{"check": "moodle"}`` from the schedule, every minute. Out: the partial batch
response (the deliveries to retry), or the health check's answer (a paused destination resumes
once Moodle answers again).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.deliver.deliverer import build_moodle_deliverer
from event_router.observability import logger

deliverer = build_moodle_deliverer()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return deliverer.handle(event)
