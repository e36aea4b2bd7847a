"""SPEC §10 for the verifiers: what their logs and metrics say, and what they never say."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from devstack.samples import DEV_SECRETS, DEV_TOKENS, Sample
from tests.conftest import closed_port
from tests.integration.conftest import Invoke

STUDENT = "POST /api/v1/events/zoho/student"
# Distinctive values that would be easy to find in a log line if any leaked.
PAYLOAD_VALUES = ["Zebedee Quartermain-Oyelaran", "zebedee.q.7731@students.example.ac.uk", "BTEC-LEAK-CANARY-9931"]


def distinctive_samples() -> list[Sample]:
    record = {
        "notification_id": "canary-1",
        "timestamp": "2026-11-25T09:15:00+00:00",
        "operation": "update",
        "record_id": "5725767000000999001",
        "data": {
            "Name": PAYLOAD_VALUES[0],
            "Academic_Email": PAYLOAD_VALUES[1],
            "Student_ID_Number": PAYLOAD_VALUES[2],
        },
    }
    signed = json.dumps(record).encode()
    invalid = json.dumps({**record, "timestamp": PAYLOAD_VALUES[2], "module": PAYLOAD_VALUES[0]}).encode()
    return [
        Sample("accepted", STUDENT, signed, 202),
        Sample("duplicate", STUDENT, signed, 200),
        Sample("bad-signature", STUDENT, signed, 401, signing="bad-signature"),
        Sample("unsigned", STUDENT, signed, 401, signing="unsigned"),
        Sample("invalid", STUDENT, invalid, 400),
    ]


def emf_metrics(lines: list[str]) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in lines if line.startswith("{") and '"_aws"' in line]
    return [
        {"name": d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], **{k: v for k, v in d.items() if k != "_aws"}}
        for d in documents
    ]


def test_logs_never_contain_secrets_signatures_or_payload_values(
    load_verifier: Callable[..., Invoke], db: Engine, captured_logs: Callable[[], list[str]]
) -> None:
    # Given every path of the verifier: accepted, duplicate, 401, 400, and the event log down
    invoke = load_verifier("zoho")
    samples = distinctive_samples()
    for sample in samples:
        assert invoke(sample.event())["statusCode"] == sample.expect
    down = load_verifier("zoho", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed_port()}/x")
    assert down(samples[0].event())["statusCode"] == 202

    # Then no line of output carries a secret, a signature or a payload value
    output = "\n".join(captured_logs())
    signatures = [s.headers().get("x-zoho-signature", "") for s in samples]
    forbidden = [*DEV_SECRETS.values(), *DEV_TOKENS.values(), *PAYLOAD_VALUES]
    forbidden += [sig.removeprefix("sha256=") for sig in signatures if sig]
    assert output  # the verifier did log
    assert [value for value in forbidden if value in output] == []


def test_log_lines_are_json_with_the_event_id_as_correlation_id(
    load_verifier: Callable[..., Invoke], db: Engine, captured_logs: Callable[[], list[str]]
) -> None:
    invoke = load_verifier("zoho")

    invoke(distinctive_samples()[0].event())

    records = [json.loads(line) for line in captured_logs() if '"_aws"' not in line]
    accepted = [r for r in records if r.get("message") == "event accepted"]
    assert accepted
    assert accepted[0]["correlation_id"] == "canary-1"
    assert accepted[0]["event_module"] == "students"


def test_outcomes_are_counted_as_metrics_by_source_module_and_cause(
    load_verifier: Callable[..., Invoke], db: Engine, captured_logs: Callable[[], list[str]]
) -> None:
    invoke = load_verifier("zoho")

    for sample in distinctive_samples():
        invoke(sample.event())

    metrics = emf_metrics(captured_logs())
    summary = sorted((m["name"], m.get("cause", "")) for m in metrics)
    assert summary == [
        ("Accepted", ""),
        ("Duplicate", ""),
        ("Rejected", "invalid_payload"),
        ("Rejected", "missing_signature"),
        ("Rejected", "signature_mismatch"),
    ]
    assert all((m["source"], m["module"]) == ("zoho", "students") for m in metrics)
