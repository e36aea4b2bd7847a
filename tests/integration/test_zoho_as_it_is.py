"""Zoho as it really is: the workflow webhooks docs/connect-zoho.md tells an administrator to
configure — form data with exactly the parameters of each module's table, a per-route token in
``X-Webhook-Token`` — are accepted, recorded as token-authenticated, and mirrored. The tables are
read from the guide itself, so the guide and what is tested cannot drift apart.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import Engine

from devstack.apigw import http_api_event
from devstack.poller import QueuePoller
from devstack.samples import DEV_SECRETS
from event_router.contract import WEBHOOK_ROUTES
from tests.conftest import Queues
from tests.integration.conftest import PROCESSORS, Invoke
from tests.integration.flow import rows

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "connect-zoho.md"
TOKENS = {route: f"{route}-token-NOT-A-SECRET" for route in ("student", "enrollment", "grade", "payment")}
# What a filled-in record of each field holds; a lookup sends the linked record's id.
VALUES = {
    "Modified_Time": "2026-11-25T09:00:00+00:00",
    "Name": "Ada Example",
    "First_Name": "Ada",
    "Last_Name": "Example",
    "Student_ID_Number": "BTEC-0001",
    "Academic_Email": "ada@students.example.ac.uk",
    "Moodle_User_ID": "348",
    "Enrolled_Students": "5725767000000412001",
    "Student": "5725767000000412001",
    "Classes": "5725767000000520011",
    "Enrollment_Status": "Active",
    "Moodle_Course_ID": "L3-IT-2026",
    "Grade": "Merit",
    "Amount": "1250.00",
    "Currency": "GBP",
    "Payment_Status": "Paid",
}


def documented_webhooks() -> dict[str, list[str]]:
    """Route segment → the parameters the guide's table for it lists."""
    tables: dict[str, list[str]] = {}
    route = None
    for line in GUIDE.read_text().splitlines():
        heading = re.match(r"^#### BTEC_\w+ → `(\w+)`$", line)
        if heading:
            route = heading.group(1)
            tables[route] = []
            continue
        cell = re.match(r"^\| `(\w+)` \| .+ \|$", line)
        if cell and route is not None:
            tables[route].append(cell.group(1))
        elif route is not None and tables[route] and not line.startswith("|"):
            route = None
    return tables


def webhook(route: str, parameters: list[str], token: str) -> dict[str, object]:
    record_id = f"57257670{uuid.uuid4().int % 10**11:011d}"
    form = {name: record_id if name == "id" else VALUES[name] for name in parameters}
    path = f"/api/v1/events/zoho/{route}"
    headers = {"content-type": "application/x-www-form-urlencoded", "x-webhook-token": token}
    return http_api_event("POST", path, urlencode(form).encode(), headers, route_key=f"POST {path}")


@pytest.fixture
def verifier(load: Callable[..., Invoke], secrets_manager: Any) -> Invoke:
    """The Zoho verifier reading the stack's secret with a token per route, as the guide sets it."""
    secrets = secrets_manager
    document = {"secrets": [DEV_SECRETS["zoho"]], "tokens": TOKENS}
    arn = secrets.create_secret(Name=f"zoho-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(document))["ARN"]
    return load("ZohoWebhookFunction", ZOHO_WEBHOOK_SECRET_ARN=arn, ZOHO_WEBHOOK_SECRET="")


def test_the_guide_documents_a_webhook_for_every_zoho_route() -> None:
    documented = documented_webhooks()

    assert sorted(documented) == sorted(r.rsplit("/", 1)[1] for r, v in WEBHOOK_ROUTES.items() if v.source == "zoho")
    assert all(params[:2] == ["id", "Modified_Time"] for params in documented.values())


@pytest.mark.parametrize("route", sorted(TOKENS))
def test_each_documented_webhook_is_accepted_with_its_token_and_mirrored(
    route: str, verifier: Invoke, load: Callable[..., Invoke], queues: Queues, db: Engine
) -> None:
    parameters = documented_webhooks()[route]

    answer = verifier(webhook(route, parameters, TOKENS[route]))
    module = WEBHOOK_ROUTES[f"POST /api/v1/events/zoho/{route}"].module
    invoke = load(PROCESSORS[module])
    QueuePoller(queues.sqs, queues.urls[module], lambda e, _: invoke(e), module, retry_immediately=True).drain()

    assert answer["statusCode"] == 202, answer
    [logged] = rows(db, "SELECT status, auth_method, result FROM integration_events_log")
    assert (logged["status"], logged["auth_method"]) == ("completed", "token"), logged


@pytest.mark.parametrize("route", sorted(TOKENS))
def test_a_token_of_another_route_is_refused(route: str, verifier: Invoke, db: Engine) -> None:
    other = next(r for r in sorted(TOKENS) if r != route)

    answer = verifier(webhook(route, documented_webhooks()[route], TOKENS[other]))

    assert answer["statusCode"] == 401
    assert rows(db, "SELECT * FROM integration_events_log") == []
