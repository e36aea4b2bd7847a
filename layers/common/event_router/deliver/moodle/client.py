"""The Moodle connector: a small client for Moodle's REST web services, and its error model.

Every call is ``POST {url}/webservice/rest/server.php`` with ``wstoken``, ``wsfunction`` and
``moodlewsrestformat=json``; arrays travel as PHP-style form fields (``users[0][username]=…``).
Moodle answers HTTP 200 to everything, errors included: an error is a JSON object with
``exception``, ``errorcode`` and ``message``. What an error means for a delivery is decided in one
table (``classify``): the destination is misconfigured (pause it), the data is wrong (the delivery
fails with Moodle's message), or Moodle is unwell (retry later).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

from event_router.core import http
from event_router.core.secrets import connector_secret, secret_field
from event_router.errors import DeliveryError, Refusal
from event_router.settings import Settings

# The web-service functions the router calls: what an administrator adds to the external service.
FUNCTIONS = (
    "core_webservice_get_site_info",
    "core_user_get_users_by_field",
    "core_user_create_users",
    "core_user_update_users",
    "core_course_get_courses_by_field",
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "core_enrol_get_enrolled_users",  # reconciliation: who is enrolled in a course, one call a course
    "gradereport_user_get_grade_items",  # reconciliation: a course's grades, one call a course
    "local_eventrouter_get_account_facts",  # the Moodle plugin's: admin? roles anywhere? before any change
)
ACCOUNT_FACTS = "local_eventrouter_get_account_facts"

# What the web-service user's role holds, at system level, and nothing more (docs/connect-moodle.md;
# the contract suite runs the real Moodle with a user holding exactly these).
CAPABILITIES = (
    "webservice/rest:use",  # call the REST protocol
    "moodle/user:viewdetails",  # find a user (core_user_get_users_by_field) ...
    "moodle/user:viewalldetails",  # ... with its username and idnumber, which the router compares
    "moodle/site:viewuseridentity",  # ... and its e-mail address (one of the site's identity fields)
    "moodle/user:create",  # create a student's user
    "moodle/user:update",  # update, suspend and reactivate it
    "moodle/course:view",  # see the courses it enrols into without being enrolled itself
    "moodle/course:viewhiddencourses",  # ... hidden ones too (a course is often hidden while it is set up)
    "enrol/manual:enrol",  # enrol, and suspend an enrolment
    "enrol/manual:unenrol",  # unenrol
    "moodle/role:assign",  # give the enrolment the student role (also allow the role to assign "student")
    "moodle/course:viewparticipants",  # reconciliation: list a course's enrolled users ...
    "moodle/course:enrolreview",  # ... the active ones only (onlyactive)
    "gradereport/user:view",  # reconciliation: read a course's grades ...
    "moodle/grade:viewall",  # ... of every student
)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# errorcode → what it means. Configuration errors stop every delivery until an administrator acts;
# transient ones pass by themselves; anything else is about the data of one delivery.
_REFUSALS: dict[str, Refusal] = {
    "invalidtoken": "configuration",  # wrong, expired or deleted token
    "accessexception": "configuration",  # web services off, or the function is not in the service
    "nopermissions": "configuration",  # the web-service user lacks a capability
    "requireloginerror": "configuration",
    "servicerequireslogin": "configuration",
    "usernotfullysetup": "configuration",
    "wsusercannotassign": "configuration",  # the web-service user may not assign the student role
    "sitemaintenance": "transient",
    "dmlreadexception": "transient",
    "dmlwriteexception": "transient",
    "dbconnectionfailed": "transient",
    "dmltransactionexception": "transient",
}


class MoodleError(DeliveryError):
    """Moodle refused a call; ``kind`` says what a delivery should do about it."""


def classify(errorcode: str) -> Refusal:
    return _REFUSALS.get(errorcode, "data")


def form_fields(params: Mapping[Any, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Moodle's PHP-style form encoding: nested dicts and lists become ``name[key][0]=value``."""
    fields: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            fields += form_fields(value, name)
        elif isinstance(value, list | tuple):
            fields += form_fields(dict(enumerate(value)), name)
        elif isinstance(value, bool):
            fields.append((name, "1" if value else "0"))
        elif value is not None:
            fields.append((name, str(value)))
    return fields


class Moodle(Protocol):
    """What the router needs from Moodle: one web-service call."""

    def call(self, function: str, params: Mapping[str, Any] | None = None) -> Any: ...


class MoodleRestClient:
    """Calls one Moodle site's REST web services with one token; counts its calls."""

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self._endpoint = url.rstrip("/") + "/webservice/rest/server.php"
        self._token = token
        self._timeout = timeout
        self.calls = 0

    def call(self, function: str, params: Mapping[str, Any] | None = None) -> Any:
        """The decoded answer of ``function``; ``MoodleError`` when Moodle (or the way to it) fails."""
        fields = [("wstoken", self._token), ("wsfunction", function), ("moodlewsrestformat", "json")]
        body = urlencode(fields + form_fields(params or {})).encode()
        self.calls += 1
        try:
            reply = http.send("POST", self._endpoint, body, FORM, self._timeout)
        except http.Unreachable as error:
            raise MoodleError("transient", "unreachable", str(error)) from None
        if not 200 <= reply.status < 300:
            kind: Refusal = "transient" if reply.status >= 500 or reply.status == 429 else "configuration"
            raise MoodleError(kind, f"http{reply.status}", "Moodle answered with an HTTP error")
        try:
            answer = reply.json()
        except ValueError:
            raise MoodleError("transient", "notjson", "Moodle's answer is not JSON") from None
        if isinstance(answer, dict) and "exception" in answer:
            code = str(answer.get("errorcode") or answer["exception"])
            raise MoodleError(classify(code), code, str(answer.get("message", "")))
        return answer


def moodle_client(settings: Settings) -> Callable[[], Moodle]:
    """The Moodle client of this container: URL from the settings, token from ``MOODLE_TOKEN`` or the
    Secrets Manager secret ``MOODLE_TOKEN_SECRET_ARN``, read again every ``SECRETS_MAX_AGE`` seconds
    so that a corrected or rotated token takes effect without a deploy."""
    made: dict[str, Moodle] = {}

    def client() -> Moodle:
        if not settings.moodle_url:
            raise MoodleError("configuration", "nourl", "MOODLE_URL is not set")
        token = settings.moodle_token or _secret_token(settings)  # Powertools caches it for max_age
        if token not in made:
            made.clear()
            made[token] = MoodleRestClient(settings.moodle_url, token, settings.moodle_timeout_seconds)
        return made[token]

    return client


def _secret_token(settings: Settings) -> str:
    arn, max_age = settings.moodle_token_secret_arn, settings.secrets_max_age
    return secret_field(
        connector_secret(arn, max_age, MoodleError, ("notoken", "no Moodle token is configured")), "token"
    )
