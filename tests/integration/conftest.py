"""Verifier handlers loaded the way Lambda loads them, wired to the test database and queues."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from devstack.invoke import LocalContext, load_handler_module
from devstack.samples import EVENTS_DIR, dev_environment
from tests.conftest import Queues

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
VERIFIERS = {"zoho": "ZohoWebhookFunction", "moodle": "MoodleWebhookFunction"}


def load_event(name: str) -> dict[str, Any]:
    """A sample event from ``events/``, exactly as committed."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture
def load_verifier(monkeypatch: pytest.MonkeyPatch, database_url: str, queues: Queues) -> Callable[..., Invoke]:
    """``load_verifier("zoho", DATABASE_URL=...)``: a fresh container of that verifier."""

    def load(source: str, **overrides: str) -> Invoke:
        environment = {"DATABASE_URL": database_url, **queues.environment(), **dev_environment(), **overrides}
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        module = load_handler_module(f"functions.{source}_webhook.app")
        context = LocalContext(VERIFIERS[source])

        def invoke(event: dict[str, Any]) -> dict[str, Any]:
            response: dict[str, Any] = module.handler(event, context)
            return response

        return invoke

    return load


def body(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])  # type: ignore[no-any-return]
