"""``/health`` and ``/stats`` (docs/operate.md): health names what is down; stats equal the event log."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from devstack.postgres import start_embedded
from tests.conftest import Queues
from tests.integration.conftest import Invoke, body, load_event
from tests.integration.test_verifier import down_sqs_endpoint

HEALTH = load_event("monitor-health")
STATS = load_event("monitor-stats")


def scalar(db: Engine, sql: str) -> Any:
    with db.connect() as connection:
        return connection.execute(text(sql)).scalar()


def grouped(db: Engine, column: str) -> dict[str, int]:
    with db.connect() as connection:
        found = connection.execute(text(f"SELECT {column}, count(*) FROM integration_events_log GROUP BY 1"))
        return {key: n for key, n in found}


def test_health_is_200_when_database_and_queues_answer(load: Callable[..., Invoke]) -> None:
    response = load("MonitorFunction")(HEALTH)

    assert response["statusCode"] == 200
    assert body(response) == {"status": "ok", "checks": {"database": "ok", "queues": "ok"}}


def test_health_reports_a_stopped_database_as_503(load: Callable[..., Invoke]) -> None:
    # Given a monitor whose database is a Postgres server of its own, which then stops
    data_dir = Path(tempfile.mkdtemp(prefix="event-router-stopped-"))
    try:
        url, server = start_embedded(data_dir / "data")
        monitor = load("MonitorFunction", DATABASE_URL=url, HEALTH_CACHE_SECONDS="0")
        assert monitor(HEALTH)["statusCode"] == 200

        server.cleanup()
        response = monitor(HEALTH)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    assert response["statusCode"] == 503
    assert body(response) == {"status": "unavailable", "checks": {"database": "unavailable", "queues": "ok"}}


def test_health_reports_unreachable_queues_as_503(load: Callable[..., Invoke]) -> None:
    response = load("MonitorFunction", AWS_ENDPOINT_URL_SQS=down_sqs_endpoint())(HEALTH)

    assert response["statusCode"] == 503
    assert body(response)["checks"] == {"database": "ok", "queues": "unavailable"}


def test_stats_equal_what_the_event_log_holds(
    load: Callable[..., Invoke], load_verifier: Callable[..., Invoke], pollers: Any, queues: Queues, db: Engine
) -> None:
    # Given a mix of events: processed, waiting, failed, old, and one message in the dead-letter queue
    zoho, moodle = load_verifier("zoho"), load_verifier("moodle")
    for name in ("zoho-student-full", "zoho-grade-full", "zoho-payment-form", "zoho-enrollment-minimal"):
        zoho(load_event(name))
    for name in ("moodle-grade-raw", "moodle-enrollment-raw"):
        moodle(load_event(name))
    pollers("students").drain()
    pollers("grades").drain()
    with db.begin() as connection:
        connection.execute(text("UPDATE integration_events_log SET status = 'failed' WHERE module = 'payments'"))
        connection.execute(
            text(
                "UPDATE integration_events_log SET received_at = now() - interval '3 days' WHERE source = 'moodle'"
                " AND module = 'enrollments'"
            )
        )
    queues.sqs.send_message(QueueUrl=queues.dlq_url, MessageBody="{}")

    # When the stats are asked for
    response = load("MonitorFunction")(STATS)
    stats = body(response)

    # Then every number is what the log holds
    assert response["statusCode"] == 200
    assert stats["total_events"] == scalar(db, "SELECT count(*) FROM integration_events_log") == 6
    assert stats["by_status"] == grouped(db, "status")
    assert stats["by_source"] == grouped(db, "source")
    assert stats["by_module"] == grouped(db, "module")
    with db.connect() as connection:
        newest = connection.execute(
            text("SELECT event_id FROM integration_events_log ORDER BY received_at DESC, id DESC LIMIT 10")
        ).scalars()
        assert [r["event_id"] for r in stats["recent_events"]] == list(newest)
    assert "payload" not in stats["recent_events"][0]
    assert stats["last_24h"]["total"] == 5
    assert stats["failures"]["failed"] == 1
    assert [f["module"] for f in stats["failures"]["recent"]] == ["payments"]
    oldest = scalar(
        db,
        "SELECT extract(epoch FROM now() - min(received_at)) FROM integration_events_log"
        " WHERE status IN ('received', 'queued', 'processing', 'replayed')",
    )
    assert abs(stats["oldest_unprocessed_age_seconds"] - float(oldest)) < 5
    assert stats["oldest_unprocessed_age_seconds"] > 3 * 24 * 3600 - 5
    average = scalar(db, "SELECT avg(processing_ms) FROM integration_events_log WHERE processed_at IS NOT NULL")
    assert stats["processing_ms"]["avg"] == round(float(average), 1)
    assert stats["processing_ms"]["p95"] is not None
    assert stats["dlq_depth"] == 1


def test_stats_of_an_empty_log(load: Callable[..., Invoke], db: Engine) -> None:
    stats = body(load("MonitorFunction")(STATS))

    assert (stats["total_events"], stats["by_status"], stats["recent_events"]) == (0, {}, [])
    assert (stats["oldest_unprocessed_age_seconds"], stats["processing_ms"]) == (None, {"avg": None, "p95": None})


def test_stats_totals_equal_the_log_after_a_mixed_concurrent_burst(
    load: Callable[..., Invoke], queues: Queues, db: Engine
) -> None:
    """The totals come from counters the writes keep: after verifiers and processors ran at once,
    with duplicates, retries and failures among them, they still equal a count of the log."""
    import threading

    from devstack.poller import QueuePoller
    from devstack.samples import zoho_webhook
    from tests.integration.conftest import PROCESSORS

    verifiers = [load("ZohoWebhookFunction") for _ in range(4)]
    samples = [
        zoho_webhook(module, f"B{n:05d}", modified="2026-11-25T09:00:00Z", notification_id=f"burst-{n % 150}", **fields)
        for n in range(200)
        for module, fields in [
            (("students", {"Name": f"S{n}"}), ("grades", {"Name": "G", "Grade": "P"}), ("enrollments", {"Name": "E"}))[
                n % 3
            ]
        ]
    ]  # 50 resends of an id already used; grades without a student and enrolments without a class fail

    def send(worker: int) -> None:
        for sample in samples[worker::4]:
            verifiers[worker](sample.event())

    # Each container is started here: starting one sets the process's environment while it imports.
    processors = {m: load(PROCESSORS[m]) for m in ("students", "grades", "enrollments")}

    def process(module: str) -> None:
        invoke = processors[module]
        poller = QueuePoller(queues.sqs, queues.urls[module], lambda e, _: invoke(e), module, retry_immediately=True)
        for _ in range(30):
            poller.drain()

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=process, args=(m,)) for m in ("students", "grades", "enrollments")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def assert_totals_equal_the_log() -> dict[str, int]:
        stats = body(load("MonitorFunction")(STATS))
        assert stats["total_events"] == scalar(db, "SELECT count(*) FROM integration_events_log")
        assert stats["by_status"] == grouped(db, "status")
        assert stats["by_module"] == grouped(db, "module")
        assert stats["by_source"] == grouped(db, "source")
        return dict(stats["by_status"])

    after_burst = assert_totals_equal_the_log()
    assert after_burst.get("failed", 0) > 0
    assert after_burst.get("completed", 0) > 0

    # Then the failed events are replayed, and old settled payloads are redacted by retention
    replayed = load("ReplayFunction")({"mode": "log", "statuses": ["failed"]})
    with db.begin() as connection:
        connection.execute(
            text("UPDATE integration_events_log SET received_at = now() - interval '31 days' WHERE module = 'students'")
        )
    redacted = load("ReplayFunction", PAYLOAD_RETENTION_DAYS="30")({"mode": "sweep"})

    assert replayed["replayed"] == after_burst["failed"]
    assert redacted["payloads_redacted"] > 0
    after_replay = assert_totals_equal_the_log()
    assert after_replay.get("replayed", 0) == after_burst["failed"]
    assert "failed" not in after_replay


INSERT_SQL = """
INSERT INTO integration_events_log (event_id, source, module, event_type, record_id, payload, status, received_at,
                                    processing_ms)
