"""The college's Zoho fields, named once (docs/connect-zoho.md): the sync rules, the records read back
from Zoho, the reconciliation and both deliveries take every Zoho field name from a ``FieldMapping``.

The defaults are the guide's; a college renames any of them with the ``FIELD_MAPPING`` setting.
"""

from __future__ import annotations

import json
from functools import cache

from pydantic import BaseModel, ConfigDict

from event_router.contract import Module
from event_router.settings import Settings

# Names a record may carry instead of the mapped one (older layouts of the modules); read after it.
ALSO: dict[str, tuple[str, ...]] = {
    "enrolment_student": ("Student",),
    "enrolment_class": ("Class",),
    "enrolment_status": ("Status",),
    "grade_student": ("Students", "Enrolled_Students"),
    "payment_student": ("Students",),
    "payment_status": ("Status",),
}
# What the router reads of each module's records (fields of ``FieldMapping``).
READ: dict[Module, tuple[str, ...]] = {
    "students": ("name", "first_name", "last_name", "student_number", "email", "moodle_user_id"),
    "enrollments": ("enrolment_student", "enrolment_class", "enrolment_status", "course_idnumber"),
    "grades": ("grade_student", "grade_letter"),
    "payments": ("payment_student", "payment_amount", "payment_currency", "payment_status"),
}


class FieldMapping(BaseModel):
    """Which Zoho fields make a Moodle user and enrolment. The defaults are docs/connect-moodle.md's; a college
    changes any of them with the ``FIELD_MAPPING`` setting (JSON, e.g. ``{"email": "Email"}``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    student_number: str = "Student_ID_Number"  # → idnumber
    email: str = "Academic_Email"  # → email, and in lower case the username
    first_name: str = "First_Name"  # → firstname ...
    last_name: str = "Last_Name"  # → lastname ...
    name: str = "Name"  # ... or this, split at its last space, when those are empty
    course_idnumber: str = "Moodle_Course_ID"  # on the enrolment: the Moodle course's idnumber
    enrolment_student: str = "Enrolled_Students"  # on the enrolment: the lookup to the student
    enrolment_class: str = "Classes"  # on the enrolment: the lookup to the class
    enrolment_status: str = "Enrollment_Status"  # on the enrolment: Active, Withdrawn, ...
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
    # Payments are logged only: the summary in the event's result names these.
    payment_student: str = "Student"
    payment_amount: str = "Amount"
    payment_currency: str = "Currency"
    payment_status: str = "Payment_Status"

    def names(self, field: str) -> tuple[str, ...]:
        """The Zoho field ``field`` maps to, then the older names a record may still use."""
        return (getattr(self, field), *ALSO.get(field, ()))

    def zoho_fields(self, module: Module, *, also: bool = True) -> list[str]:
        """Every Zoho field the router reads of a ``module`` record: what to ask Zoho's API for (a
        COQL query, which refuses a field the module lacks, asks ``also=False``: the mapped names only)."""
        fields = [name for field in READ[module] for name in (self.names(field) if also else (getattr(self, field),))]
        return list(dict.fromkeys(("Name", "Modified_Time", "Modified_By", *fields)))


def default_mapping() -> FieldMapping:
    """The guide's names (what the rules use when given no mapping)."""
    return _mapping("{}")


def field_mapping(settings: Settings) -> FieldMapping:
    """The mapping of a container: the defaults, with ``FIELD_MAPPING`` applied."""
    return _mapping(settings.field_mapping or "{}")


@cache
def _mapping(text: str) -> FieldMapping:
    return FieldMapping.model_validate(json.loads(text))
