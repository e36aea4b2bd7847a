"""Health and stats of the router (docs/operate.md).

In: an API Gateway HTTP API request for ``GET /api/v1/events/health`` (public) or
``GET /api/v1/events/stats`` (IAM auth). Out: 200 with the checks or the figures; 503 naming what
does not answer.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.operate.monitor import build_monitor
from event_router.verify.apigateway import json_response, not_found_response

monitor = build_monitor()
ROUTES = {"GET /api/v1/events/health": monitor.health, "GET /api/v1/events/stats": monitor.stats}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    route = ROUTES.get(event.get("routeKey", ""))
    if route is None:
        return not_found_response()
    return json_response(*route())
