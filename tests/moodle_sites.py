"""The Moodle sites the contract and end-to-end suites run against: the stand-in always, and a real
Moodle when ``MOODLE_URL`` and ``MOODLE_TOKEN`` are set (``../shared/moodle/moodle.sh start`` prints
them; ``.ci/run`` does that). ``MOODLE_URLS`` names every real Moodle to test on (space separated,
each started by ``moodle.sh`` on its own port with the same token): the plugin's suite runs on each
of them, one per Moodle version the plugin claims.

A test sees a ``MoodleSite``: the web-service URL and token the router is given, plus what a test
needs besides (create a course, look at an enrolment) done the way an administrator would — on
the stand-in through its state, on a real Moodle through ``moodle.sh php``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from devstack.moodle_standin import MoodleStandIn
from event_router.deliver.moodle.client import CAPABILITIES, FUNCTIONS, MoodleRestClient

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).resolve().parent / "moodle_site.php"


class MoodleSite(Protocol):
    url: str
    token: str
    name: str

    def create_course(self, idnumber: str, visible: bool = True) -> int: ...
    def enrolment(self, user_id: int, course_id: int) -> str | None: ...
    def add_user(self, username: str, email: str, idnumber: str = "", auth: str = "manual") -> int: ...
    def make_teacher(self, user_id: int, course_id: int) -> None: ...
    def admin(self) -> dict[str, Any]: ...
    def enrol_by_hand(self, user_id: int, course_id: int, suspended: bool = False) -> None: ...
    def unenrol_by_hand(self, user_id: int, course_id: int) -> None: ...
    def suspend_by_hand(self, user_id: int) -> None: ...
    def grade(self, user_id: int, course_id: int, value: float) -> int: ...
    def add_users(self, users: list[tuple[str, str]]) -> list[int]: ...


class StandInSite:
    name = "stand-in"

    def __init__(self, server: MoodleStandIn) -> None:
        self.server = server
        self.url = server.url
        self.token = server.site.token

    def create_course(self, idnumber: str, visible: bool = True) -> int:
        return self.server.site.create_course(idnumber, visible=visible)

    def enrolment(self, user_id: int, course_id: int) -> str | None:
        return self.server.site.enrolment(user_id, course_id)

    def add_user(self, username: str, email: str, idnumber: str = "", auth: str = "manual") -> int:
        return self.server.site.add_user(username, email, idnumber, auth)

    def make_teacher(self, user_id: int, course_id: int) -> None:
        site = self.server.site
        with site.lock:
            site.enrolments[(user_id, course_id)] = {"status": 0, "roleid": 3}
        site.assign_role(user_id, "editingteacher", course_id)

    def admin(self) -> dict[str, Any]:
        site = self.server.site
        return {"id": site.admin, "email": site.users[site.admin]["email"]}

    def enrol_by_hand(self, user_id: int, course_id: int, suspended: bool = False) -> None:
        site = self.server.site
        with site.lock:
            site.enrolments[(user_id, course_id)] = {"status": 1 if suspended else 0, "roleid": 5}
        site.assign_role(user_id, "student", course_id)

    def unenrol_by_hand(self, user_id: int, course_id: int) -> None:
        site = self.server.site
        with site.lock:
            site.enrolments.pop((user_id, course_id), None)
            site.roles.pop((user_id, course_id), None)

    def suspend_by_hand(self, user_id: int) -> None:
        with self.server.site.lock:
            self.server.site.users[user_id]["suspended"] = True

    def grade(self, user_id: int, course_id: int, value: float) -> int:
        self.server.site.set_grade(user_id, course_id, 1_000_000 + course_id, value)
        return 1_000_000 + course_id

    def add_users(self, users: list[tuple[str, str]]) -> list[int]:
        return [self.add_user(username, email) for username, email in users]


class RealSite:
    """A real Moodle: its web services for the router, ``moodle.sh php`` for the rest.

    The router's token is not the administrator's ``MOODLE_TOKEN``: it belongs to a dedicated user
    whose role holds exactly the capabilities the administrator's guide lists, for a service holding
    exactly the functions it lists, so the suite proves those lists are enough."""

    name = "real"
    ROUTER_TOKEN = "e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7"  # a test site's token, not a secret

    def __init__(self, url: str, admin_token: str, moodle_sh: Path) -> None:
        self.url, self.admin_token, self._moodle_sh = url, admin_token, moodle_sh
        self.token = self.ROUTER_TOKEN
        self.port = urlsplit(url).port or 80  # moodle.sh keeps each port's site in its own home
        self.install_plugin()  # the service holds the plugin's function too
        self.php("ws_user", self.ROUTER_TOKEN, *CAPABILITIES, "--", *FUNCTIONS)

    @functools.cached_property
    def release(self) -> str:
        """Moodle's release, e.g. 4.5.6 or 5.0.6+."""
        info = MoodleRestClient(self.url, self.admin_token, timeout=30).call("core_webservice_get_site_info")
        return str(info["release"]).split(" ", 1)[0]

    @functools.cached_property
    def dirroot(self) -> Path:
        """Where the Moodle's code is (its plugins go under it)."""
        return Path(str(self.php("dirroot")["dirroot"]))

    def run_php(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``moodle.sh php <args>``: a Moodle CLI script, with the site's PHP and configuration."""
        return subprocess.run(  # noqa: S603 - the test infrastructure's own script
            [str(self._moodle_sh), "php", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            env={**os.environ, "MOODLE_PORT": str(self.port)},
        )

    def php(self, *args: str) -> dict[str, Any]:
        """One action of ``moodle_site.php`` (an administrator's action, or a look at the result)."""
        result = self.run_php(str(HELPER), *args)
        assert result.returncode == 0, result.stdout + result.stderr
        answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return answer

    def create_course(self, idnumber: str, visible: bool = True) -> int:
        return int(str(self.php("create_course", idnumber, "1" if visible else "0")["id"]))

    def enrolment(self, user_id: int, course_id: int) -> str | None:
        found = self.php("enrolment", str(user_id), str(course_id))
        status = found["status"]
        return str(status) if status is not None else None

    def add_user(self, username: str, email: str, idnumber: str = "", auth: str = "manual") -> int:
        return int(str(self.php("add_user", username, email, idnumber, auth)["id"]))

    def make_teacher(self, user_id: int, course_id: int) -> None:
        self.php("teacher", str(user_id), str(course_id))

    def admin(self) -> dict[str, Any]:
        return self.php("admin")

    def enrol_by_hand(self, user_id: int, course_id: int, suspended: bool = False) -> None:
        self.php("enrol", str(user_id), str(course_id))
        if suspended:
            self.php("suspend_enrolment", str(user_id), str(course_id))

    def unenrol_by_hand(self, user_id: int, course_id: int) -> None:
        self.php("unenrol", str(user_id), str(course_id))

    def suspend_by_hand(self, user_id: int) -> None:
        self.php("suspend_user", str(user_id))

    def grade(self, user_id: int, course_id: int, value: float) -> int:
        return int(str(self.php("grade", str(user_id), str(course_id), str(value))["itemid"]))

    def add_users(self, users: list[tuple[str, str]]) -> list[int]:
        """Accounts an administrator imported (their e-mails, manual sign-in), in one call."""
        admin = MoodleRestClient(self.url, self.admin_token, timeout=120)
        made = admin.call(
            "core_user_create_users",
            {
                "users": [
                    {
                        "username": username,
                        "email": email,
                        "firstname": "Existing",
                        "lastname": "Learner",
                        "createpassword": 1,
                    }
                    for username, email in users
                ]
            },
        )
        return [int(m["id"]) for m in made]

    def install_plugin(self) -> None:
        """The plugin, as an administrator installs it: its folder copied in, then Moodle's upgrade."""
        target = self.dirroot / "local" / "eventrouter"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "clients" / "moodle" / "eventrouter", target)
        upgrade = self.run_php(str(self.dirroot / "admin" / "cli" / "upgrade.php"), "--non-interactive")
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr


def real_moodle() -> RealSite | None:
    """The real Moodle of ``MOODLE_URL``, if one is given."""
    url = os.environ.get("MOODLE_URL")
    return _site(url) if url else None


def real_moodles() -> list[RealSite]:
    """Every real Moodle given: ``MOODLE_URLS``, or else ``MOODLE_URL`` alone."""
    urls = (os.environ.get("MOODLE_URLS") or os.environ.get("MOODLE_URL") or "").split()
    return [_site(url) for url in dict.fromkeys(urls)]


def _site(url: str) -> RealSite:
    token = os.environ.get("MOODLE_TOKEN")
    if not token:
        raise RuntimeError("MOODLE_URL is set without MOODLE_TOKEN")
    moodle_sh = Path(os.environ.get("MOODLE_SH", ROOT.parent / "shared" / "moodle" / "moodle.sh"))
    if not moodle_sh.exists():
        raise RuntimeError(f"MOODLE_URL is set but {moodle_sh} (MOODLE_SH) is not there to set up its courses")
    return _real_site(url, token, moodle_sh)


@functools.cache
def _real_site(url: str, token: str, moodle_sh: Path) -> RealSite:
    return RealSite(url, token, moodle_sh)


SITES = ["stand-in", *(["real"] if real_moodle() else [])]


def user_by_idnumber(site: MoodleSite, idnumber: str) -> dict[str, Any] | None:
    """The Moodle user with ``idnumber``, asked through Moodle's web services; at most one may exist."""
    found = MoodleRestClient(site.url, site.token, timeout=30).call(
        "core_user_get_users_by_field", {"field": "idnumber", "values": [idnumber]}
    )
    assert len(found) <= 1, f"{len(found)} Moodle users have idnumber {idnumber}"
    return dict(found[0]) if found else None
