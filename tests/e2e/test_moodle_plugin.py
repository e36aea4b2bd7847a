"""The Moodle plugin (``clients/moodle/eventrouter``, ``local_eventrouter``) in the real Moodle 4.5:
installed the way docs/connect-moodle.md says, a user enrolled and graded in Moodle reaches the
router as signed events through Moodle's ad hoc tasks; with the router down nothing is lost, and the
tasks deliver once it is back. Collected only when a real Moodle is configured (``.ci/run`` starts
one); the plugin is PHP, and only a real Moodle can run it.
"""

from __future__ import annotations

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
from tests.moodle_sites import ROOT, RealSite, real_moodle

PLUGIN = ROOT / "clients" / "moodle" / "eventrouter"
PHP_COMPLAINTS = ("Warning:", "Notice:", "Deprecated:", "Fatal error", "Debugging:", "Coding error")


@pytest.fixture(scope="module")
def site() -> Iterator[RealSite]:
    """The real Moodle with the plugin installed (copied in, then Moodle's upgrade, as an
    administrator does); its router URL is cleared afterwards."""
    found = real_moodle()
    assert found is not None
    dirroot = found.dirroot
    target = dirroot / "local" / "eventrouter"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(PLUGIN, target)
    upgrade = found.run_php(str(dirroot / "admin" / "cli" / "upgrade.php"), "--non-interactive")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert not [c for c in PHP_COMPLAINTS if c in upgrade.stdout + upgrade.stderr], upgrade.stdout + upgrade.stderr
    yield found
    found.php("set_config", "local_eventrouter", "routerurl", "")


def run_tasks(site: RealSite, *options: str) -> str:
    result = site.run_php(str(site.dirroot / "admin" / "cli" / "adhoc_task.php"), "--execute", "--force", *options)
    output = result.stdout + result.stderr
    assert not [c for c in PHP_COMPLAINTS if c in output], output
    return output


def moodle_events(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as connection:
        return [
            dict(r)
            for r in connection.execute(
                text(
                    "SELECT payload->>'eventname' AS name, status, auth_method, result FROM integration_events_log "
                    "WHERE source = 'moodle' ORDER BY id"
                )
            ).mappings()
        ]


def mirrored(db: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.connect() as connection:
        return [dict(r) for r in connection.execute(text(sql), params).mappings()]


def connect(site: RealSite, stack: RunningStack) -> None:
    """The plugin's settings page: the router's URL, and the Moodle webhook secret (the dev one)."""
    site.php("set_config", "local_eventrouter", "routerurl", stack.base_url)
    site.php("set_config", "local_eventrouter", "secret", DEV_SECRETS["moodle"])


def test_the_plugin_declares_that_it_sends_user_data_to_the_router(site: RealSite) -> None:
    assert site.php("privacy", "local_eventrouter") == {"compliant": True, "external": ["eventrouter"]}


def test_enrolments_and_grades_made_in_moodle_reach_the_router_and_nothing_is_lost_while_it_is_down(
    site: RealSite, tmp_path: Path, e2e_database: tuple[str, Engine]
) -> None:
    url, db = e2e_database
    stack = RunningStack(tmp_path / "first", url, FAST_RETRIES, moodle=(site.url, site.token))
    stack.start()
    try:
        connect(site, stack)
        # The connection test an administrator runs after setting the plugin up
        test = site.run_php(str(site.dirroot / "local" / "eventrouter" / "cli" / "test_connection.php"))
        assert test.returncode == 0, test.stdout + test.stderr
        assert "HTTP 202" in test.stdout

        # A teacher enrols a student and grades them: nothing is sent until cron runs the tasks
        unique = uuid.uuid4().hex[:8]
        student = int(str(site.php("student", f"plugin{unique}")["id"]))
        course = site.create_course(f"PLUGIN-{unique}")
        site.php("enrol", str(student), str(course))
        item = int(str(site.php("grade", str(student), str(course), "72")["itemid"]))
        assert site.php("queued", "local_eventrouter")["tasks"] >= 2
        output = run_tasks(site)
        assert "event sent" in output

        wait_for(
            lambda: (
                mirrored(
                    db,
                    "SELECT * FROM moodle_grades WHERE moodle_user_id = :u AND grade_item_id = :i",
                    u=student,
                    i=item,
                )
                != []
            ),
            60,
            "the grade mirrored",
        )
        [enrolment] = mirrored(
            db,
            "SELECT status FROM moodle_enrolments WHERE moodle_user_id = :u AND moodle_course_id = :c",
            u=student,
            c=course,
        )
        [grade] = mirrored(
            db,
            "SELECT final_grade FROM moodle_grades WHERE moodle_user_id = :u AND grade_item_id = :i",
            u=student,
            i=item,
        )
        assert enrolment["status"] == "enrolled"
        assert float(grade["final_grade"]) == 72.0
        first = moodle_events(db)
        assert {e["auth_method"] for e in first} == {"signature"}
        assert "local_eventrouter\\event\\connection_test" in {e["name"].lstrip("\\") for e in first}
    finally:
        stack.stop()

    # The router is down: the teacher unenrols the student and changes the grade anyway
    site.php("unenrol", str(student), str(course))
    site.php("grade", str(student), str(course), "80")
    run_tasks(site)
    waiting = site.php("queued", "local_eventrouter")
    assert waiting["failing"] >= 2  # kept, to be sent again: nothing lost, no teacher's page blocked
    assert len(moodle_events(db)) == len(first)

    # The router is back (at a new address here): the failed tasks are sent
    stack = RunningStack(tmp_path / "second", url, FAST_RETRIES, moodle=(site.url, site.token))
    stack.start()
    try:
        connect(site, stack)
        run_tasks(site, "--failed")
        wait_for(
            lambda: (
                mirrored(
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
        wait_for(
            lambda: (
                float(
                    mirrored(
                        db,
                        "SELECT final_grade FROM moodle_grades WHERE moodle_user_id = :u AND grade_item_id = :i",
                        u=student,
                        i=item,
                    )[0]["final_grade"]
                )
                == 80.0
            ),
            60,
            "the new grade mirrored",
        )
        assert site.php("queued", "local_eventrouter")["tasks"] == 0
        assert {e["status"] for e in moodle_events(db)} <= {"completed", "skipped"}
    finally:
        stack.stop()


def test_php_files_have_no_syntax_errors(site: RealSite) -> None:
    for path in PLUGIN.rglob("*.php"):
        result = site.run_php("-l", str(path))
        assert result.returncode == 0, result.stdout
