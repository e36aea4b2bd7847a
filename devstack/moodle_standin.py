"""A stand-in for Moodle's REST web services, for the local stack and the tests when no real Moodle
runs. It implements the functions the router calls (``deliver.moodle.client.FUNCTIONS``) with Moodle 4.5's
semantics, measured against the real one (``tests/contract`` runs the same suite against both):

- every answer is HTTP 200; an error is ``{"exception", "errorcode", "message"}``: ``invalidtoken``
  for a wrong token, ``accessexception`` for a function outside the service, ``invalidparameter``
  for bad or duplicate values, ``invalidrecord`` for a user or course that does not exist;
- usernames are unique and lower case, e-mail addresses unique ignoring case, ``idnumber`` is not
  unique (Moodle does not check it); lookups by field match exactly;
- ``enrol_manual_enrol_users`` and ``enrol_manual_unenrol_users`` answer ``null``; enrolling an
  enrolled user updates the enrolment's status;
- ``core_user_update_users`` reports a bad user as a warning, not an error;
- ``core_enrol_get_enrolled_users`` lists a course's enrolled users with their roles there
  (``onlyactive``: active enrolments only); ``gradereport_user_get_grade_items`` a course's grade
  items for each enrolled student, graded or not;
- ``local_eventrouter_get_account_facts`` (the Moodle plugin's) says of up to 100 accounts whether each
  is a site administrator, its authentication method and every role it holds anywhere.

Tests and the local stack reach its state directly (``site``) to create courses and look at
enrolments, as they would through Moodle's own pages.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from event_router.deliver.moodle.client import FUNCTIONS

DEV_TOKEN = "dev-moodle-ws-token-NOT-FOR-PRODUCTION"  # fake, published on purpose
STUDENT_ROLE = 5
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_USERNAME = re.compile(r"^[a-z0-9_.@-]+$")
AUTH_PLUGINS = ("manual", "nologin", "oauth2", "saml2", "ldap", "email")


class MoodleException(Exception):
    def __init__(self, errorcode: str, message: str, exception: str = "moodle_exception") -> None:
        super().__init__(message)
        self.answer = {"exception": exception, "errorcode": errorcode, "message": message}


def _invalid(detail: str) -> MoodleException:
    # Moodle keeps the detail for its debug output; the answer says only this.
    return MoodleException("invalidparameter", "Invalid parameter value detected", "invalid_parameter_exception")


def _missing(table: str) -> MoodleException:
    return MoodleException(
        "invalidrecord", f"Can't find data record in database table {table}.", "dml_missing_record_exception"
    )


@dataclass
class Site:
    """What the stand-in Moodle holds: users, courses, manual enrolments, and its one token."""

    token: str = DEV_TOKEN
    functions: tuple[str, ...] = FUNCTIONS
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    courses: dict[int, dict[str, Any]] = field(default_factory=dict)
    enrolments: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)  # (user, course)
    roles: dict[tuple[int, int], set[str]] = field(default_factory=dict)  # (user, course; 0: system) → roles
    admins: set[int] = field(default_factory=set)
    grades: dict[tuple[int, int], dict[int, float]] = field(default_factory=dict)  # (user, course) → item → grade
    calls: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(3))

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.admin = self._add_user(
            {"username": "admin", "firstname": "Admin", "lastname": "User", "email": "admin@example.invalid"}
        )
        self.admins.add(self.admin)
        self.web_service_user = self._add_user(
            {"username": "wsrouter", "firstname": "Event", "lastname": "Router", "email": "router@example.invalid"}
        )

    # ------------------------------------------------------------ what an administrator would do

    def create_course(
        self, idnumber: str, shortname: str | None = None, manual_enrolment: bool = True, visible: bool = True
    ) -> int:
        with self.lock:
            course_id = next(self._ids)
            self.courses[course_id] = {
                "id": course_id,
                "idnumber": idnumber,
                "shortname": shortname or f"course-{course_id}",
                "fullname": shortname or f"Course {course_id}",
                "manual": manual_enrolment,
                "visible": visible,
            }
            return course_id

    def enrolment(self, user_id: int, course_id: int) -> str | None:
        """``active``, ``suspended``, or None when the user is not enrolled in the course."""
        found = self.enrolments.get((user_id, course_id))
        return None if found is None else ("suspended" if found["status"] else "active")

    def user_by(self, field_name: str, value: Any) -> dict[str, Any] | None:
        return next((dict(u) for u in self.users.values() if u.get(field_name) == value), None)

    def add_user(self, username: str, email: str, idnumber: str = "", auth: str = "manual") -> int:
        """An account made in Moodle by hand (or by another import), as an administrator would."""
        with self.lock:
            return self._add_user(
                {
                    "username": username,
                    "firstname": "Existing",
                    "lastname": "User",
                    "email": email,
                    "idnumber": idnumber,
                    "auth": auth,
                }
            )

    def assign_role(self, user_id: int, role: str, course_id: int = 0) -> None:
        """A role given in a course (or, with course 0, at system level), as an administrator would."""
        with self.lock:
            self.roles.setdefault((user_id, course_id), set()).add(role)

    def set_grade(self, user_id: int, course_id: int, item_id: int, grade: float) -> None:
        """A grade given in the gradebook."""
        with self.lock:
            self.grades.setdefault((user_id, course_id), {})[item_id] = grade

    # ------------------------------------------------------------ the REST endpoint

    def answer(self, form: dict[str, Any]) -> Any:
        """One web-service request: the JSON Moodle would answer."""
        with self.lock:
            try:
                if form.get("wstoken") != self.token:
                    raise MoodleException("invalidtoken", "Invalid token - token not found")
                function = str(form.get("wsfunction", ""))
                if function not in self.functions:
                    raise MoodleException("accessexception", "Access control exception", "webservice_access_exception")
                self.calls.append(function)
                return getattr(self, f"_{function}")(form)
            except MoodleException as error:
                return error.answer

    def _core_webservice_get_site_info(self, form: dict[str, Any]) -> dict[str, Any]:
        user = self.users[self.web_service_user]
        return {
            "sitename": "Stand-in college",
            "username": user["username"],
            "userid": user["id"],
            "release": "4.5.6 (Build: 20250714) stand-in",
            "version": "2024100706",
            "functions": [{"name": f, "version": "2024100706"} for f in self.functions],
        }

    def _core_user_get_users_by_field(self, form: dict[str, Any]) -> list[dict[str, Any]]:
        field_name = form.get("field")
        if field_name not in ("id", "idnumber", "username", "email"):
            raise MoodleException(
                "codingerror",
                "Coding error detected, it must be fixed by a programmer: invalid field parameter",
                "coding_exception",
            )
        values = [str(v) for v in _as_list(form.get("values"))]
        found = [
            u
            for u in self.users.values()
            if str(u.get(field_name, "")) in values and u.get(field_name) not in ("", None)
        ]
        return [self._details(u) for u in sorted(found, key=lambda u: u["id"])]

    def _core_user_create_users(self, form: dict[str, Any]) -> list[dict[str, Any]]:
        users = _as_list(form.get("users"))
        for user in users:
            for required in ("username", "firstname", "lastname", "email"):
                if not str(user.get(required, "")).strip():
                    raise _invalid(f"The field {required} cannot be blank")
            if not _USERNAME.match(user["username"]):
                raise _invalid("username")
            if self.user_by("username", user["username"]):
                raise _invalid("Username already exists")
            if user.get("auth", "manual") not in AUTH_PLUGINS:
                raise _invalid("Invalid authentication type")
            if user.get("auth", "manual") == "manual" and not (
                user.get("password") or _true(user.get("createpassword"))
            ):
                raise _invalid("Invalid password: you must provide a password, or set createpassword.")
            if not _EMAIL.match(user["email"]):
                raise _invalid("Email address is invalid")
            if any(u["email"].lower() == user["email"].lower() for u in self.users.values()):
                raise _invalid("Email address already exists")
        created = []
        for user in users:  # all or nothing, as Moodle's transaction
            user_id = self._add_user(user)
            created.append({"id": user_id, "username": user["username"]})
        return created

    def _core_user_update_users(self, form: dict[str, Any]) -> dict[str, Any]:
        warnings = []
        for user in _as_list(form.get("users")):
            user_id = int(user.get("id", 0))
            existing = self.users.get(user_id)
            problem = None
            if existing is None:
                problem = ("invaliduserid", "Invalid user ID")
            elif "email" in user and not _EMAIL.match(str(user["email"])):
                problem = ("useremailinvalid", "Invalid email address")
            elif "email" in user and any(
                u["email"].lower() == str(user["email"]).lower() and u["id"] != user_id for u in self.users.values()
            ):
                problem = ("useremailduplicate", "Duplicate email address")
            elif "username" in user and any(
                u["username"] == user["username"] and u["id"] != user_id for u in self.users.values()
            ):
                problem = ("dmlwriteexception", "Error writing to database")
            if problem:
                warnings.append({"item": "user", "itemid": user_id, "warningcode": problem[0], "message": problem[1]})
                continue
            assert existing is not None
            for key, value in user.items():
                if key == "suspended":
                    existing["suspended"] = _true(value)
                elif key != "id":
                    existing[key] = str(value)
        return {"warnings": warnings}

    def _core_course_get_courses_by_field(self, form: dict[str, Any]) -> dict[str, Any]:
        field_name, value = form.get("field", ""), str(form.get("value", ""))
        if field_name not in ("", "id", "ids", "shortname", "idnumber", "category"):
            raise _invalid("field")
        found = [c for c in self.courses.values() if not field_name or str(c.get(field_name, "")) == value]
        courses = [{**{k: v for k, v in c.items() if k != "manual"}, "visible": int(c["visible"])} for c in found]
        return {"courses": courses, "warnings": []}

    def _enrolments(self, form: dict[str, Any]) -> list[tuple[dict[str, Any], int, int]]:
        checked = []
        for enrolment in _as_list(form.get("enrolments")):
            course_id, user_id = int(enrolment.get("courseid", 0)), int(enrolment.get("userid", 0))
            course = self.courses.get(course_id)
            if course is None:
                raise MoodleException(
                    "invalidrecord", "Can't find data record in database table context.", "dml_missing_record_exception"
                )
            if user_id not in self.users:
                raise _missing("user")
            if not course["manual"]:
                raise MoodleException(
                    "wsnoinstance", "Manual enrolment plugin instance doesn't exist or is disabled for the course"
                )
            checked.append((enrolment, user_id, course_id))
        return checked

    def _enrol_manual_enrol_users(self, form: dict[str, Any]) -> None:
        for enrolment, user_id, course_id in self._enrolments(form):
            if int(enrolment.get("roleid", 0)) != STUDENT_ROLE:
                raise MoodleException("wsusercannotassign", "You don't have the permission to assign this role")
            status = 1 if _true(enrolment.get("suspend")) else 0
            self.enrolments[(user_id, course_id)] = {"status": status, "roleid": STUDENT_ROLE}
            self.roles.setdefault((user_id, course_id), set()).add("student")
        return None

    def _enrol_manual_unenrol_users(self, form: dict[str, Any]) -> None:
        for _, user_id, course_id in self._enrolments(form):
            self.enrolments.pop((user_id, course_id), None)
            self.roles.pop((user_id, course_id), None)  # Moodle removes the roles given with the enrolment
        return None

    def _core_enrol_get_enrolled_users(self, form: dict[str, Any]) -> list[dict[str, Any]]:
        course_id = int(form.get("courseid", 0))
        if course_id not in self.courses:
            raise _missing("course")
        options = {str(o.get("name")): str(o.get("value")) for o in _as_list(form.get("options"))}
        only_active = _true(options.get("onlyactive", "0"))
        found = []
        for (user_id, course), enrolment in sorted(self.enrolments.items()):
            if course != course_id or (only_active and enrolment["status"]):
                continue
            user = self.users[user_id]
            roles = sorted(self.roles.get((user_id, course_id), set()))
            found.append(
                {
                    **self._details(user),
                    "roles": [{"roleid": STUDENT_ROLE if r == "student" else 3, "shortname": r} for r in roles],
                }
            )
        return found

    def _gradereport_user_get_grade_items(self, form: dict[str, Any]) -> dict[str, Any]:
        course_id = int(form.get("courseid", 0))
        if course_id not in self.courses:
            raise _missing("course")
        wanted = int(form.get("userid", 0) or 0)
        items = sorted({i for (_, c), graded in self.grades.items() if c == course_id for i in graded})
        usergrades = []
        for (user_id, course), _ in sorted(self.enrolments.items()):
            if course != course_id or "student" not in self.roles.get((user_id, course_id), set()):
                continue
            if wanted and user_id != wanted:
                continue
            graded = self.grades.get((user_id, course_id), {})
            usergrades.append(
                {
                    "courseid": course_id,
                    "userid": user_id,
                    "userfullname": self._details(self.users[user_id])["fullname"],
                    "useridnumber": self.users[user_id]["idnumber"],
                    "gradeitems": [
                        {
                            "id": item,
                            "itemname": f"Item {item}",
                            "itemtype": "manual",
                            "scaleid": None,
                            "graderaw": graded.get(item),
                            "gradedategraded": 1_796_000_000 if item in graded else None,
                            "lettergradeformatted": "-",
                        }
                        for item in items
                    ],
                }
            )
        return {"usergrades": usergrades, "warnings": []}

    def _local_eventrouter_get_account_facts(self, form: dict[str, Any]) -> list[dict[str, Any]]:
        ids = [int(i) for i in _as_list(form.get("userids"))]
        if len(ids) > 100:
            raise _invalid("at most 100 user ids a call")
        return [
            {
                "id": user_id,
                "siteadmin": user_id in self.admins,
                "auth": self.users[user_id]["auth"],
                "suspended": bool(self.users[user_id]["suspended"]),
                "roles": sorted({r for (u, _), roles in self.roles.items() if u == user_id for r in roles}),
            }
            for user_id in sorted(set(ids))
            if user_id in self.users
        ]

    def _add_user(self, user: dict[str, Any]) -> int:
        user_id = next(self._ids)
        self.users[user_id] = {
            "id": user_id,
            "username": str(user["username"]),
            "firstname": str(user["firstname"]),
            "lastname": str(user["lastname"]),
            "email": str(user["email"]),
            "idnumber": str(user.get("idnumber", "")),
            "auth": str(user.get("auth", "manual")),
            "suspended": False,
            "confirmed": True,
        }
        return user_id

    @staticmethod
    def _details(user: dict[str, Any]) -> dict[str, Any]:
        return {**user, "fullname": f"{user['firstname']} {user['lastname']}"}


def _true(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value[k] for k in sorted(value, key=lambda k: int(k) if str(k).isdigit() else 0)]
    return list(value) if isinstance(value, list) else []


def parse_form(body: str) -> dict[str, Any]:
    """PHP's parsing of ``users[0][username]=…`` form fields into nested dicts."""
    form: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        name, _, rest = key.partition("[")
        path = [name, *rest.removesuffix("]").split("][")] if rest else [name]
        target = form
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return form


class _Handler(BaseHTTPRequestHandler):
    server: MoodleStandIn

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/webservice/rest/server.php":
            self.send_error(404)
            return
        length = int(self.headers.get("content-length") or 0)
        form = parse_form(self.rfile.read(length).decode())
        time.sleep(self.server.latency_seconds)  # a site under load answers slowly
        body = json.dumps(self.server.site.answer(form)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the router's own logs say what matters


class MoodleStandIn(ThreadingHTTPServer):
    """The stand-in on a loopback port; ``url`` and ``site.token`` are what the router is given."""

    daemon_threads = True

    def __init__(self, site: Site | None = None, port: int = 0) -> None:
        self.site = site or Site()
        self.latency_seconds = 0.0  # how long each answer takes (a slow Moodle, for tests)
        super().__init__(("127.0.0.1", port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="moodle-standin", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> MoodleStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
