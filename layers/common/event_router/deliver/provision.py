"""Provisioning rules (SPEC §11): a Zoho student becomes a Moodle user, a Zoho enrolment a manual
enrolment in the course whose ``idnumber`` it names.

Every rule converges Moodle to what the mirror holds, so a delivery done twice does no harm: a user
is looked up (by the id we stored, then ``idnumber``, then e-mail) before anything is created, only
the fields that differ are updated, a Zoho delete suspends the user and never deletes it, and an
enrolment is set to the state the Zoho record asks for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from event_router.deliver.moodle import Moodle, MoodleError
from event_router.settings import Settings

EnrolmentState = Literal["active", "suspended", "absent"]


class FieldMapping(BaseModel):
    """Which Zoho fields make a Moodle user and enrolment. The defaults are SPEC §11's; a college
    changes any of them with the ``FIELD_MAPPING`` setting (JSON, e.g. ``{"email": "Email"}``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    student_number: str = "Student_ID_Number"  # → idnumber
    email: str = "Academic_Email"  # → email, and in lower case the username
    first_name: str = "First_Name"  # → firstname ...
    last_name: str = "Last_Name"  # → lastname ...
    name: str = "Name"  # ... or this, split at its last space, when those are empty
    course_idnumber: str = "Moodle_Course_ID"  # on the enrolment: the Moodle course's idnumber
    active_statuses: tuple[str, ...] = ("Active", "Enrolled")  # Enrollment_Status → enrolled as student
    suspended_statuses: tuple[str, ...] = ("Withdrawn", "Suspended", "Completed")  # → enrolment suspended
    class_course_idnumber: str = "Moodle_Course_ID"  # on the class: its Moodle course, when the enrolment has none
    # What goes back to Zoho: the student's Moodle user id, and Moodle grades as BTEC_Grades records.
    moodle_user_id: str = "Moodle_User_ID"  # on the student
    grade_key: str = "Moodle_Grade_Key"  # unique: "<Moodle user id>-<grade item id>"
    grade_student: str = "Student"  # lookup to the student
    grade_course: str = "Moodle_Course_ID"  # the Moodle course's idnumber (its id when the router knows none)
    grade_value: str = "Final_Grade"  # the final grade, a number
    grade_letter: str = "Grade"  # the grade as a letter or scale item, when there is one
    grade_scale: tuple[str, ...] = ()  # a scale's items in order (e.g. Refer, Pass, Merit, Distinction)


def field_mapping(settings: Settings) -> FieldMapping:
    """The mapping of a container: the defaults, with ``FIELD_MAPPING`` applied."""
    return _mapping(settings.field_mapping or "{}")


@cache
def _mapping(text: str) -> FieldMapping:
    return FieldMapping.model_validate(json.loads(text))


class CannotDeliver(Exception):
    """The record cannot become what the destination needs (a field is missing or unusable)."""


@dataclass(frozen=True)
class MoodleUser:
    """The Moodle user a Zoho student should be."""

    idnumber: str | None
    email: str | None
    firstname: str
    lastname: str
    suspended: bool

    @property
    def username(self) -> str | None:
        return self.email.lower() if self.email else None

    def fields(self) -> dict[str, Any]:
        """The fields Moodle keeps that the router manages."""
        return {
            "idnumber": self.idnumber or "",
            "email": self.email,
            "username": self.username,
            "firstname": self.firstname,
            "lastname": self.lastname,
            "suspended": self.suspended,
        }

    @classmethod
    def of(cls, record: dict[str, Any], deleted: bool, mapping: FieldMapping) -> MoodleUser:
        """The user a student record maps to (SPEC §11's default mapping, or the college's)."""

        def text(name: str) -> str | None:
            value = record.get(name)
            return str(value).strip() or None if value is not None else None

        first, last = text(mapping.first_name), text(mapping.last_name)
        if not (first and last):
            full = text(mapping.name)
            if full:
                given, _, family = full.rpartition(" ")
                if not given:  # a single name: Moodle needs both, so the family name is "-"
                    given, family = family, "-"
                first, last = first or given, last or family
        if not (first and last):
            raise CannotDeliver(f"{mapping.name} (or {mapping.first_name} and {mapping.last_name}) is required")
        return cls(text(mapping.student_number), text(mapping.email), first, last, deleted)


class Provisioner:
    """Moodle users and manual enrolments, converged to what the mirror holds."""

    def __init__(self, moodle: Moodle, student_role_id: int = 5, auth: str = "manual") -> None:
        self._moodle = moodle
        self._student_role_id = student_role_id
        self._auth = auth

    def find_user(self, known_id: int | None, desired: MoodleUser) -> dict[str, Any] | None:
        """The Moodle user of a student: by the id stored for it, then ``idnumber``, then the username
        the router would give it, then e-mail (Moodle compares e-mails case-sensitively, so both the
        address as given and in lower case)."""
        emails = list(dict.fromkeys(e for e in (desired.email, desired.username) if e))
        lookups: list[tuple[str, list[Any]]] = [
            ("id", [known_id] if known_id is not None else []),
            ("idnumber", [desired.idnumber] if desired.idnumber else []),
            ("username", [desired.username] if desired.username else []),
            ("email", emails),
        ]
        for field, values in lookups:
            if not values:
                continue
            found = self._moodle.call("core_user_get_users_by_field", {"field": field, "values": values})
            if found:
                return dict(found[0])
        return None

    def ensure_user(self, desired: MoodleUser, known_id: int | None) -> tuple[int | None, str]:
        """Make Moodle's user match ``desired``: (its id, what was done). A deleted student who never
        had a Moodle user gets none."""
        existing = self.find_user(known_id, desired)
        if existing is None:
            if desired.suspended:
                return None, "absent"
            if not desired.email:
                raise CannotDeliver("an e-mail address is required to create a Moodle user")
            return self._create(desired), "created"
        wanted = desired.fields()
        if str(existing.get("username", "")) != str(existing.get("email", "")).lower():
            del wanted["username"]  # a username the college chose is kept; one that is the e-mail follows it
        changed = {
            field: value
            for field, value in wanted.items()
            if value is not None and not _same(field, existing.get(field), value)
        }
        if not changed:
            return int(existing["id"]), "unchanged"
        answer = self._moodle.call("core_user_update_users", {"users": [{"id": existing["id"], **changed}]})
        warnings = (answer or {}).get("warnings") or []
        if warnings:
            warning = warnings[0]
            raise MoodleError("data", str(warning.get("warningcode", "warning")), str(warning.get("message", "")))
        return int(existing["id"]), "suspended" if changed.keys() == {"suspended"} and desired.suspended else "updated"

    def _create(self, desired: MoodleUser) -> int:
        user: dict[str, Any] = {k: v for k, v in desired.fields().items() if k != "suspended" and v}
        user["auth"] = self._auth
        if self._auth == "manual":
            user["createpassword"] = True  # Moodle e-mails the student a password
        [created] = self._moodle.call("core_user_create_users", {"users": [user]})
        return int(created["id"])

    def course_id(self, idnumber: str) -> int | None:
        """The id of the course whose ``idnumber`` is ``idnumber``; None when there is none."""
        answer = self._moodle.call("core_course_get_courses_by_field", {"field": "idnumber", "value": idnumber})
        courses = (answer or {}).get("courses") or []
        return int(courses[0]["id"]) if courses else None

    def set_enrolment(self, user_id: int, course_id: int, state: EnrolmentState) -> None:
        """Enrol as student (``active``), keep enrolled but suspended, or unenrol (``absent``)."""
        if state == "absent":
            self._moodle.call(
                "enrol_manual_unenrol_users", {"enrolments": [{"userid": user_id, "courseid": course_id}]}
            )
            return
        enrolment = {
            "roleid": self._student_role_id,
            "userid": user_id,
            "courseid": course_id,
            "suspend": state == "suspended",
        }
        self._moodle.call("enrol_manual_enrol_users", {"enrolments": [enrolment]})


def _same(field: str, current: Any, wanted: Any) -> bool:
    if field == "suspended":
        return bool(current) == bool(wanted)
    if field in ("email", "username"):
        return str(current or "").lower() == str(wanted).lower()
    return str(current or "") == str(wanted)


def enrolment_state(status: str | None, deleted: bool, mapping: FieldMapping) -> EnrolmentState:
    """What a Zoho enrolment's status asks of Moodle."""
    if deleted:
        return "absent"
    if status in mapping.active_statuses:
        return "active"
    if status in mapping.suspended_statuses:
        return "suspended"
    known = ", ".join((*mapping.active_statuses, *mapping.suspended_statuses))
    raise CannotDeliver(f"enrolment status {status!r} is none of {known}")
