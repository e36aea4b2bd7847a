"""The operators' console in a real browser (Debian's Chromium, headless, driven by Playwright)
against ``make dev``'s stack: the overview, a student's Moodle delivery found by e-mail, a failed
event replayed to completed, a paused destination resumed. Each step saves a screenshot into
docs/images/console/, which docs/operate.md shows.

Run by ``make test-browser`` (``.ci/run`` runs it after ``make test``), which installs Chromium.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import Engine, text

from devstack.process import RunningStack
from devstack.samples import SAMPLES, Sample
from event_router.operate.migrate import make_engine
from tests.e2e.conftest import FAST_RETRIES, wait_for

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "images" / "console"
ADA = "ada.example@students.example.ac.uk"
# A grade the database refuses with a constraint's error: the processor parks its event as failed.
POISON = Sample(
    "poison",
    "POST /api/v1/events/zoho/grade",
    b"id=POISON&Student=1&Grade=P&Modified_Time=2026-11-25T09%3A00%3A00Z",
    202,
    content_type="application/x-www-form-urlencoded",
)


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed: make test-browser installs it"
    return found


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fresh_database: Callable[[str], str]
) -> Iterator[tuple[RunningStack, Engine]]:
    url = fresh_database("console")
    running = RunningStack(tmp_path_factory.mktemp("console") / "local", url, FAST_RETRIES)
    running.start()
    db = make_engine(url)
    try:
        for sample in (s for s in SAMPLES.values() if s.expect == 202):
            assert running.send(sample)[0] == 202, sample.name
        wait_for(lambda: _delivered(db, "moodle", "user"), timeout=60, what="Ada's Moodle account delivered")
        yield running, db
    finally:
        running.stop()
        db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page(viewport={"width": 1280, "height": 900})
    yield opened
    opened.close()


def _delivered(db: Engine, destination: str, action: str) -> bool:
    with db.connect() as connection:
        return bool(
            connection.execute(
                text("SELECT count(*) FROM deliveries WHERE destination = :d AND action = :a AND status = 'delivered'"),
                {"d": destination, "a": action},
            ).scalar_one()
        )


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_overview_opens(stack: tuple[RunningStack, Engine], page: Page) -> None:
    running, _ = stack
    page.goto(f"{running.base_url}/console")
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    day = page.get_by_role("table", name=re.compile("Last 24 hours, by module and status"))
    expect(day).to_contain_text("completed")
    expect(page.get_by_role("table", name="Where the router delivers")).to_contain_text("moodle")
    shot(page, "overview")


def test_a_student_found_by_email_shows_their_moodle_delivery(stack: tuple[RunningStack, Engine], page: Page) -> None:
    running, _ = stack
    page.goto(f"{running.base_url}/console")
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Student").click()
    page.get_by_label("By").select_option(label="e-mail")
    page.get_by_label("Value").fill(ADA)
    page.get_by_role("button", name="Search").click()

    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    delivery = page.get_by_role("row").filter(has_text=re.compile(r"Delivery \d+ to Moodle: user"))
    expect(delivery.first).to_contain_text("delivered")
    expect(page.locator("dl.facts")).to_contain_text("BTEC-2026-0001")
    shot(page, "student")


def test_a_failed_event_is_replayed_and_completes(stack: tuple[RunningStack, Engine], page: Page) -> None:
    running, db = stack
    with db.begin() as connection:  # the database refuses this grade, as a constraint would
        connection.execute(
            text(
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN"
                " RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; END $$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON grades FOR EACH ROW"
                " WHEN (NEW.zoho_record_id = 'POISON') EXECUTE FUNCTION refuse_poison()"
            )
        )
    status, answer = running.send(POISON)
    assert status == 202
    event_id = answer["event_id"]
    wait_for(lambda: _status(db, event_id) == "failed", what="the poison event failed")
    with db.begin() as connection:  # the cause is mended
        connection.execute(text("DROP FUNCTION refuse_poison() CASCADE"))

    page.goto(f"{running.base_url}/console/events")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("link", name=event_id).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Event {event_id}")
    page.get_by_role("button", name="Replay this event").click()

    expect(page.get_by_role("status")).to_contain_text("replayed")
    wait_for(lambda: _status(db, event_id) == "completed", what="the replayed event completed")
    page.reload()
    expect(page.locator("dl.facts")).to_contain_text("completed")
    shot(page, "event-replayed")
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Actions").click()
    expect(page.get_by_role("table")).to_contain_text("local-operator")
    shot(page, "actions")


def test_a_paused_destination_is_resumed(stack: tuple[RunningStack, Engine], page: Page) -> None:
    running, db = stack
    with db.begin() as connection:
        connection.execute(
            text(
                "UPDATE destinations SET paused_at = now(), pause_reason = 'Moodle refused the token (invalidtoken)'"
                " WHERE name = 'moodle'"
            )
        )
    page.goto(f"{running.base_url}/console")
    destinations = page.get_by_role("table", name="Where the router delivers")
    expect(destinations).to_contain_text("invalidtoken")
    shot(page, "paused")
    page.get_by_role("button", name="Resume moodle").click()

    expect(page.get_by_role("status")).to_contain_text("resumed")
    expect(destinations.get_by_role("row").filter(has_text="moodle")).to_contain_text("delivering")
    with db.connect() as connection:
        assert connection.execute(text("SELECT paused_at FROM destinations WHERE name = 'moodle'")).scalar_one() is None


def _status(db: Engine, event_id: str) -> str | None:
    with db.connect() as connection:
        return connection.execute(
            text("SELECT status FROM integration_events_log WHERE event_id = :e"), {"e": event_id}
        ).scalar_one_or_none()
