"""The operators' console (docs/operate.md, "The console"): HTML pages and four actions.

In: an API Gateway HTTP API request on a ``/console`` route (behind ``ConsoleAuthorizerFunction``,
except ``/console/login``, ``/console/callback`` and ``/console/logout``). Out: an HTML page, or a
redirect after an action or a sign-in step.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.operate.console.wiring import build_console

console = build_console()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return console.serve(event)
