"""The sample webhooks of ``events/``: every route and payload shape, plus rejected examples.

``python -m devstack.samples`` (``make generate``) rewrites ``events/`` from this
catalogue, signing with the fake development secrets below through the same
``sign`` function the verifiers check with; a test fails when the files drift.

The secrets here are fake, published on purpose, and only for local
development and tests. Never configure them in a deployed stack.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from devstack.apigw import http_api_event, rest_api_event
from devstack.poller import lambda_sqs_event
from event_router.contract import WEBHOOK_ROUTES, ZOHO_MODULE_NAMES, Module, route_of
from event_router.verify.bodies import decode_body
from event_router.verify.payloads import parse_event
from event_router.verify.signatures import SIGNATURE_HEADERS, sign

if TYPE_CHECKING:
    from devstack.zoho_org import Org

DEV_SECRETS = {"zoho": "dev-zoho-secret-NOT-FOR-PRODUCTION", "moodle": "dev-moodle-secret-NOT-FOR-PRODUCTION"}
DEV_TOKENS = {"moodle": "dev-moodle-token-NOT-FOR-PRODUCTION"}
DEV_ERASURE_KEY = "dev-erasure-key-NOT-FOR-PRODUCTION"
EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"

Signing = Literal["signed", "signed-bare", "signed-upper", "unsigned", "bad-signature", "token"]

STUDENT_ID = "5725767000000412001"
CLASS_ID = "5725767000000520011"
MODIFIED = "2026-11-25T09:15:00+00:00"


@dataclass(frozen=True)
class Sample:
    """One example webhook and the status a fresh database answers it with."""

    name: str
    route: str
    body: bytes
    expect: int
    signing: Signing = "signed"
    content_type: str = "application/json"
    base64: bool = False

    @property
    def source(self) -> str:
        return WEBHOOK_ROUTES[self.route].source

    def headers(self, secrets: dict[str, str] = DEV_SECRETS) -> dict[str, str]:
        headers = {"content-type": self.content_type, "user-agent": f"{self.source}-webhook-sample"}
        header = SIGNATURE_HEADERS[self.source]  # type: ignore[index]
        digest = sign(secrets[self.source], self.body)
        if self.signing == "signed":
            headers[header] = f"sha256={digest}" if self.source == "zoho" else digest
        elif self.signing == "signed-bare":
            headers[header] = digest
        elif self.signing == "signed-upper":
            headers[header] = f"sha256={digest.upper()}"
        elif self.signing == "bad-signature":
            headers[header] = sign("not-the-secret", self.body)
        return headers

    def event(self, secrets: dict[str, str] = DEV_SECRETS) -> dict[str, Any]:
        """The event the webhook REST API gives its verifier for this webhook (payload format 1.0)."""
        method, path = self.route.split(" ", 1)
        return rest_api_event(
            method, path, self.body, self.headers(secrets), force_base64=self.base64, request_id=f"sample-{self.name}"
        )


def moodle_event(segment: str, name: str, timecreated: int, **fields: Any) -> Sample:
    """A signed Moodle webhook of ``\\core\\event\\<name>`` on the ``segment`` route (student 348 in
    course 12, acted by user 2, unless ``fields`` say otherwise)."""
    document = {
        "eventname": f"\\core\\event\\{name}",
        "userid": 2,
        "relateduserid": 348,
        "courseid": 12,
        "timecreated": timecreated,
        **fields,
    }
    return Sample(f"{name}-{timecreated}", f"POST /api/v1/events/moodle/{segment}", _json(document), 202)


def user_graded(user: int, item: int, grade: float | None, timecreated: int, **other: Any) -> Sample:
    """A signed Moodle ``user_graded``: ``user`` graded ``grade`` on grade item ``item``."""
    other = {"itemid": item, "finalgrade": grade, **other}
    return moodle_event("grade", "user_graded", timecreated, relateduserid=user, other=other)


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode()


def _form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


SAMPLE_COURSE = "L3-IT-2026"  # the Moodle course idnumber of the sample enrolment; the stand-in has it

# route segment: (module, record id, the record's fields besides id and Modified_Time)
ZOHO_RECORDS: dict[str, tuple[Module, str, dict[str, Any]]] = {
    "student": (
        "students",
        STUDENT_ID,
        {
            "Name": "Ada Example",
            "Student_ID_Number": "BTEC-2026-0001",
            "Academic_Email": "ada.example@students.example.ac.uk",
        },
    ),
    "enrollment": (
        "enrollments",
        "5725767000000630021",
        {
            "Name": "Ada Example - Level 3 IT",
            "Enrolled_Students": {"id": STUDENT_ID, "name": "Ada Example"},
            "Classes": {"id": CLASS_ID, "name": "Level 3 Extended Diploma in IT"},
            "Enrollment_Status": "Active",
            "Moodle_Course_ID": SAMPLE_COURSE,
        },
    ),
    "grade": (
        "grades",
        "5725767000000740031",
        {
            "Name": "Unit 1 - Ada Example",
            "Student": {"id": STUDENT_ID, "name": "Ada Example"},
            "Class": {"id": CLASS_ID, "name": "Level 3 Extended Diploma in IT"},
            "Grade": "D",
        },
    ),
    "payment": (
        "payments",
        "5725767000000850041",
        {
            "Name": "Tuition instalment 1",
            "Student": {"id": STUDENT_ID, "name": "Ada Example"},
            "Amount": 1250.0,
            "Currency": "GBP",
            "Payment_Status": "Paid",
        },
    ),
}


ZohoShape = Literal["full", "minimal", "form"]


def zoho_webhook(
    module: Module,
    record_id: str,
    *,
    operation: str = "update",
    modified: str = MODIFIED,
    notification_id: str | None = None,
    shape: ZohoShape = "full",
    signing: Signing = "signed",
    expect: int = 202,
    name: str | None = None,
    **fields: Any,
) -> Sample:
    """A Zoho webhook for one record, the one builder every test, benchmark and the dev banner use.

    ``full``: a notification with the record's fields in ``data`` (``notification_id`` defaults to
    one derived from the record, operation and time); ``minimal``: ids and what happened, no fields;
    ``form``: a workflow webhook posting the fields form-encoded, lookups as plain ids.
    """
    route = route_of("zoho", module)
    record = {"id": record_id, **fields, "Modified_Time": modified}
    if shape == "form":
        flat = {k: (v["id"] if isinstance(v, dict) else str(v)) for k, v in record.items()}
        body = _form({**flat, "operation": operation} if operation != "update" else flat)
        content_type = "application/x-www-form-urlencoded"
    else:
        identifier = notification_id or f"{module}-{record_id}-{operation}-{modified}"
        document: dict[str, Any]
        if shape == "minimal":
            document = {
                "event_id": identifier,
                "event_type": operation,
                "module": ZOHO_MODULE_NAMES[module],
                "record_id": int(record_id) if record_id.isdigit() else record_id,  # Zoho sometimes sends numbers
                "changed_fields": sorted(k for k in record if k != "id"),
                "timestamp": modified,
            }
        else:
            document = {
                "notification_id": identifier,
                "timestamp": modified,
                "module": ZOHO_MODULE_NAMES[module],
                "operation": operation,
                "record_id": record_id,
                "data": record,
            }
        body, content_type = _json(document), "application/json"
    sample_name = name or f"zoho-{module}-{record_id}-{shape}"
    return Sample(sample_name, route, body, expect, signing=signing, content_type=content_type)


def _zoho_samples() -> list[Sample]:
    samples = []
    for segment, (module, record_id, fields) in ZOHO_RECORDS.items():
        samples += [
            zoho_webhook(
                module, record_id, notification_id=f"zoho-notif-{segment}-0001", name=f"zoho-{segment}-full", **fields
            ),
            zoho_webhook(
                module,
                record_id,
                operation="created",
                modified="2026-11-25T09:00:00+00:00",
                notification_id=f"zoho-evt-{segment}-0001",
                shape="minimal",
                signing="signed-bare",
                name=f"zoho-{segment}-minimal",
                **fields,
            ),
            zoho_webhook(
                module, record_id, shape="form", signing="signed-upper", name=f"zoho-{segment}-form", **fields
            ),
        ]
    return samples


def _moodle_samples() -> list[Sample]:
    enrol, grade = "POST /api/v1/events/moodle/enrollment", "POST /api/v1/events/moodle/grade"
    raw_enrolment = {
        "eventname": "\\core\\event\\user_enrolment_created",
        "component": "core",
        "action": "created",
        "target": "user_enrolment",
        "crud": "c",
        "objectid": 9001,
        "contextinstanceid": 12,
        "userid": 2,
        "relateduserid": 348,
        "courseid": 12,
        "timecreated": 1795598100,
        "other": {"enrol": "manual"},
    }
    raw_grade = {
        "eventname": "\\core\\event\\user_graded",
        "component": "core",
        "action": "graded",
        "target": "user",
        "crud": "u",
        "objectid": 77001,
        "userid": 5,
        "relateduserid": "348",
        "courseid": "12",
        "timecreated": "1795598400",
        "other": {"itemid": 431, "overridden": False, "finalgrade": 86.5},
    }
    plugin_enrolment = {
        "eventid": "moodle-evt-enrol-0001",
        "eventname": "\\core\\event\\user_enrolment_updated",
        "courseid": 12,
        "userid": 348,
        "timecreated": 1795598200,
        "other": None,
    }
    plugin_grade = {
        "eventid": "moodle-evt-grade-0001",
        "eventname": "\\core\\event\\user_graded",
        "courseid": 12,
        "userid": 348,
        "timecreated": 1795598500,
        "other": {"itemid": 432, "finalgrade": 64},
    }
    form_unenrol = {
        "eventname": "\\core\\event\\user_enrolment_deleted",
        "crud": "d",
        "objectid": "9002",
        "userid": "2",
        "relateduserid": "349",
        "courseid": "12",
        "timecreated": "1795598600",
        "other[userenrolment][status]": "1",
        "other[enrol]": "manual",
    }
    token_enrolment = {**plugin_enrolment, "eventid": "moodle-evt-enrol-0002", "token": DEV_TOKENS["moodle"]}
    return [
        Sample("moodle-enrollment-raw", enrol, _json(raw_enrolment), 202),
        Sample("moodle-enrollment-plugin", enrol, _json(plugin_enrolment), 202),
        Sample(
            "moodle-enrollment-form", enrol, _form(form_unenrol), 202, content_type="application/x-www-form-urlencoded"
        ),
        Sample("moodle-enrollment-token", enrol, _json(token_enrolment), 202, signing="token"),
        Sample("moodle-grade-raw", grade, _json(raw_grade), 202),
        Sample("moodle-grade-plugin", grade, _json(plugin_grade), 202, base64=True),
    ]


def _rejected_samples() -> list[Sample]:
    student, grade = "POST /api/v1/events/zoho/student", "POST /api/v1/events/zoho/grade"
    _, record_id, fields = ZOHO_RECORDS["student"]
    body = _json(
        {
            "notification_id": "zoho-notif-rejected",
            "timestamp": MODIFIED,
            "operation": "update",
            "record_id": record_id,
            "data": {"id": record_id, **fields, "Modified_Time": MODIFIED},
        }
    )
    no_record = _json({"event_id": "zoho-evt-no-record", "event_type": "updated", "timestamp": MODIFIED})
    conflicting = _json(
        {
            "event_id": "zoho-evt-conflict",
            "event_type": "updated",
            "module": "BTEC_Students",
            "record_id": record_id,
            "timestamp": MODIFIED,
        }
    )
    wrong_event = _json(
        {
            "eventid": "moodle-evt-wrong",
            "eventname": "\\core\\event\\user_enrolment_created",
            "courseid": 12,
            "userid": 348,
            "timecreated": 1795598100,
        }
    )
    return [
        Sample("zoho-student-unsigned", student, body, 401, signing="unsigned"),
        Sample("zoho-student-bad-signature", student, body, 401, signing="bad-signature"),
        Sample(
            "moodle-grade-bad-signature", "POST /api/v1/events/moodle/grade", wrong_event, 401, signing="bad-signature"
        ),
        Sample("zoho-student-malformed-json", student, body[:-5], 400),
        Sample("zoho-student-missing-record-id", student, no_record, 400),
        Sample("zoho-grade-conflicting-module", grade, conflicting, 400),
        Sample("moodle-grade-wrong-event", "POST /api/v1/events/moodle/grade", wrong_event, 400),
    ]


SAMPLES: dict[str, Sample] = {s.name: s for s in [*_zoho_samples(), *_moodle_samples(), *_rejected_samples()]}


def _queue_message(n: int, body: str, attributes: dict[str, str]) -> dict[str, Any]:
    return {
        "MessageId": f"00000000-0000-4000-8000-{n:012d}",
        "ReceiptHandle": f"sample-receipt-handle-{n}",
        "Body": body,
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795598100000",
            "SenderId": "AROAEXAMPLE:ZohoWebhookFunction",
            "ApproximateFirstReceiveTimestamp": "1795598100100",
        },
        "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
    }


def sqs_batches() -> dict[str, dict[str, Any]]:
    """Per module, the SQS event its processor receives for the accepted samples of its routes,
    plus a grades batch with two poison records: one that can never apply, one that is not an event."""
    by_module: dict[str, list[dict[str, Any]]] = {}
    for sample in SAMPLES.values():
        if sample.expect != 202:
            continue
        route = WEBHOOK_ROUTES[sample.route]
        fields = decode_body(sample.body)
        fields.pop("token", None)
        event = parse_event(route.source, route.module, fields)
        attributes = {"source": event.source, "module": event.module, "event_id": event.event_id}
        messages = by_module.setdefault(route.module, [])
        messages.append(_queue_message(len(messages) + 1, event.model_dump_json(), attributes))
    batches = {
        f"sqs-{module}-batch": lambda_sqs_event(messages, f"arn:aws:sqs:eu-west-2:123456789012:event-router-{module}")
        for module, messages in by_module.items()
    }
    grades = by_module["grades"]
    plugin_grade = json.loads(grades[-1]["Body"])
    no_item = plugin_grade | {
        "event_id": "moodle-evt-grade-poison",
        "payload": {
            "eventid": "moodle-evt-grade-poison",
            "eventname": "\\core\\event\\user_graded",
            "courseid": 12,
            "userid": 348,
            "timecreated": 1795598500,
            "other": None,
        },
        "facts": plugin_grade["facts"] | {"grade": None},
    }
    poison = [
        *grades,
        _queue_message(len(grades) + 1, json.dumps(no_item), {"source": "moodle", "module": "grades"}),
        _queue_message(len(grades) + 2, "this is not an event", {}),
    ]
    batches["sqs-grades-batch-with-poison"] = lambda_sqs_event(
        poison, "arn:aws:sqs:eu-west-2:123456789012:event-router-grades"
    )
    return batches


# Operator inputs of ReplayFunction (docs/operate.md); the sweep is what the schedule sends.
REPLAY_INPUTS: dict[str, dict[str, Any]] = {
    "replay-dlq": {"mode": "dlq", "max_messages": 100},
    "replay-dlq-dry-run": {"mode": "dlq", "max_messages": 100, "dry_run": True},
    "replay-dlq-grades": {"mode": "dlq", "module": "grades", "max_messages": 10},
    "replay-log-failed": {"mode": "log", "statuses": ["failed", "dead_lettered"], "max_messages": 100},
    "replay-log-event": {"mode": "log", "event_ids": ["zoho-notif-student-0001"], "statuses": ["failed"]},
    "replay-sweep": {"mode": "log", "statuses": ["received"], "max_messages": 500},
}


def monitor_requests() -> dict[str, dict[str, Any]]:
    return {
        f"monitor-{name}": http_api_event("GET", f"/api/v1/events/{name}", b"", {}, request_id=f"sample-{name}")
        for name in ("health", "stats")
    }


def dev_environment() -> dict[str, str]:
    """Webhook settings of the local stack and ``sam local invoke`` (fake values)."""
    return {
        "ZOHO_WEBHOOK_SECRET": DEV_SECRETS["zoho"],
        "MOODLE_WEBHOOK_SECRET": DEV_SECRETS["moodle"],
        "MOODLE_WEBHOOK_TOKEN": DEV_TOKENS["moodle"],
        "ERASURE_KEY": DEV_ERASURE_KEY,
    }


def render() -> dict[str, str]:
    """File name → content of every file this catalogue puts in ``events/``."""
    documents: dict[str, Any] = {name: s.event() for name, s in SAMPLES.items()}
    documents |= sqs_batches() | REPLAY_INPUTS | monitor_requests()
    files = {f"{name}.json": json.dumps(document, indent=2) + "\n" for name, document in documents.items()}
    files["env.json"] = json.dumps(env_file(), indent=2) + "\n"
    return files


def env_file() -> dict[str, dict[str, str]]:
    """``sam local invoke --env-vars events/env.json``: per function, the fake dev values."""
    common = {
        # Deployed functions read the database login and their webhook secret from Secrets Manager;
        # blank ARNs make them use DATABASE_URL and the secrets below instead.
        "DATABASE_SECRET_ARN": "",
        "DATABASE_URL": "postgresql://postgres@host.docker.internal:5432/event_router",
        "AWS_ENDPOINT_URL_SQS": "http://host.docker.internal:4566",
        "STUDENTS_QUEUE_URL": "http://host.docker.internal:4566/123456789012/event-router-students",
        "ENROLLMENTS_QUEUE_URL": "http://host.docker.internal:4566/123456789012/event-router-enrollments",
        "GRADES_QUEUE_URL": "http://host.docker.internal:4566/123456789012/event-router-grades",
        "PAYMENTS_QUEUE_URL": "http://host.docker.internal:4566/123456789012/event-router-payments",
    }
    environment = dev_environment()
    return {
        "ZohoWebhookFunction": {
            **common,
            "ZOHO_WEBHOOK_SECRET_ARN": "",
            "ZOHO_WEBHOOK_SECRET": environment["ZOHO_WEBHOOK_SECRET"],
        },
        "MoodleWebhookFunction": {
            **common,
            "MOODLE_WEBHOOK_SECRET_ARN": "",
            "MOODLE_WEBHOOK_SECRET": environment["MOODLE_WEBHOOK_SECRET"],
            "MOODLE_WEBHOOK_TOKEN": environment["MOODLE_WEBHOOK_TOKEN"],
        },
    }


def main(directory: Path = EVENTS_DIR) -> None:
    directory.mkdir(exist_ok=True)
    for stale in directory.glob("*.json"):
        stale.unlink()
    for name, content in render().items():
        (directory / name).write_text(content)
    print(f"wrote {len(render())} files to {directory}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else EVENTS_DIR)


def enrolled_in_zoho(org: Org, student: str, course_idnumber: str, name: str, status: str = "Active") -> str:
    """An enrolment a person made in the Zoho stand-in for ``student`` in the Moodle course
    ``course_idnumber`` (what a college's Zoho holds on the day the router is switched on)."""
    return org.create(
        "BTEC_Enrollments",
        {
            "Name": name,
            "Enrolled_Students": {"id": student},
            "Classes": {"id": CLASS_ID},
            "Enrollment_Status": status,
            "Moodle_Course_ID": course_idnumber,
        },
    )
