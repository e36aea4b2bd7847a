"""Rules of the codebase that a reviewer would otherwise have to remember."""

from __future__ import annotations

import re
from pathlib import Path

from devstack.samples import EVENTS_DIR, render

ROOT = Path(__file__).resolve().parents[2]


def test_committed_sample_events_match_what_the_signing_code_generates() -> None:
    committed = {path.name: path.read_text() for path in EVENTS_DIR.glob("*.json")}

    assert committed == render(), "events/ is stale: run `make generate`"


def test_handlers_stay_thin_no_sql_or_aws_clients_under_functions() -> None:
    forbidden = re.compile(r"boto3|sqlalchemy|pg8000|\b(SELECT|INSERT|UPDATE|DELETE)\s")
    offenders = [
        str(path.relative_to(ROOT)) for path in (ROOT / "functions").rglob("*.py") if forbidden.search(path.read_text())
    ]

    assert offenders == []


def test_shipped_processor_statements_match_what_statements_py_compiles() -> None:
    from event_router.statements import STATEMENTS_FILE, render

    assert STATEMENTS_FILE.read_text() == render(), "processor_sql.json is stale: run `make generate`"
