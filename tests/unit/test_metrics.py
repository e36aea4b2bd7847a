"""The EMF lines the router writes: every value emitted, 100 to a document, and none when disabled."""

from __future__ import annotations

import json
import warnings

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from event_router.observability import NAMESPACE, Metric, emit, emit_together


def documents(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if '"_aws"' in line]


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics written as deployed (the tests' environment silences them)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)


@pytest.mark.usefixtures("metrics_on")
def test_a_batch_of_timings_is_written_whole_in_documents_of_100_values(capsys: pytest.CaptureFixture[str]) -> None:
    timings = [float(n) for n in range(250)]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Powertools warns when a flush finds nothing left to publish
        emit(Metric.END_TO_END_LATENCY, timings, MetricUnit.Milliseconds, source="zoho", module="students")

    written = documents(capsys.readouterr().out)
    assert [len(d["EndToEndLatency"]) for d in written] == [100, 100, 50]
    assert [v for d in written for v in d["EndToEndLatency"]] == timings
    for document in written:
        (definition,) = document["_aws"]["CloudWatchMetrics"]
        assert definition["Namespace"] == NAMESPACE
        assert definition["Metrics"] == [{"Name": "EndToEndLatency", "Unit": "Milliseconds"}]
        assert (document["source"], document["module"]) == ("zoho", "students")
        assert set(definition["Dimensions"][0]) >= {"source", "module"}


def test_nothing_is_written_when_metrics_are_disabled_however_many_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    emit(Metric.PROCESSING_TIME, [1.0] * 100, MetricUnit.Milliseconds, source="zoho", module="students")

    assert documents(capsys.readouterr().out) == []


@pytest.mark.usefixtures("metrics_on")
def test_metrics_sharing_their_dimensions_go_in_one_document_with_every_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    latencies = [float(n) for n in range(150)]

    emit_together(
        {
            Metric.PROCESSED: ([150.0], MetricUnit.Count),
            Metric.END_TO_END_LATENCY: (latencies, MetricUnit.Milliseconds),
            Metric.FAILED: ([], MetricUnit.Count),  # nothing to say: not written
        },
        source="zoho",
        module="students",
    )

    first, second = documents(capsys.readouterr().out)
    assert first["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "Processed", "Unit": "Count"},
        {"Name": "EndToEndLatency", "Unit": "Milliseconds"},
    ]
    assert (first["Processed"], first["source"], first["module"]) == ([150.0], "zoho", "students")
    assert second["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": "EndToEndLatency", "Unit": "Milliseconds"}]
    assert first["EndToEndLatency"] + second["EndToEndLatency"] == latencies
