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


@pytest.mark.parametrize(
    ("function", "environment"),
    [
        ("webhook_verifier", {"SOURCE": "zoho"}),
        ("webhook_verifier", {"SOURCE": "moodle"}),
        ("module_processor", {"MODULE": "students"}),
        ("replay", {}),
        ("monitor", {}),
    ],
)
def test_functions_start_without_sqlalchemy(function: str, environment: dict[str, str]) -> None:
    # Only MigrateFunction ships SQLAlchemy (Alembic needs it); the others run plain SQL (store/), and
    # SQLAlchemy would cost a cold start a third of a second.
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
        "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-2.amazonaws.com/1/dlq",
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
