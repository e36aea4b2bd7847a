"""Privacy (UK GDPR articles 15 and 17): erase one student everywhere, or export what the router holds
about them, and list who did either. Served as ``POST /api/v1/privacy``, signed with IAM: the caller's
identity comes from API Gateway and is recorded with every request; a direct invoke is refused.
Locally ``make privacy ARGS='<request>'`` sends it as a local IAM user.

In (the body): ``{"action": "erase" | "export" | "history", "student": {"email": "..."}, "dry_run": false,
"requested_by": "<reference>"}`` (the student by one of ``zoho_record_id``, ``student_number``, ``email``,
``moodle_user_id``). Out: the counts per table (erase), the student's data as one JSON document
(export), or the recorded requests (history).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.operate.privacy import build_privacy

privacy = build_privacy()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return privacy.serve(event)
