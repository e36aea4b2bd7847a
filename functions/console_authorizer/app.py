"""The console's Lambda authorizer (docs/operate.md, "The console"): lets a request through when its
session cookie holds an access token Cognito accepts, and tells the console who it is.

In: an HTTP API authorizer request (payload format 2.0). Out: a simple response
(``isAuthorized``, and the user's name and whether they are an operator in ``context``).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.operate.console.authorizer import build_authorizer

authorizer = build_authorizer()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return authorizer.decide(event)
