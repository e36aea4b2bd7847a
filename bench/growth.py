"""How the costs grow with history: event logs of 1, 5 and 10 million rows, generated in SQL (not
through the HTTP path), with full payloads and with payload retention applied (tombstones). For each
size: ``/stats`` latency through the monitor function (p50 of 20 calls) and the database's bytes
per event (the log table with its indexes and TOAST)."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.harness import Harness, RoundTrips, Row, median, percentile, quiet, say, verdict
from devstack.apigw import http_api_event
from event_router.operate.migrate import make_engine

SIZES = (1_000_000, 5_000_000, 10_000_000)
PER_DAY = 2_000  # a busy college's events a day: the last 24 hours of every generated log hold this many

# One million rows per statement; received_at spreads them back in time at PER_DAY a day, newest
# first, so the last 24 hours always hold PER_DAY events whatever the log's size.
GENERATE_SQL = """
INSERT INTO integration_events_log
    (event_id, source, module, event_type, record_id, payload, status, attempts, occurred_at, received_at,
     queued_at, processed_at, processing_ms, updated_at, auth_method)
SELECT 'gen-' || i,
       CASE WHEN i % 3 = 0 THEN 'moodle' ELSE 'zoho' END,
       (ARRAY['students', 'enrollments', 'grades', 'payments'])[1 + i % 4],
       (ARRAY['create', 'update', 'update', 'delete'])[1 + i % 4],
       '5725767' || lpad((i % 900000)::text, 12, '0'),
       {payload},
       CASE WHEN i % 97 = 0 THEN 'failed' WHEN i % 31 = 0 THEN 'skipped' ELSE 'completed' END,
       1,
       at - interval '2 seconds', at, at, at + interval '150 milliseconds', 40 + i % 200, at,
       'signature'
