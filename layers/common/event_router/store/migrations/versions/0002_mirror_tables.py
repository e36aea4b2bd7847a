"""Mirror tables of Zoho records and Moodle facts (docs/decisions.md).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _timestamp(name: str, *, nullable: bool = True, default: bool = False) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=sa.func.now() if default else None
    )


def _bookkeeping(*, tombstones: bool) -> list[sa.Column]:
    columns = [_timestamp("source_modified_at"), sa.Column("last_event_id", sa.Text)]
    if tombstones:
        columns.append(_timestamp("deleted_at"))
    return [*columns, _timestamp("updated_at", nullable=False, default=True)]


def _zoho_mirror(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("zoho_record_id", sa.Text, nullable=False),
        *columns,
        sa.Column("data", postgresql.JSONB, nullable=False, server_default="{}"),
        *_bookkeeping(tombstones=True),
        sa.PrimaryKeyConstraint("zoho_record_id", name=f"pk_{name}"),
    )


def upgrade() -> None:
    _zoho_mirror(
        "students",
        sa.Column("student_id_number", sa.Text),
        sa.Column("academic_email", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("moodle_user_id", sa.BigInteger),
    )
    op.create_index("ix_students_student_id_number", "students", ["student_id_number"])
    op.create_index("ix_students_moodle_user_id", "students", ["moodle_user_id"])

    _zoho_mirror(
        "enrollments",
        sa.Column("student_zoho_id", sa.Text),
        sa.Column("class_zoho_id", sa.Text),
        sa.Column("status", sa.Text),
    )
    op.create_index("ix_enrollments_student_zoho_id", "enrollments", ["student_zoho_id"])
    op.create_index("ix_enrollments_class_zoho_id", "enrollments", ["class_zoho_id"])

    _zoho_mirror("grades", sa.Column("student_zoho_id", sa.Text), sa.Column("grade", sa.Text))
    op.create_index("ix_grades_student_zoho_id", "grades", ["student_zoho_id"])

    op.create_table(
        "moodle_enrolments",
        sa.Column("moodle_user_id", sa.BigInteger, nullable=False),
        sa.Column("moodle_course_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        *_bookkeeping(tombstones=False),
        sa.PrimaryKeyConstraint("moodle_user_id", "moodle_course_id", name="pk_moodle_enrolments"),
        sa.CheckConstraint("status IN ('enrolled', 'unenrolled')", name="ck_moodle_enrolments_status"),
    )
    op.create_table(
        "moodle_grades",
        sa.Column("moodle_user_id", sa.BigInteger, nullable=False),
        sa.Column("grade_item_id", sa.BigInteger, nullable=False),
        sa.Column("moodle_course_id", sa.BigInteger),
        sa.Column("final_grade", sa.Numeric),
        *_bookkeeping(tombstones=False),
        sa.PrimaryKeyConstraint("moodle_user_id", "grade_item_id", name="pk_moodle_grades"),
    )


def downgrade() -> None:
    for table in ("moodle_grades", "moodle_enrolments", "grades", "enrollments", "students"):
        op.drop_table(table)
