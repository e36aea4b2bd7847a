"""The whole loop through the running local stack (docs/connect-moodle.md): Moodle grades reach the Zoho stand-in,
Moodle ids go back to Zoho, and a change made in Zoho reaches Moodle through the Notification API —
without loops. The Zoho stand-in belongs to the test (so it can count every call and callback);
Moodle is the stand-in, and also the real one when ``MOODLE_URL``/``MOODLE_TOKEN`` are set.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devstack.process import RunningStack
from devstack.samples import Sample, user_graded, zoho_webhook
from devstack.zoho_standin import ZohoStandIn
from event_router.deliver.moodle.client import MoodleRestClient
from tests.e2e.conftest import FAST_RETRIES, wait_for
from tests.moodle_sites import MoodleSite, user_by_idnumber

WAIT = 90


@pytest.fixture
def zoho() -> Iterator[ZohoStandIn]:
    server = ZohoStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def stack(
    tmp_path: Path, e2e_database: tuple[str, Engine], moodle_site: MoodleSite, zoho: ZohoStandIn
) -> Iterator[RunningStack]:
    running = RunningStack(
        tmp_path / "local",
        e2e_database[0],
        FAST_RETRIES,
        moodle=(moodle_site.url, moodle_site.token),
        zoho=(zoho.url, zoho.credentials),
    )
    running.start()
    yield running
    running.stop()


def send_all(stack: RunningStack, samples: list[Sample]) -> None:
    def send(sample: Sample) -> None:
        status, answer = stack.send(sample)
        assert status in (200, 202), answer

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, samples))


def deliveries(db: Engine) -> dict[str, int]:
    with db.connect() as connection:
        found = connection.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status")).all()
    return {str(status): int(n) for status, n in found}


def test_moodle_grades_reach_zoho_in_few_calls_and_the_moodle_id_goes_back(
    stack: RunningStack, moodle_site: MoodleSite, zoho: ZohoStandIn, e2e_database: tuple[str, Engine]
) -> None:
    db = e2e_database[1]
    wait_for(lambda: bool(zoho.org.channels), WAIT, "the router's watch channel")
    zoho.org.channels.clear()  # this test sends Zoho's side as webhooks, not as notifications
    unique = uuid.uuid4().hex[:10]
    email = f"ada.{unique}@students.example.ac.uk"
    # A student who already has a Moodle account, and a Zoho record not yet linked to it.
    [made] = MoodleRestClient(moodle_site.url, moodle_site.token, timeout=30).call(
        "core_user_create_users",
        {
            "users": [
                {"username": email, "email": email, "firstname": "Ada", "lastname": "Example", "createpassword": 1}
            ]
        },
    )
    user = int(made["id"])
    fields = {"Name": "Ada Example", "Student_ID_Number": f"BTEC-{unique}", "Academic_Email": email}
    ada = zoho.org.create("BTEC_Students", fields)
    credits_before, upserts_before = zoho.org.credits_used, zoho.org.calls["POST /crm/v8/BTEC_Grades/upsert"]

    # 250 grades given in Moodle, before Zoho knows whose they are: they wait
    send_all(stack, [user_graded(user, item, 55.0, 1_764_000_000) for item in range(1, 251)])
    wait_for(lambda: deliveries(db).get("waiting") == 250, WAIT, "250 grades waiting for their student")
    # The student arrives from Zoho and is linked to the Moodle account: the grades go, 100 to a call
    send_all(stack, [zoho_webhook("students", ada, operation="insert", **fields)])
    wait_for(lambda: len(zoho.org.records["BTEC_Grades"]) == 250, WAIT, "250 grades in Zoho")
    wait_for(lambda: zoho.org.records["BTEC_Students"][ada].get("Moodle_User_ID") == str(user), WAIT, "the Moodle id")

    upserts = zoho.org.calls["POST /crm/v8/BTEC_Grades/upsert"] - upserts_before
    assert upserts <= 3
    # 25 for the grades (Zoho charges a write per ten records), the student's write-back, a few reads
    assert zoho.org.credits_used - credits_before <= 25 + 1 + 3
    record = zoho.org.find("BTEC_Grades", "Moodle_Grade_Key", f"{user}-1")[0]
    assert (record["Student"], record["Final_Grade"]) == ({"id": ada}, 55.0)
    assert user_by_idnumber(moodle_site, f"BTEC-{unique}")["id"] == user  # type: ignore[index]

    # A later grade for the same item updates the record, never a second one
    send_all(stack, [user_graded(user, 1, 81.0, 1_764_000_500)])
    wait_for(
        lambda: zoho.org.find("BTEC_Grades", "Moodle_Grade_Key", f"{user}-1")[0]["Final_Grade"] == 81.0,
        WAIT,
        "the update",
    )
    assert len(zoho.org.records["BTEC_Grades"]) == 250
    assert zoho.org.workflow_runs == 0
    assert zoho.org.refused["TOO_MANY_REQUESTS"] == 0


def test_a_change_made_in_zoho_ends_enrolled_in_moodle_and_nothing_loops(
    stack: RunningStack, moodle_site: MoodleSite, zoho: ZohoStandIn, e2e_database: tuple[str, Engine]
) -> None:
    db = e2e_database[1]
    unique = uuid.uuid4().hex[:10]
    course = moodle_site.create_course(f"L3-IT-{unique}")
    wait_for(lambda: bool(zoho.org.channels), WAIT, "the router's watch channel")

    # A person adds a student and their enrolment in Zoho; Zoho notifies the router (ids only)
    fields = {
        "Name": "Grace Hopper",
        "Student_ID_Number": f"BTEC-{unique}",
        "Academic_Email": f"grace.{unique}@example.ac.uk",
    }
    grace = zoho.org.create("BTEC_Students", fields)
    zoho.org.create(
        "BTEC_Enrollments",
        {
            "Name": "Grace - L3 IT",
            "Enrolled_Students": {"id": grace},
            "Classes": {"id": "5725767000000520011"},
            "Enrollment_Status": "Active",
            "Moodle_Course_ID": f"L3-IT-{unique}",
        },
    )

    def enrolled() -> bool:
        user = user_by_idnumber(moodle_site, f"BTEC-{unique}")
        return user is not None and moodle_site.enrolment(user["id"], course) == "active"

    wait_for(enrolled, WAIT, "Grace enrolled in Moodle")
    wait_for(lambda: zoho.org.records["BTEC_Students"][grace].get("Moodle_User_ID") is not None, WAIT, "her Moodle id")
    wait_for(lambda: deliveries(db).get("pending", 0) == 0 and len(zoho.org.notifications) >= 3, WAIT, "quiet")
    time.sleep(8)  # long enough for a loop to show: every hop here takes well under a second

    # Three callbacks (the student, the enrolment, the router's own write of her Moodle id), and the
    # last one mirrored as an echo: no delivery, no further write, no further callback.
    callbacks = [(n["module"], n["operation"]) for n in zoho.org.notifications]
    assert sorted(callbacks) == [
        ("BTEC_Enrollments", "insert"),
        ("BTEC_Students", "insert"),
        ("BTEC_Students", "update"),
    ]
    assert all(n["status"] in (200, 202) for n in zoho.org.notifications)
    assert zoho.org.calls["PUT /crm/v8/BTEC_Students"] == 1
    with db.connect() as connection:
        results: list[dict[str, Any]] = [
            r for (r,) in connection.execute(text("SELECT result FROM integration_events_log ORDER BY id"))
        ]
    assert sorted(bool(r.get("echo")) for r in results) == [False, False, True]
    assert deliveries(db) == {"delivered": 3}  # the user, the enrolment, the Moodle id: once each


def test_make_dev_stopped_and_started_again_still_hears_zoho(
    tmp_path: Path, e2e_database: tuple[str, Engine], moodle_site: MoodleSite
) -> None:
    """``make dev``, Ctrl-C, ``make dev``: the second run's Zoho stand-in is a new one on another port,
    yet the change the banner suggests reaches the router as a notification and is mirrored."""
    url, db = e2e_database
    local = tmp_path / "local"
    first = RunningStack(local, url, FAST_RETRIES, moodle=(moodle_site.url, moodle_site.token))
    first.start()
    try:
        wait_for(lambda: zoho_channel(db) is not None, WAIT, "the first run's channel")
    finally:
        first.stop()

    second = RunningStack(local, url, FAST_RETRIES, moodle=(moodle_site.url, moodle_site.token))
    second.start()
    try:
        zoho_url = second.state()["zoho_url"]
        wait_for(lambda: (zoho_channel(db) or {}).get("accounts_url") == zoho_url, WAIT, "a channel with the new Zoho")
        unique = uuid.uuid4().hex[:10]
        # The banner's curl: a person adds a student in Zoho's pages
        status, answer = http_post(
            f"{zoho_url}/standin/BTEC_Students",
            {
                "Name": "Grace Hopper",
                "Student_ID_Number": f"BTEC-{unique}",
                "Academic_Email": f"g.{unique}@example.ac.uk",
            },
        )
        assert status == 201, answer
        record = answer["id"]

        def mirrored() -> bool:
            with db.connect() as connection:
                found = connection.execute(
                    text("SELECT student_id_number FROM students WHERE zoho_record_id = :id"), {"id": record}
                ).all()
            return [tuple(r) for r in found] == [(f"BTEC-{unique}",)]

        wait_for(mirrored, WAIT, "the new student mirrored from the notification")
    finally:
        second.stop()


def zoho_channel(db: Engine) -> dict[str, Any] | None:
    with db.connect() as connection:
        found = connection.execute(text("SELECT identity->'channel' FROM destinations WHERE name = 'zoho'")).all()
    return dict(found[0][0]) if found and found[0][0] else None


def http_post(url: str, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    from devstack.__main__ import http

    status, answer = http("POST", url, json.dumps(document).encode(), {"Content-Type": "application/json"})
    return status, json.loads(answer)