FROM (SELECT i, now() - make_interval(secs => i * 86400.0 / {per_day}) AS at
      FROM generate_series(:first, :last) AS i) AS g"""
FULL_PAYLOAD = """jsonb_build_object(
           'notification_id', 'zoho-notif-' || i, 'timestamp', at, 'module', 'BTEC_Students',
           'operation', 'update', 'record_id', '5725767' || lpad((i % 900000)::text, 12, '0'),
           'data', jsonb_build_object(
               'id', '5725767' || lpad((i % 900000)::text, 12, '0'), 'Name', 'Student ' || (i % 900000),
               'First_Name', 'Student', 'Last_Name', (i % 900000)::text,
               'Student_ID_Number', 'BTEC-' || lpad((i % 900000)::text, 7, '0'),
               'Academic_Email', 'student' || (i % 900000) || '@students.example.ac.uk',
               'Enrollment_Status', 'Active', 'Modified_Time', at))"""
TOMBSTONE = "jsonb_build_object('redacted', true, 'sha256', encode(sha256(('gen-' || i)::bytea), 'hex'))"


def stats_growth(h: Harness) -> list[Row]:
    rows: list[Row] = []
    for retention, payload in (("full payloads", FULL_PAYLOAD), ("retention applied", TOMBSTONE)):
        say(f"log growth, {retention}: building 1, 5, 10 million rows in SQL ...")
        url = h.fresh_database()
        engine = make_engine(url, timeout=3600)  # a million rows a statement: minutes, not seconds
        monitor = h.function("functions/monitor", f"monitor-{retention[:4]}", DATABASE_URL=url)
        event: dict[str, Any] = {"routeKey": "GET /api/v1/events/stats", "rawPath": "/api/v1/events/stats"}
        done = 0
        p50s: list[float] = []
        try:
            for size in SIZES:
                started = time.perf_counter()
                with engine.begin() as connection:
                    sql = GENERATE_SQL.format(payload=payload, per_day=PER_DAY)
                    for first in range(done + 1, size + 1, 1_000_000):
                        connection.exec_driver_sql(
                            sql.replace(":first", str(first)).replace(":last", str(min(first + 999_999, size)))
                        )
                # Every table, as autovacuum would before long: the rollups the insert triggers filled
                # too (a fresh event_minutes without statistics is scanned whole by /stats' day query).
                with engine.begin() as connection:  # committed: statistics roll back with a transaction
                    connection.exec_driver_sql("ANALYZE")
                    log_bytes = connection.exec_driver_sql(
                        "SELECT pg_total_relation_size('integration_events_log')"
                    ).scalar_one()
                built_s = time.perf_counter() - started
                done = size
                timings = []
                with quiet():
                    monitor(event)  # the container is warm, as the dashboard's calls find it
                    for _ in range(20):
                        t0 = time.perf_counter()
                        answer = monitor(event)
                        timings.append((time.perf_counter() - t0) * 1000)
                assert answer["statusCode"] == 200, answer
                label = f"{size // 1_000_000}M rows, {retention}"
                rows.append(
                    (
                        f"/stats p50 / p99 at {label}",
                        f"{median(timings):.1f} / {percentile(timings, 0.99):.1f} ms (built in {built_s:.0f} s)",
                        "<= 50 ms",
                        "met" if median(timings) <= 50 else "NOT met",
                    )
                )
                rows.append((f"database bytes per event at {label}", f"{log_bytes / size:.0f} B", "", ""))
                p50s.append(median(timings))
            flat = p50s[-1] / p50s[0]
            rows.append((f"/stats p50 10M / 1M, {retention}", f"{flat:.2f}", "<= 2", "met" if flat <= 2 else "NOT met"))
        finally:
            engine.dispose()
            h.drop_database(url)
    return rows


BUSY_DAY = 1_000_000  # events in the last 24 hours (about twelve a second)
BUSY_LOG = 10_000_000  # events in the log
# The newest BUSY_DAY rows fall within the last 24 hours, the rest over the days before.
BUSY_SQL = GENERATE_SQL.replace(
    "now() - make_interval(secs => i * 86400.0 / {per_day})",
    "CASE WHEN i <= {busy_day} THEN now() - make_interval(secs => i * 86400.0 / {busy_day})"
    " ELSE now() - interval '1 day' - make_interval(secs => (i - {busy_day}) * 86400.0 / {per_day}) END",
)
# What /stats read before the rollups: the day's figures scanned from the log.
LOG_DAY_SQL = """
SELECT status, count(*), avg(processing_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY CAST(processing_ms AS double precision))
FROM integration_events_log WHERE received_at >= now() - interval '24 hours' GROUP BY ROLLUP (status)"""


def stats_busy_day(h: Harness) -> list[Row]:
    """``/stats`` on a busy day: a million events in the last 24 hours, ten million in the log, the
    day's figures read from the rollups the writes keep (against scanning the day from the log)."""
    say(f"busy day: {BUSY_LOG // 1_000_000}M rows, {BUSY_DAY // 1_000_000}M in the last 24 hours ...")
    url = h.fresh_database()
    engine = make_engine(url, timeout=3600)
    monitor = h.function("functions/monitor", "monitor-busy", DATABASE_URL=url)
    event: dict[str, Any] = {"routeKey": "GET /api/v1/events/stats", "rawPath": "/api/v1/events/stats"}
    try:
        started = time.perf_counter()
        sql = BUSY_SQL.format(payload=TOMBSTONE, per_day=PER_DAY, busy_day=BUSY_DAY)
        with engine.begin() as connection:
            for first in range(1, BUSY_LOG + 1, 1_000_000):
                connection.exec_driver_sql(sql.replace(":first", str(first)).replace(":last", str(first + 999_999)))
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        built_s = time.perf_counter() - started
        with quiet():
            answer = monitor(event)  # warm, as the dashboard finds it
            timings = []
            for _ in range(20):
                t0 = time.perf_counter()
                answer = monitor(event)
                timings.append((time.perf_counter() - t0) * 1000)
        assert answer["statusCode"] == 200, answer
        day_total = json.loads(answer["body"])["last_24h"]["total"]
        scans = []
        with engine.connect() as connection:
            for _ in range(5):
                t0 = time.perf_counter()
                connection.exec_driver_sql(LOG_DAY_SQL).all()
                scans.append((time.perf_counter() - t0) * 1000)
            deep = connection.exec_driver_sql(
                "SELECT id FROM integration_events_log ORDER BY received_at DESC, id DESC OFFSET 50000 LIMIT 1"
            ).scalar_one()
        console_rows = _console_pages(h, url, deep)
    finally:
        engine.dispose()
        h.drop_database(url)
    return [
        (
            "/stats p50 / p99, busy day (1M in 24 h, 10M log)",
            f"{median(timings):.1f} / {percentile(timings, 0.99):.1f} ms (day: {day_total}; built in {built_s:.0f} s)",
            "<= 50 ms",
            verdict(median(timings) <= 50),
        ),
        ("  the same day scanned from the log (before the rollups)", f"{median(scans):.0f} ms", "", ""),
        *console_rows,
    ]


