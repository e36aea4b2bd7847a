"""Functions loaded the way Lambda loads them, wired to the test database and queues."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack.invoke import LocalContext, load_function
from devstack.poller import QueuePoller
from devstack.samples import EVENTS_DIR, dev_environment
from devstack.template import functions, load_template
from event_router.contract import Module
from tests.conftest import Queues

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = functions(load_template())  # code, handler and the fixed part of each environment
VERIFIERS = {"zoho": "ZohoWebhookFunction", "moodle": "MoodleWebhookFunction"}
PROCESSORS: dict[Module, str] = {
    "students": "StudentsProcessor",
    "enrollments": "EnrollmentsProcessor",
    "grades": "GradesProcessor",
    "payments": "PaymentsProcessor",
}


def load_event(name: str) -> dict[str, Any]:
    """A sample event from ``events/``, exactly as committed."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())  # type: ignore[no-any-return]


def body(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])  # type: ignore[no-any-return]


@pytest.fixture
def function_environment(database_url: str, queues: Queues, sqs_endpoint: str) -> dict[str, str]:
    """What every function of the stack is configured with in the tests."""
    return {
        "DATABASE_URL": database_url,
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
        "DEAD_LETTER_QUEUE_URL": queues.dlq_url,
        "MAX_RECEIVE_COUNT": "5",
        **queues.environment(),
        **dev_environment(),
    }


@pytest.fixture
def load(function_environment: dict[str, str]) -> Callable[..., Invoke]:
    """``load("GradesProcessor", MODULE="grades")``: a fresh container of that function."""

    def start(name: str, **overrides: str) -> Invoke:
        spec = FUNCTIONS[name]
        fixed = {key: value for key, value in spec.environment.items() if isinstance(value, str)}  # SOURCE, MODULE
        environment = {**fixed, **function_environment, **overrides}
        handler = load_function(spec.code_uri, spec.handler, environment, name)
        context = LocalContext(name)

        def invoke(event: dict[str, Any]) -> dict[str, Any]:
            return handler(event, context)

        return invoke

    return start


@pytest.fixture
def load_verifier(load: Callable[..., Invoke]) -> Callable[..., Invoke]:
    """``load_verifier("zoho", DATABASE_URL=...)``: a fresh container of that verifier."""
    return lambda source, **overrides: load(VERIFIERS[source], **overrides)


@pytest.fixture
def pollers(load: Callable[..., Invoke], queues: Queues) -> Callable[..., QueuePoller]:
    """``pollers("grades")``: the grades processor behind its queue, as Lambda's SQS trigger runs it."""

    def poller(module: Module, batch_size: int = 10) -> QueuePoller:
        name = PROCESSORS[module]
        invoke = load(name)
        return QueuePoller(
            queues.sqs,
            queues.urls[module],
            lambda event, _context: invoke(event),
            name,
            batch_size=batch_size,
            retry_immediately=True,
        )

    return poller
