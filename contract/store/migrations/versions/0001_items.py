"""The items table: one garment photo, what the model said, and what the person said.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("thumbnail", sa.LargeBinary, nullable=False),
        sa.Column("thumbnail_type", sa.String(32), nullable=False),
        sa.Column("model_input", sa.LargeBinary, nullable=False),
        sa.Column("predicted_label", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("top_k", sa.JSON, nullable=False),
        sa.Column("unsure", sa.Boolean, nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("corrected_label", sa.String(64), nullable=True),
        sa.Column("corrected_at", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("items")
