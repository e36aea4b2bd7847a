"""Rules of the codebase that a reviewer would otherwise have to remember."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("function", "environment"),
    [
        ("zoho_webhook", {}),
        ("moodle_webhook", {}),
        ("module_processor", {"MODULE": "students"}),
    ],
)
def test_verifiers_and_processors_start_without_sqlalchemy(function: str, environment: dict[str, str]) -> None:
    # The common layer does not ship SQLAlchemy, and it would cost the cold start a third of a second.
    probe = (
        "import sys; sys.modules['sqlalchemy'] = None\n"
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(ROOT / 'functions' / function / 'app.py')!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
    )
    variables = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT / "layers" / "common"),
        "AWS_REGION": "eu-west-2",
        "AWS_DEFAULT_REGION": "eu-west-2",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
        **{
            f"{m}_QUEUE_URL": "https://sqs.eu-west-2.amazonaws.com/1/q"
            for m in ("STUDENTS", "ENROLLMENTS", "GRADES", "PAYMENTS")
        },
        **environment,
    }

    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", probe], env=variables, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr[-2000:]
