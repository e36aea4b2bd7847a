"""The Zoho connector (docs/connect-moodle.md): the shared access token, the classes' Moodle courses, and what a
Moodle grade says about its letter.

- ``zoho_tokens``: the one access token every container uses (Zoho allows 10 refreshes in 10
  minutes per refresh token), with its API domain and expiry.
- ``zoho_classes``: a Zoho class's Moodle course idnumber, fetched once and then kept.
- ``moodle_grades`` gains ``grade_letter`` and ``scale_id`` (sent by the Moodle plugin).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "zoho_tokens",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("access_token", sa.Text, nullable=False),
        sa.Column("api_domain", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("name", name="pk_zoho_tokens"),
    )
    op.create_table(
        "zoho_classes",
        sa.Column("class_zoho_id", sa.Text, nullable=False),
        sa.Column("moodle_course_idnumber", sa.Text),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("class_zoho_id", name="pk_zoho_classes"),
    )
    op.add_column("moodle_grades", sa.Column("grade_letter", sa.Text))
    op.add_column("moodle_grades", sa.Column("scale_id", sa.BigInteger))


def downgrade() -> None:
    op.drop_column("moodle_grades", "scale_id")
    op.drop_column("moodle_grades", "grade_letter")
    op.drop_table("zoho_classes")
    op.drop_table("zoho_tokens")
