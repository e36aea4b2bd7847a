"""Health and stats of the router: ``GET /api/v1/events/health`` and ``/stats`` (SPEC §10)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.monitor import build_monitor
from event_router.observability import logger

monitor = build_monitor()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return monitor.handle(event)
