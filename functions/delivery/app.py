"""Delivery (docs/connect-moodle.md): make a destination match what the mirror holds.

Deployed twice: MoodleDeliveryFunction (``DESTINATION=moodle``: a student's Moodle user, an
enrolment) and ZohoDeliveryFunction (``DESTINATION=zoho``: Moodle grades as ``BTEC_Grades``
records, Moodle user ids on the Zoho students). In: an SQS batch of the destination's delivery
queue (each message names one delivery), or ``{"check": "<destination>"}`` from the schedule. Out:
the partial batch response (the deliveries to retry), or the health check's answer (a paused
destination resumes once it answers again). The Zoho function's check also keeps the Zoho source's
watch channel (it is the one function that holds the Zoho credentials), and the Moodle function reads
a class's Moodle course from Zoho when an enrolment has none.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.deliver.moodle.deliverer import build_moodle_deliverer
from event_router.deliver.zoho.deliverer import build_zoho_deliverer
from event_router.observability import logger
from event_router.settings import load_settings
from event_router.sources.zoho.channel import channel_check
from event_router.sources.zoho.records import class_courses

settings = load_settings()
deliverer = (
    build_zoho_deliverer(settings, also_check=channel_check(settings))
    if settings.destination == "zoho"
    else build_moodle_deliverer(settings, classes=class_courses)
)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return deliverer.handle(event, context.get_remaining_time_in_millis)
