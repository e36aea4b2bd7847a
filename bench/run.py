"""``make bench``: how fast the router accepts, processes and starts, as ratios to floors measured
in the same run, plus round trips counted, a burst through the local stack, and package sizes.

Every speed figure is a median over many runs; every ratio divides by a floor measured in the
same run, against the same database and the same queue state, so a noisy machine moves both.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime

from bench.delivery import (
    moodle_calls_and_rate,
    webhook_to_moodle_lag,
    webhook_to_zoho_lag,
    zoho_calls_per_1000_grades,
)
from bench.first_day import first_day_import
from bench.growth import health_flood, stats_busy_day, stats_growth
from bench.harness import Row, harness
from bench.hot_path import erasure_register_cost, processor_throughput, proxy_statements, round_trips, verifier_warm
from bench.load import burst
from bench.startup import cold_start, package_sizes


def main(argv: list[str]) -> None:
    only = set(argv)
    rows: list[Row] = []
    started = time.perf_counter()
    with harness() as h:
        if not only or "verifier" in only:
            rows += verifier_warm(h)
        if not only or "processor" in only:
            rows += processor_throughput(h, 10, 120)
            rows += processor_throughput(h, 100, 40)
        if not only or "erasure" in only:
            rows += erasure_register_cost(h)
        if not only or "roundtrips" in only:
            rows += round_trips(h)
        if not only or "proxy" in only:
            rows += proxy_statements(h)
        if not only or "burst" in only:
            rows += burst(h)
        if not only or "growth" in only:
            rows += health_flood(h)
            rows += stats_growth(h)
        if not only or "busyday" in only:
            rows += stats_busy_day(h)
        if not only or "delivery" in only:
            rows += moodle_calls_and_rate(h)
            rows += webhook_to_moodle_lag(h)
            rows += zoho_calls_per_1000_grades(h)
            rows += webhook_to_zoho_lag(h)
        if not only or "firstday" in only:
            rows += first_day_import(h)
        if not only or "coldstart" in only:
            rows += cold_start(h)
    if not only or "sizes" in only:
        rows += package_sizes()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':<40} {'target':<10} verdict")
    for measure, value, target, outcome in rows:
        print(f"{measure:<{width}}  {value:<40} {target:<10} {outcome}")
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