def _console_pages(h: Harness, url: str, deep: int) -> list[Row]:
    """The console's overview and pages of events on the busy day's log, as an operator opens them."""
    console = h.function("functions/console", "console-busy", DATABASE_URL=url, CONSOLE_LOGIN="none")
    pages = {
        "console overview": ("/console", ""),
        "console events, newest page": ("/console/events", ""),
        "console events, failed only": ("/console/events", "status=failed"),
        "console events, failed grades": ("/console/events", "status=failed&module=grades"),
        "console events, 1,000 pages deep": ("/console/events", f"before={deep}"),
    }
    rows: list[Row] = []
    with quiet():
        for label, (path, query) in pages.items():
            event = http_api_event("GET", path, b"", {"host": "127.0.0.1"}, query=query)
            answer = console(event)  # warm: connected, the statement prepared
            assert answer["statusCode"] == 200, answer["body"][:500]
            timings = []
            for _ in range(20):
                t0 = time.perf_counter()
                answer = console(event)
                timings.append((time.perf_counter() - t0) * 1000)
            assert "<td" in answer["body"]
            rows.append(
                (
                    f"{label} p50 / p99 (10M log)",
                    f"{median(timings):.1f} / {percentile(timings, 0.99):.1f} ms",
                    "<= 100 ms",
                    verdict(median(timings) <= 100),
                )
            )
    return rows


def health_flood(h: Harness, calls: int = 1000) -> list[Row]:
    """``/health`` is unauthenticated: what ``calls`` requests to one warm container cost."""
    from event_router.operate import monitor as monitor_module

    say(f"/health flood of {calls} calls ...")
    checks = [0]
    original = monitor_module.queues_answer

    def counted(client: Any, urls: list[str]) -> bool:
        checks[0] += 1
        return original(client, urls)

    monitor = h.function("functions/monitor", "monitor-flood")
    event: dict[str, Any] = {"routeKey": "GET /api/v1/events/health", "rawPath": "/api/v1/events/health"}
    with quiet():
        monitor(event)  # a warm container: connected, and its last check older than the cache interval
    time.sleep(5.1)
    monitor_module.queues_answer = counted
    try:
        with quiet(), RoundTrips() as trips:
            started = time.perf_counter()
            queries = trips.measure(lambda: [monitor(event) for _ in range(calls)])
            elapsed = time.perf_counter() - started
    finally:
        monitor_module.queues_answer = original
    return [
        (
            f"/health flood: {calls} calls to one container",
            f"{queries} DB round trip(s), {checks[0]} round(s) of queue checks, {elapsed * 1000 / calls:.2f} ms a call",
            "1 / 1",
            "met" if queries <= 1 and checks[0] <= 1 else "NOT met",
        )
    ]
