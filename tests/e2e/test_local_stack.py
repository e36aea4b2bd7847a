"""The local stack end to end (docs/operate.md): ``make dev`` as a subprocess, webhooks over real HTTP.

These tests prove what a newcomer sees: signed webhooks become mirror rows and
``/stats`` numbers, a poison event reaches the dead-letter queue and comes back
through replay, and stopping the stack leaves no process behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, text

from devstack.process import RunningStack
from devstack.samples import SAMPLES, Sample
from event_router.contract import WEBHOOK_ROUTES
from tests.e2e.conftest import FAST_RETRIES, count, statuses, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_signed_webhooks_over_http_flow_to_the_mirror_and_a_poison_event_round_trips_the_dlq(
    tmp_path: Path, e2e_database: tuple[str, Engine]
) -> None:
    url, db = e2e_database
    stack = RunningStack(tmp_path / "local", url, FAST_RETRIES)
    stack.start()
    try:
        # Given one signed webhook of each route and shape, sent over HTTP
        accepted = {}
        for sample in (s for s in SAMPLES.values() if s.expect == 202):
            status, answer = stack.send(sample)
            assert status == 202, (sample.name, answer)
            accepted[answer["event_id"]] = WEBHOOK_ROUTES[sample.route].module

        # Then every one is processed, into its mirror table
        wait_for(
            lambda: set(statuses(db).values()) <= {"completed", "skipped"} and len(statuses(db)) == len(accepted),
            what="all events processed",
        )
        assert sorted(statuses(db)) == sorted(accepted)
        for table in ("students", "enrollments", "grades", "moodle_enrolments", "moodle_grades"):
            assert count(db, table) >= 1, table
        stats = stack.stats()
        assert stats["total_events"] == len(accepted)
        assert stats["by_status"] == {s: list(statuses(db).values()).count(s) for s in set(statuses(db).values())}
        assert stats["by_module"] == {m: list(accepted.values()).count(m) for m in set(accepted.values())}

        # When an event arrives that the database refuses every time
        with db.begin() as connection:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'x'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON grades FOR EACH ROW"
                    " WHEN (NEW.zoho_record_id = 'POISON') EXECUTE FUNCTION refuse()"
                )
            )
        poison = Sample(
            "poison",
            "POST /api/v1/events/zoho/grade",
            b"id=POISON&Student=1&Grade=P&Modified_Time=2026-11-25T09%3A00%3A00Z",
            202,
            content_type="application/x-www-form-urlencoded",
        )
        status, answer = stack.send(poison)
        assert status == 202

        # Then it is retried until the dead-letter queue takes it
        wait_for(lambda: statuses(db).get(answer["event_id"]) == "dead_lettered", what="poison dead-lettered")
        wait_for(lambda: stack.stats()["dlq_depth"] == 1, what="poison in the DLQ")

        # And once the cause is fixed, replay brings it to completed
        with db.begin() as connection:
            connection.execute(text("DROP FUNCTION refuse() CASCADE"))
        replayed = stack.replay({"mode": "dlq"})
        assert (replayed["replayed"], replayed["event_ids"]) == (1, [answer["event_id"]])
        wait_for(lambda: statuses(db).get(answer["event_id"]) == "completed", what="poison completed after replay")
        assert stack.stats()["dlq_depth"] == 0

        # and the developer's other tools work against the running stack
        invoked = stack.command("invoke", "MonitorFunction", "events/monitor-health.json")
        assert json.loads(invoked[invoked.index("{\n") :])["statusCode"] == 200
        sent = stack.command("send")
        answers = {line.split()[1]: line.split()[0] for line in sent.splitlines() if line[:3].isdigit()}
        assert answers == {name: "200" if s.expect == 202 else str(s.expect) for name, s in SAMPLES.items()}
        assert '"total_events": ' in sent
    finally:
        stack.stop()


def test_embedded_postgres_keeps_its_data_between_runs_and_stops_with_the_stack(tmp_path: Path) -> None:
    # Given a stack on its own embedded Postgres
    local = tmp_path / "local"
    first = RunningStack(local, None, FAST_RETRIES)
    first.start()
    try:
        status, answer = first.send(SAMPLES["zoho-student-full"])
        assert status == 202
        wait_for(lambda: first.stats()["by_status"] == {"completed": 1}, what="event completed")
    finally:
        first.stop()  # asserts that no Postgres or moto process is left

    # When it starts again
    second = RunningStack(local, None, FAST_RETRIES)
    second.start()
    try:
        # Then the data is still there
        assert second.stats()["recent_events"][0]["event_id"] == answer["event_id"]
        assert second.send(SAMPLES["zoho-student-full"])[0] == 200  # a duplicate of the stored event
    finally:
        second.stop()
