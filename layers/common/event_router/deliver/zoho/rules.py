"""What each Zoho delivery writes (docs/connect-zoho.md): a Moodle grade becomes a ``BTEC_Grades`` record keyed
by ``Moodle_Grade_Key``; a student's Moodle user id goes on their Zoho record. Each rule reads the mirror
as it is when the delivery runs, and says how a delivery ends without a call when there is nothing to send.
"""

from __future__ import annotations

from typing import Any

from event_router.contract import DeliveryStatus, grade_of, waits_for_moodle_user
from event_router.deliver.ports import ZohoLedger
from event_router.mapping import FieldMapping
from event_router.store.deliveries import Delivery, Outcome


class Writes:
    """The Zoho record of each delivery, from the mirror and the college's field names."""

    def __init__(self, store: ZohoLedger, mapping: FieldMapping) -> None:
        self._store = store
        self._mapping = mapping

    def plan(self, delivery: Delivery) -> dict[str, Any] | Outcome:
        """The Zoho record a delivery writes, or how it ends without a call."""
        if delivery.action == "grade":
            return self._grade(delivery.target_key)
        if delivery.action == "moodle_user_id":
            return self._moodle_user_id(delivery.target_key)
        return Outcome(DeliveryStatus.FAILED, error=f"unknown Zoho action {delivery.action!r}")

    def _grade(self, key: str) -> dict[str, Any] | Outcome:
        user, item = grade_of(key)
        grade = self._store.moodle_grade(user, item)
        if grade is None:
            return Outcome(DeliveryStatus.FAILED, error=f"Moodle grade {key} is not in the mirror")
        final, course_id, letter, scale_id = grade
        student = self._store.student_of_moodle_user(user)
        if student is None:
            reason = f"no Zoho student has Moodle user {user} yet"
            return Outcome(
                DeliveryStatus.WAITING, error=reason, waiting_on=waits_for_moodle_user(user), attempted=False
            )
        zoho_student, name = student
        course = self._store.course_idnumber(course_id) if course_id is not None else None
        m = self._mapping
        return {
            "Name": f"{name or 'Student'} - grade item {item}"[:120],
            m.grade_key: key,
            m.grade_student: {"id": zoho_student},
            m.grade_course: course or (str(course_id) if course_id is not None else None),
            m.grade_value: float(final) if final is not None else None,
            m.grade_letter: letter or self._scale_item(final, scale_id),
        }

    def _scale_item(self, final: Any, scale_id: int | None) -> str | None:
        """The scale item a grade on a scale stands for (1 is the scale's first item)."""
        scale = self._mapping.grade_scale
        if final is None or scale_id is None or not scale:
            return None
        index = round(float(final)) - 1
        return scale[index] if 0 <= index < len(scale) else None

    def _moodle_user_id(self, zoho_student: str) -> dict[str, Any] | Outcome:
        found = self._store.student(zoho_student)
        if found is None or found[2] is None:
            return Outcome(DeliveryStatus.FAILED, error=f"student {zoho_student} has no Moodle user in the mirror")
        data, deleted_at, moodle_user = found
        if deleted_at is not None:  # Zoho would answer INVALID_DATA: nothing to write to
            return Outcome(
                DeliveryStatus.CANCELLED, result={"reason": "the student was deleted in Zoho"}, attempted=False
            )
        if str(data.get(self._mapping.moodle_user_id) or "") == str(moodle_user):
            return Outcome(DeliveryStatus.DELIVERED, result={"action": "unchanged"}, attempted=False)
        return {"id": zoho_student, self._mapping.moodle_user_id: str(moodle_user)}
