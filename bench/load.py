"""A burst through the local stack: thousands of webhooks from many clients at once."""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import Harness, Row, median, percentile, say, verdict
from devstack.samples import Sample, zoho_webhook
from event_router.contract import Module


def burst(h: Harness, total: int = 5000, clients: int = 16) -> list[Row]:
    from sqlalchemy import text

    from devstack.process import RunningStack
    from event_router.operate.migrate import make_engine

    say(f"burst of {total} webhooks from {clients} clients through the local stack ...")
    url = h.fresh_database()
    engine = make_engine(url)
    with engine.begin() as connection:  # count every write of every mirror row
        connection.execute(text("CREATE TABLE mirror_writes (record_id text)"))
        connection.execute(
            text(
                "CREATE FUNCTION count_write() RETURNS trigger AS $$ BEGIN "
                "INSERT INTO mirror_writes VALUES (NEW.zoho_record_id); RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        for table in ("students", "enrollments", "grades"):
            connection.execute(
                text(
                    f"CREATE TRIGGER count_write AFTER INSERT OR UPDATE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION count_write()"
                )
            )
    modules: list[Module] = ["students", "enrollments", "grades", "payments"]
    lookups: dict[str, Any] = {
        "Enrolled_Students": "S1",
        "Classes": "C1",
        "Student": "S1",
        "Grade": "P",
        "Amount": "10",
    }
    webhooks = [
        zoho_webhook(
            modules[n % 4],
            f"B{n:06d}",
            modified="2026-11-25T09:00:00Z",
            notification_id=f"burst-{n}",
            name=f"burst-{n}",
            Name=f"Record {n}",
            **lookups,
        )
        for n in range(total)
    ]
    stack = RunningStack(Path(tempfile.mkdtemp(prefix="event-router-burst-")), url)
    stack.start()
    latencies: list[float] = []
    retries: list[int] = []
    accepted: set[str] = set()
    try:
        started = time.perf_counter()

        def send(sample: Sample) -> None:
            for _ in range(5):  # as a real sender: retry a request that got no answer
                sent = time.perf_counter()
                try:
                    status, answer = stack.send(sample)
                except OSError:
                    retries.append(1)
                    continue
                latencies.append((time.perf_counter() - sent) * 1000)
                if status == 202:
                    accepted.add(answer["event_id"])
                return

        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(send, webhooks))
        sent_s = time.perf_counter() - started

        def completed() -> int:
            with engine.connect() as connection:
                return int(
                    connection.execute(
                        text("SELECT count(*) FROM integration_events_log WHERE status = 'completed'")
                    ).scalar_one()
                )

        while completed() < len(accepted) and time.perf_counter() - started < 600:
            time.sleep(0.2)
        drained_s = time.perf_counter() - started
        with engine.connect() as connection:
            done = set(
                connection.execute(
                    text("SELECT event_id FROM integration_events_log WHERE status = 'completed'")
                ).scalars()
            )
            doubled = connection.execute(
                text(
                    "SELECT count(*) FROM (SELECT record_id FROM mirror_writes "
                    "GROUP BY record_id HAVING count(*) > 1) d"
                )
            ).scalar_one()
    finally:
        stack.stop()
        engine.dispose()
    lost = len(accepted - done)
    return [
        (
            f"burst: {total} webhooks, {clients} clients, accepted",
            f"{len(accepted)} (sent in {sent_s:.1f} s, {total / sent_s:,.0f}/s)",
            "all",
            verdict(len(accepted) == total),
        ),
        (
            "burst: acceptance latency p50 / p99",
            f"{median(latencies):.1f} / {percentile(latencies, 0.99):.1f} ms",
            "",
            "",
        ),
        ("burst: requests retried after a connection error", str(len(retries)), "", ""),
        ("burst: time until all completed", f"{drained_s:.1f} s", "", ""),
        (
            "burst: lost events / doubly-applied events",
            f"{lost} / {doubled}",
            "0 / 0",
            verdict(lost == 0 and doubled == 0),
        ),
    ]


# ------------------------------------------------------------------ 6. package sizes
