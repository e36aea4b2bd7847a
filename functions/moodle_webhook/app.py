"""Moodle webhooks: verify the signature, log the event, queue it for its module (SPEC §3 to §6)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.verifier import build_verifier

verifier = build_verifier("moodle")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return verifier.handle(event)
