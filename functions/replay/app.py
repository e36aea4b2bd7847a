"""Replay (docs/operate.md): move dead-lettered events back to their module queue, or re-queue event-log rows.

Invoked by an operator (``aws lambda invoke``, ``make replay`` locally) and every five minutes by
the sweep schedule. In: ``{"mode": "dlq" | "log" | "sweep", "max_messages", "module", "event_ids",
"statuses", "received_after", "received_before", "dry_run"}``. Out: the counts (``examined``,
``replayed``, ``skipped``, ``failed``) and the event ids replayed.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.operate.replay import build_replayer

replayer = build_replayer()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return replayer.run(event)