SELECT 'rollup-' || i, 'zoho', (ARRAY['students', 'enrollments', 'grades'])[1 + i % 3], 'update', 'r' || i, '{}',
       'queued', now() - make_interval(mins => i * 7), CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 37) % 4000 END
FROM generate_series(1, 200) AS i"""
WRITES = (  # every kind of write the log sees, each a statement of its own
    "UPDATE integration_events_log SET status = 'completed' WHERE event_id LIKE 'rollup-%' AND id % 3 = 0",
    "UPDATE integration_events_log SET status = 'failed', processing_ms = 5 WHERE id % 7 = 0",
    "UPDATE integration_events_log SET processing_ms = NULL WHERE id % 11 = 0",
    "UPDATE integration_events_log SET received_at = now() - interval '3 days' WHERE id % 13 = 0",
    "UPDATE integration_events_log SET module = 'payments' WHERE id % 19 = 0",
    "DELETE FROM integration_events_log WHERE id % 17 = 0",
)
DAY = "received_at >= date_trunc('minute', now() - interval '24 hours')"


def test_the_days_rollups_equal_the_log_after_every_kind_of_write(db: Engine) -> None:
    with db.begin() as connection:
        connection.execute(text(INSERT_SQL))
    for write in WRITES:
        with db.begin() as connection:
            connection.execute(text(write))

    with db.connect() as connection:
        from_log = connection.execute(
            text(
                "SELECT module, status, count(*), count(processing_ms), coalesce(sum(processing_ms), 0)"
                f" FROM integration_events_log WHERE {DAY} GROUP BY module, status"
            )
        ).all()
        from_rollups = connection.execute(
            text(
                "SELECT module, status, sum(n), sum(ms_n), sum(ms_sum) FROM event_minutes"
                " WHERE minute >= date_trunc('minute', now() - interval '24 hours')"
                " GROUP BY module, status HAVING sum(n) <> 0"
            )
        ).all()
        histogram_log = connection.execute(
            text(
                "SELECT LEAST(63, FLOOR(4 * LOG(2, processing_ms + 1))) AS b, count(*) FROM integration_events_log"
                " WHERE processing_ms IS NOT NULL GROUP BY b"
            )
        ).all()
        histogram_rollups = connection.execute(
            text("SELECT bucket, sum(n) FROM event_ms_hours GROUP BY bucket HAVING sum(n) <> 0")
        ).all()

    assert sorted(map(tuple, from_rollups)) == sorted((mod, s, n, t, int(m)) for mod, s, n, t, m in from_log)
    assert sorted((int(b), int(n)) for b, n in histogram_rollups) == sorted((int(b), int(n)) for b, n in histogram_log)


def test_stats_reads_the_days_figures_from_the_rollups(load: Callable[..., Invoke], db: Engine) -> None:
    with db.begin() as connection:
        connection.execute(text(INSERT_SQL))
        exact = connection.execute(
            text(
                "SELECT count(*), avg(processing_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY processing_ms)"
                f" FROM integration_events_log WHERE {DAY}"
            )
        ).one()
        by_module = dict(
            connection.execute(
                text(f"SELECT module, count(*) FROM integration_events_log WHERE {DAY} GROUP BY 1")
            ).all()
        )

    stats = body(load("MonitorFunction")(STATS))

    assert stats["last_24h"] == {
        "total": exact[0],
        "by_status": {"queued": exact[0]},
        "by_module": by_module,
        "by_module_and_status": {module: {"queued": n} for module, n in by_module.items()},
    }
    assert len(by_module) == 3
    assert stats["processing_ms"]["avg"] == round(float(exact[1]), 1)
    assert abs(stats["processing_ms"]["p95"] - exact[2]) <= 0.19 * exact[2]  # a histogram's precision


def test_the_sweep_deletes_the_rollups_older_than_two_days(load: Callable[..., Invoke], db: Engine) -> None:
    with db.begin() as connection:
        connection.execute(text(INSERT_SQL))
        connection.execute(text("UPDATE integration_events_log SET received_at = received_at - interval '3 days'"))
    old = "SELECT count(*) FROM event_minutes WHERE minute < now() - interval '2 days' AND n <> 0"
    assert scalar(db, old) > 0

    load("ReplayFunction")({"mode": "sweep"})

    assert scalar(db, "SELECT count(*) FROM event_minutes WHERE minute < now() - interval '2 days'") == 0
    assert scalar(db, "SELECT count(*) FROM event_ms_hours WHERE hour < now() - interval '2 days'") == 0
