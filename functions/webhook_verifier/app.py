"""Webhook verifiers (docs/api.md): authenticate a Zoho CRM or Moodle webhook, log it, queue it.

Deployed twice, as ZohoWebhookFunction and MoodleWebhookFunction; ``SOURCE`` says which.
In: an API Gateway REST API request (payload format 1.0; format 2.0 reads the same) on one of the
source's routes.
Out: 202 (accepted) or 200 (duplicate) with the event id; 400, 401, 404 or 413 for a request that
is refused; 503 with Retry-After when neither the event log nor the queue can take it.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.verify.apigateway import HANDLED_ERRORS, error_response, receipt_response, webhook_request
from event_router.verify.verifier import build_verifier

verifier = build_verifier()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        receipt = verifier.accept(webhook_request(event))
    except HANDLED_ERRORS as error:
        return error_response(error)
    return receipt_response(receipt)
