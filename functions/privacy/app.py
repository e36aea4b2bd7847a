"""Privacy (UK GDPR articles 15 and 17): erase one student everywhere, or export what the router holds
about them. No HTTP route: an operator invokes it (``sam remote invoke PrivacyFunction``; locally
``make privacy ARGS='<event>'``).

In: ``{"action": "erase" | "export", "student": {"email": "..."}, "dry_run": false, "requested_by": "..."}``
(the student by one of ``zoho_record_id``, ``student_number``, ``email``, ``moodle_user_id``).
Out: the counts per table (erase) or the student's data as one JSON document (export).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from event_router.observability import logger
from event_router.operate.privacy import build_privacy

privacy = build_privacy()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return privacy.run(event)
