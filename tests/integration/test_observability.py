"""docs/operate.md for the verifiers: what their logs and metrics say, and what they never say."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine, text

from devstack.samples import DEV_SECRETS, DEV_TOKENS, Sample, zoho_webhook
from tests.conftest import closed_port
from tests.integration.conftest import Invoke, load_event
from tests.integration.test_verifier import down_sqs_endpoint

STUDENT = "POST /api/v1/events/zoho/student"
# Distinctive values that would be easy to find in a log line if any leaked.
PAYLOAD_VALUES = ["Zebedee Quartermain-Oyelaran", "zebedee.q.7731@students.example.ac.uk", "BTEC-LEAK-CANARY-9931"]


def distinctive_samples() -> list[Sample]:
    accepted = zoho_webhook(
        "students",
        "5725767000000999001",
        notification_id="canary-1",
        name="accepted",
        Name=PAYLOAD_VALUES[0],
        Academic_Email=PAYLOAD_VALUES[1],
        Student_ID_Number=PAYLOAD_VALUES[2],
    )
    document = json.loads(accepted.body)
    invalid = json.dumps({**document, "timestamp": PAYLOAD_VALUES[2], "module": PAYLOAD_VALUES[0]}).encode()
    return [
        accepted,
        replace(accepted, name="duplicate", expect=200),
        replace(accepted, name="bad-signature", expect=401, signing="bad-signature"),
        replace(accepted, name="unsigned", expect=401, signing="unsigned"),
        Sample("invalid", STUDENT, invalid, 400),
    ]


def emf_metrics(lines: list[str]) -> list[dict[str, Any]]:
    """One entry per metric of every EMF document (a processor's batch writes its metrics together)."""
    documents = [json.loads(line) for line in lines if line.startswith("{") and '"_aws"' in line]
    return [
        {"name": metric["Name"], **{k: v for k, v in d.items() if k != "_aws"}}
        for d in documents
        for metric in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
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


def test_processors_count_outcomes_and_time_events_by_source_and_module(
    load: Callable[..., Invoke], db: Engine, captured_logs: Callable[[], list[str]]
) -> None:
    load("GradesProcessor", MODULE="grades")(load_event("sqs-grades-batch-with-poison"))

    metrics = emf_metrics(captured_logs())
    counted = {
        (m["name"], m["source"]): m[m["name"]]
        for m in metrics
        if m["name"] not in ("ProcessingTime", "EndToEndLatency")
    }
    assert counted[("Processed", "zoho")] == [2.0]  # full record and form
    assert counted[("Skipped", "zoho")] == [1.0]  # minimal shape: no record data
    assert counted[("Processed", "moodle")] == [2.0]
    assert counted[("Failed", "moodle")] == [1.0]
    assert counted[("Retried", "unknown")] == [1.0]
    timings = [m for m in metrics if m["name"] in ("ProcessingTime", "EndToEndLatency")]
    assert {(m["name"], m["source"], m["module"]) for m in timings} == {
        ("ProcessingTime", "zoho", "grades"),
        ("EndToEndLatency", "zoho", "grades"),
        ("ProcessingTime", "moodle", "grades"),
        ("EndToEndLatency", "moodle", "grades"),
    }
    assert all(all(v >= 0 for v in m[m["name"]]) for m in timings)


def test_replay_counts_replayed_events_by_source_and_module(
    load: Callable[..., Invoke],
    load_verifier: Callable[..., Invoke],
    db: Engine,
    captured_logs: Callable[[], list[str]],
) -> None:
    from tests.integration.conftest import load_event

    load_verifier("zoho", AWS_ENDPOINT_URL_SQS=down_sqs_endpoint())(load_event("zoho-grade-full"))
    with db.begin() as connection:
        connection.execute(text("UPDATE integration_events_log SET received_at = now() - interval '1 hour'"))

    load("ReplayFunction")({"mode": "log"})

    replayed = [m for m in emf_metrics(captured_logs()) if m["name"] == "Replayed"]
    assert [(m["source"], m["module"], m["Replayed"]) for m in replayed] == [("zoho", "grades", [1.0])]
    lines = [json.loads(line) for line in captured_logs() if '"event replayed"' in line]
    assert [line["correlation_id"] for line in lines] == ["zoho-notif-grade-0001"]
