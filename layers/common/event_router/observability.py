"""Structured logs and CloudWatch metrics (docs/operate.md).

Logs are JSON lines from Powertools' Logger with the event id as correlation
id, from verifier to processor to replay. Metrics use the embedded metric
format in namespace ``EventRouter``, with dimensions ``source`` and ``module``
(plus ``cause`` for rejections, and ``service``). What may be logged: ids,
modules, statuses, causes, sizes, timings. What may not: secrets, signatures,
payload field values. Tests capture every line and check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from functools import cache
from itertools import batched

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

SERVICE = "event-router"
NAMESPACE = "EventRouter"

logger = Logger(service=SERVICE)


class Metric(StrEnum):
    """Every metric the router emits; the dashboard and alarms may only use these."""

    ACCEPTED = "Accepted"  # verifier: new event logged and/or queued
    DUPLICATE = "Duplicate"  # verifier: event id seen before
    REJECTED = "Rejected"  # verifier: 401/400/413, with dimension cause
    EVENT_LOG_UNAVAILABLE = "EventLogUnavailable"  # verifier: Postgres down, queued without a log row
    QUEUE_UNAVAILABLE = "QueueUnavailable"  # verifier: SQS down, left for the sweep (or 503)
    PROCESSED = "Processed"  # processor: completed
    SKIPPED = "Skipped"  # processor: stale, no data, unsupported
    FAILED = "Failed"  # processor: can never apply
    RETRIED = "Retried"  # processor: failed, SQS will deliver it again
    DEAD_LETTERED = "DeadLettered"  # processor: failed on its last delivery
    REDELIVERED = "Redelivered"  # processor: a delivery of an event already settled
    PROCESSING_TIME = "ProcessingTime"  # processor: ms of processing per event (a batch average)
    END_TO_END_LATENCY = "EndToEndLatency"  # processor: ms from webhook received to completion
    REPLAYED = "Replayed"  # replay: re-queued events
    DELIVERED = "Delivered"  # delivery: the destination matches the mirror
    DELIVERY_WAITING = "DeliveryWaiting"  # delivery: waits for something first (a student's Moodle user)
    DELIVERY_FAILED = "DeliveryFailed"  # delivery: the data cannot work; replayable once fixed
    DELIVERY_PAUSED = "DeliveryPaused"  # delivery: parked while its destination is paused
    DELIVERY_RETRIED = "DeliveryRetried"  # delivery: the destination was unreachable; SQS retries it
    DELIVERY_DEAD_LETTERED = "DeliveryDeadLettered"  # delivery: failed on its last receive
    DELIVERY_SUPERSEDED = "DeliverySuperseded"  # delivery: a newer one for the same target does the work
    DELIVERY_CANCELLED = "DeliveryCancelled"  # delivery: nothing left to do (its record was deleted meanwhile)
    DELIVERY_CONFLICT = "DeliveryConflict"  # delivery: an account the router may not change; Moodle left as it is
    DESTINATION_PAUSED = "DestinationPaused"  # delivery: 1 while a destination is paused, 0 once it answers
    ZOHO_CREDITS_REMAINING = "ZohoCreditsRemaining"  # Zoho delivery: API credits left in the rolling day
    WATCH_RENEWAL_FAILED = "WatchRenewalFailed"  # Zoho check: 1 when the notification channel was not renewed
    RECONCILE_DRIFT = "ReconcileDrift"  # reconciliation: differences found in a run, with dimension kind
    RECONCILE_CONFLICTS = "ReconcileConflicts"  # reconciliation: students whose account is in conflict
    RECONCILE_ZOHO_CREDITS = "ReconcileZohoCredits"  # reconciliation: Zoho credits a run spent
    RECONCILE_MOODLE_CALLS = "ReconcileMoodleCalls"  # reconciliation: Moodle calls a run made
    RECONCILE_FAILED = "ReconcileFailed"  # reconciliation: 1 when a run stopped on an error (it resumes)


def emit(metric: Metric, values: Sequence[float], unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """``metric``'s values with their own dimensions: one EMF document per 100 values (EMF's limit)."""
    emit_together({metric: (values, unit)}, **dimensions)


def emit_together(values: Mapping[Metric, tuple[Sequence[float], MetricUnit]], **dimensions: str) -> None:
    """Several metrics that share their dimensions, in one EMF document (more when a metric has
    over 100 values, EMF's limit: the n-th document holds each metric's n-th hundred).

    The values go to Powertools' serializer together: ``add_metric`` one value at a time formats
    the whole list so far into a debug message on every call (quadratic in the values) and prints
    by itself, ignoring ``POWERTOOLS_METRICS_DISABLED``, when it reaches 100.
    ``POWERTOOLS_METRICS_DISABLED=true`` silences it (the local stack does, by default).
    """
    chunks = {metric: list(batched(v, 100)) for metric, (v, _) in values.items() if v}
    if not chunks or is_metrics_disabled():
        return
    metrics = _serializer(tuple(dimensions.items()))
    for n in range(max(len(c) for c in chunks.values())):
        document = metrics.serialize_metric_set(
            metrics={
                metric.value: {
                    "Unit": values[metric][1].value,
                    "StorageResolution": 60,
                    "Value": [float(v) for v in chunk[n]],
                }
                for metric, chunk in chunks.items()
                if n < len(chunk)
            }
        )
        print(json.dumps(document, separators=(",", ":")))


@cache
def _serializer(dimensions: tuple[tuple[str, str], ...]) -> EphemeralMetrics:
    """Powertools' EMF serializer for one set of dimensions, made once per container: it keeps no
    metrics between documents (each is handed its own), only the namespace and the dimensions."""
    metrics = EphemeralMetrics(namespace=NAMESPACE)
    for key, dimension in dimensions:
        metrics.add_dimension(name=key, value=dimension)
    return metrics


def count(metric: Metric, value: float = 1, **dimensions: str) -> None:
    """Count ``value`` occurrences of ``metric``."""
    emit(metric, [value], MetricUnit.Count, **dimensions)
