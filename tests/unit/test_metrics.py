"""The EMF lines the router writes: every value emitted, 100 to a document, and none when disabled."""

from __future__ import annotations

import json
import warnings

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from event_router.observability import NAMESPACE, Metric, emit


def documents(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if '"_aws"' in line]


def test_a_batch_of_timings_is_written_whole_in_documents_of_100_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
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
