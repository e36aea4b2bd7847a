"""Reconciliation (docs/first-day.md): import what Zoho and Moodle already hold, and repair what drifted.

Invoked nightly by its schedule, by an operator (``aws lambda invoke``, ``make reconcile`` locally)
with ``{"dry_run": true}`` or ``{"full": true}``, and by its own follow-up queue when a run needs more
than one invocation. Out: the run's summary (its status, phase and figures; docs/first-day.md).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.operate.reconcile import build_reconciler

reconciler = build_reconciler()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return reconciler.invoke(event, context.get_remaining_time_in_millis)
