"""Module processors: mirror the events of one module's queue into Postgres (SPEC §7, §8).

The template deploys this code four times (StudentsProcessor, EnrollmentsProcessor,
GradesProcessor, PaymentsProcessor); ``MODULE`` says which queue and rules each serves.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.processing import build_processor

processor = build_processor()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return processor.handle(event, context)
