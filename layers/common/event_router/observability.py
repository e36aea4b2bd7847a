"""Structured logs and CloudWatch metrics (SPEC §10).

Logs are JSON lines from Powertools' Logger with the event id as correlation
id. Metrics use the embedded metric format. What may be logged: ids, modules,
statuses, causes, sizes, timings. What may not: secrets, signatures, payload
field values. Tests capture every line and check.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

SERVICE = "event-router"
NAMESPACE = "EventRouter"

logger = Logger(service=SERVICE)


def count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """Emit one metric with its own dimensions (source, module, cause...).

    ``POWERTOOLS_METRICS_DISABLED=true`` silences it (the local stack does, by default).
    """
    metrics = EphemeralMetrics(namespace=NAMESPACE)
    for key, dimension in dimensions.items():
        metrics.add_dimension(name=key, value=dimension)
    metrics.add_metric(name=name, unit=unit, value=value)
    metrics.flush_metrics()
