"""Module processors (docs/operate.md): mirror the events of one module's queue into Postgres, exactly once.

Deployed four times (StudentsProcessor, EnrollmentsProcessor, GradesProcessor, PaymentsProcessor);
``MODULE`` says which queue and sync rules each serves.
In: an SQS batch from the module's queue. Out: the partial batch response (``batchItemFailures``:
the events SQS should deliver again).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.process.processor import build_processor

processor = build_processor()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return processor.handle(event, context)
