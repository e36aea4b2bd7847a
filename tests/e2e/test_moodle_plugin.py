"""The Moodle plugin (``clients/moodle/eventrouter``, ``local_eventrouter``) in every real Moodle it
claims (``MOODLE_URLS``: 4.5 and 5.0 in ``.ci/run``): installed the way docs/connect-moodle.md says,
a user enrolled, graded and unenrolled in Moodle reaches the router as signed, timestamped events
through Moodle's ad hoc tasks, course totals included; with the router down, or the secret wrong, or
the URL wrong, nothing is lost: every event is kept, shown to the administrator, and sent once the
router takes it. Collected only when a real Moodle is configured (``.ci/run`` starts them); the plugin
is PHP, and only a real Moodle can run it.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devstack.process import RunningStack
from devstack.samples import DEV_SECRETS
from tests.e2e.conftest import FAST_RETRIES, wait_for
from tests.moodle_sites import ROOT, RealSite, real_moodles

PLUGIN = ROOT / "clients" / "moodle" / "eventrouter"
PHP_COMPLAINTS = ("Warning:", "Notice:", "Deprecated:", "Fatal error", "Debugging:", "Coding error")
# The plugin signs a timestamp: the router is run refusing signatures without one.
STRICT = f"{FAST_RETRIES} UntimedSignatures=refuse"
SEND = "\\local_eventrouter\\task\\send_event"
SITES = real_moodles()


@pytest.fixture(scope="module", params=SITES, ids=[f"moodle-{s.release}" for s in SITES])
def site(request: pytest.FixtureRequest) -> Iterator[RealSite]:
    """A real Moodle with the plugin installed (copied in, then Moodle's upgrade, as an administrator
    does); its router settings are cleared afterwards."""
    found: RealSite = request.param
    target = found.dirroot / "local" / "eventrouter"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(PLUGIN, target)
    upgrade = found.run_php(str(found.dirroot / "admin" / "cli" / "upgrade.php"), "--non-interactive")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert not [c for c in PHP_COMPLAINTS if c in upgrade.stdout + upgrade.stderr], upgrade.stdout + upgrade.stderr
    clear(found)
    yield found
    clear(found)


@pytest.fixture(autouse=True)
def fresh(site: RealSite) -> None:
    clear(site)


def clear(site: RealSite) -> None:
    """No router, no queue: what an earlier test (or run) left is not this test's."""
    for name in ("routerurl", "enrollmenturl", "gradeurl"):
        site.php("set_config", "local_eventrouter", name, "")
    site.php("drop_tasks", "local_eventrouter")
    site.run_php(
        "-r",
        "define('CLI_SCRIPT', 1); require(getenv('MOODLE_DIR') . '/config.php'); "
        "$DB->delete_records('local_eventrouter_queue');",
    )


def run_tasks(site: RealSite, *options: str) -> str:
    result = site.run_php(str(site.dirroot / "admin" / "cli" / "adhoc_task.php"), "--execute", "--force", *options)
    output = result.stdout + result.stderr
    assert not [c for c in PHP_COMPLAINTS if c in output], output
    return output


def plugin_cli(site: RealSite, script: str, *args: str) -> tuple[int, str]:
    result = site.run_php(str(site.dirroot / "local" / "eventrouter" / "cli" / script), *args)
    return result.returncode, result.stdout + result.stderr


def waiting(site: RealSite) -> dict[str, Any]:
    return site.php("waiting")


