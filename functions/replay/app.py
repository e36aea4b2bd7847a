"""Replay: move dead-lettered events back to their module queue, or re-queue event-log rows (SPEC §8).

Invoked by an operator (``aws lambda invoke``, or ``make replay`` locally) and by
the schedule that sweeps rows stuck in ``received``.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.replay import build_replayer

replayer = build_replayer()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return replayer.run(event)