def rows(db: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.connect() as connection:
        return [dict(r) for r in connection.execute(text(sql), params).mappings()]


def moodle_events(db: Engine) -> list[dict[str, Any]]:
    return rows(
        db,
        "SELECT payload->>'eventname' AS name, payload->>'userid' AS actor, status, auth_method, result "
        "FROM integration_events_log WHERE source = 'moodle' ORDER BY id",
    )


def grade_of(db: Engine, user: int, item: int) -> float | None:
    found = rows(
        db, "SELECT final_grade FROM moodle_grades WHERE moodle_user_id = :u AND grade_item_id = :i", u=user, i=item
    )
    return float(found[0]["final_grade"]) if found and found[0]["final_grade"] is not None else None


def connect(site: RealSite, stack: RunningStack, secret: str = DEV_SECRETS["moodle"]) -> None:
    """The plugin's settings page: the router's URL, and the Moodle webhook secret (the dev one)."""
    site.php("set_config", "local_eventrouter", "routerurl", stack.base_url)
    site.php("set_config", "local_eventrouter", "secret", secret)


def student_in_course(site: RealSite, name: str) -> tuple[int, int]:
    unique = uuid.uuid4().hex[:8]
    student = int(str(site.php("student", f"{name}{unique}")["id"]))
    course = site.create_course(f"{name.upper()}-{unique}")
    return student, course


@pytest.fixture
def stack(site: RealSite, tmp_path: Path, e2e_database: tuple[str, Engine]) -> Iterator[RunningStack]:
    url, _ = e2e_database
    running = RunningStack(tmp_path / "stack", url, STRICT, moodle=(site.url, site.token))
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


# ------------------------------------------------------------------ what it declares


def test_the_plugin_declares_the_events_it_keeps_and_where_it_sends_them(site: RealSite) -> None:
    assert site.php("privacy", "local_eventrouter") == {
        "compliant": True,
        "external": ["eventrouter"],
        "tables": ["local_eventrouter_queue"],
    }


def test_php_files_have_no_syntax_errors(site: RealSite) -> None:
    for path in PLUGIN.rglob("*.php"):
        result = site.run_php("-l", str(path))
        assert result.returncode == 0, result.stdout


# ------------------------------------------------------------------ delivery, and the router away


def test_enrolments_grades_and_course_totals_reach_the_router_and_nothing_is_lost_while_it_is_down(
    site: RealSite, tmp_path: Path, stack: RunningStack, e2e_database: tuple[str, Engine]
) -> None:
    url, db = e2e_database
    connect(site, stack)
    # The connection test an administrator runs after setting the plugin up
    code, said = plugin_cli(site, "test_connection.php")
    assert code == 0, said
    assert "HTTP 202" in said

    # A teacher enrols a student and grades them; Moodle computes the course total (its actor: -1)
    student, course = student_in_course(site, "plugin")
    site.php("enrol", str(student), str(course))
    item = int(str(site.php("grade", str(student), str(course), "72")["itemid"]))
    total = int(str(site.php("regrade", str(course))["courseitemid"]))
    assert waiting(site)["waiting"] >= 3  # kept in Moodle until cron sends them
    assert "event sent" in run_tasks(site)

    wait_for(lambda: grade_of(db, student, total) == 72.0, 60, "the course total mirrored")
    assert grade_of(db, student, item) == 72.0
    [enrolment] = rows(
        db,
        "SELECT status FROM moodle_enrolments WHERE moodle_user_id = :u AND moodle_course_id = :c",
        u=student,
        c=course,
    )
    assert enrolment["status"] == "enrolled"
    first = moodle_events(db)
    assert {e["auth_method"] for e in first} == {"signature"}  # signed with a timestamp: the router refuses others
    assert "-1" in {e["actor"] for e in first}  # the course total, as Moodle fires it
    assert {e["status"] for e in first} <= {"completed", "skipped"}
    assert waiting(site)["waiting"] == 0
    stack.stop()

    # The router is down: the teacher unenrols the student and changes the grade anyway
    site.php("unenrol", str(student), str(course))
    site.php("grade", str(student), str(course), "80")
    run_tasks(site)
    kept = waiting(site)
    assert kept["waiting"] >= 2  # kept, to be sent again: nothing lost, no teacher's page blocked
    assert kept["failing"] >= 2
    assert site.php("queued", "local_eventrouter")["failing"] >= 2  # shown as failed tasks
    assert len(moodle_events(db)) == len(first)

    # The router is back (at a new address here): the failed tasks are sent
    back = RunningStack(tmp_path / "second", url, STRICT, moodle=(site.url, site.token))
    back.start()
    try:
        connect(site, back)
        run_tasks(site, "--failed")
        wait_for(
            lambda: (
                rows(
                    db,
                    "SELECT status FROM moodle_enrolments WHERE moodle_user_id = :u AND moodle_course_id = :c",
                    u=student,
                    c=course,
                )
                == [{"status": "unenrolled"}]
            ),
            60,
            "the unenrolment mirrored",
        )
        wait_for(lambda: grade_of(db, student, item) == 80.0, 60, "the new grade mirrored")
        assert waiting(site)["waiting"] == 0
        assert site.php("queued", "local_eventrouter")["tasks"] == 0
        assert {e["status"] for e in moodle_events(db)} <= {"completed", "skipped"}
    finally:
        back.stop()


def test_a_wrong_secret_loses_nothing_and_the_right_one_sends_everything(
    site: RealSite, stack: RunningStack, e2e_database: tuple[str, Engine]
) -> None:
    _, db = e2e_database
    connect(site, stack, secret="rotated-in-the-wrong-order-NOT-A-SECRET")
    student, course = student_in_course(site, "secret")
    site.php("enrol", str(student), str(course))
    item = int(str(site.php("grade", str(student), str(course), "61")["itemid"]))

    run_tasks(site)  # every answer is 401
    kept = waiting(site)
    code, status = plugin_cli(site, "status.php")

    assert kept["waiting"] == 2
    assert kept["failing"] == 2
    assert code == 1  # something waits
    assert "waiting: 2" in status
    assert site.php("queued", "local_eventrouter")["failing"] == 2  # failed, as Moodle shows a failed task
    assert moodle_events(db) == []

    connect(site, stack)  # the right secret
    run_tasks(site, "--failed")

    wait_for(lambda: grade_of(db, student, item) == 61.0, 60, "the grade mirrored")
    assert waiting(site)["waiting"] == 0


def test_an_event_the_router_refuses_is_kept_shown_with_the_routers_error_and_resent_once_fixed(
    site: RealSite, stack: RunningStack, e2e_database: tuple[str, Engine]
) -> None:
    _, db = e2e_database
    connect(site, stack)
    # A route URL pointing at the wrong route: the router answers 400 (the event belongs elsewhere)
    site.php("set_config", "local_eventrouter", "gradeurl", stack.base_url + "/api/v1/events/moodle/enrollment")
    student, course = student_in_course(site, "refused")
    item = int(str(site.php("grade", str(student), str(course), "55")["itemid"]))

    output = run_tasks(site)
    summary = waiting(site)
    code, status = plugin_cli(site, "status.php")

    assert "refused" in output
    assert summary["waiting"] == 1
    [refused] = summary["refused"]
    assert refused["laststatus"] == 400
    assert "belongs to grades" in refused["lasterror"]  # the router's own words, for the administrator
    assert "belongs to grades" in status
    assert site.php("queued", "local_eventrouter")["failing"] == 1

    site.php("set_config", "local_eventrouter", "gradeurl", "")  # fixed
    code, said = plugin_cli(site, "resend.php")

    assert code == 0, said
    assert "1 tried, 0 kept" in said
    wait_for(lambda: grade_of(db, student, item) == 55.0, 60, "the grade mirrored")
    assert waiting(site)["waiting"] == 0


def test_an_event_whose_task_is_gone_gets_a_new_one_and_a_task_of_version_1_0_is_sent(
    site: RealSite, stack: RunningStack, e2e_database: tuple[str, Engine]
) -> None:
    _, db = e2e_database
    connect(site, stack)
    student, course = student_in_course(site, "requeue")
    item = int(str(site.php("grade", str(student), str(course), "66")["itemid"]))
    old = {
        "eventid": str(uuid.uuid4()),
        "eventname": "\\core\\event\\user_graded",
        "userid": 2,
        "relateduserid": student,
        "courseid": course,
        "objectid": None,
        "timecreated": 1_796_000_000,
        "other": {"itemid": item + 1000, "finalgrade": 40.0},
    }
    kept = waiting(site)["waiting"]  # the grade (and what Moodle fired with it)
    site.php("queue_v1", "grade", json.dumps(old))  # left by 1.0 before the upgrade
    dropped = site.php("drop_tasks", "local_eventrouter")["dropped"]  # Moodle deleted the stopped tasks

    assert kept >= 1
    assert dropped == kept + 1
    assert waiting(site)["waiting"] == kept  # the 1.0 task's event was only in its task, and is gone with it
    requeue = site.run_php(
        str(site.dirroot / "admin" / "cli" / "scheduled_task.php"),
        "--execute=\\local_eventrouter\\task\\requeue_events",
    )
    assert f"{kept} waiting events given a new task" in requeue.stdout + requeue.stderr
    site.php("queue_v1", "grade", json.dumps(old))
    run_tasks(site)

    wait_for(lambda: grade_of(db, student, item) == 66.0, 60, "the kept grade mirrored")
    wait_for(lambda: grade_of(db, student, item + 1000) == 40.0, 60, "the 1.0 task's grade mirrored")
    assert waiting(site)["waiting"] == 0


# ------------------------------------------------------------------ privacy and safety


def test_forgetting_a_user_deletes_the_events_about_them_and_anonymises_those_they_made(site: RealSite) -> None:
    site.php("set_config", "local_eventrouter", "routerurl", "https://router.example.invalid")
    student, course = student_in_course(site, "forget")
    other, _ = student_in_course(site, "other")
    teacher, _ = student_in_course(site, "teacher")
    site.php("enrol", str(student), str(course), str(teacher))  # the teacher's doing
    site.php("enrol", str(other), str(course), str(teacher))
    assert waiting(site)["waiting"] == 2

    site.php("forget", str(student))
    site.php("forget", str(teacher))

    kept = site.run_php(
        "-r",
        "define('CLI_SCRIPT', 1); require(getenv('MOODLE_DIR') . '/config.php'); "
        "echo json_encode(array_values($DB->get_records('local_eventrouter_queue', null, 'id', "
        "'id, userid, relateduserid, body')));",
    )
    [left] = json.loads(kept.stdout.strip().splitlines()[-1])
    assert int(left["relateduserid"]) == other  # the event about the student is gone
    assert int(left["userid"]) == 0  # the teacher's name is gone from what they did
    assert json.loads(left["body"])["userid"] == 0
    assert json.loads(left["body"])["relateduserid"] == other  # and the other student's enrolment still goes


def test_events_are_never_sent_over_plain_http_to_another_host(site: RealSite) -> None:
    site.php("set_config", "local_eventrouter", "routerurl", "http://router.example.invalid")
    student, course = student_in_course(site, "http")
    site.php("enrol", str(student), str(course))

    output = run_tasks(site)

    assert "must start with https://" in output
    assert waiting(site)["waiting"] == 1  # kept until the URL is fixed
