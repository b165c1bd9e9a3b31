"""Operator access: API keys, the audit log, and the ids of deleted devices.

- `api_keys`: one row per key, kept after revocation (the name stays taken,
  the audit log keeps meaning something). Only the key's SHA-256 is stored;
  keys are 256 random bits, so no salt or slow hash is needed against
  guessing, and the hash is the lookup key. A scope is either a list of
  device ids or a label selector (both empty: every device).
- `audit_events`: who did what, when, with what outcome; read newest first.
- `retired_device_ids`: ids of deleted devices, so that deleting a device and
  creating it again cannot hand its identity to someone else silently:
  re-registering is an explicit admin act.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TSTZ = sa.TIMESTAMP(timezone=True)
NOW = sa.text("now()")
NAME_PATTERN = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("role", sa.SmallInteger, nullable=False),
        sa.Column("key_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("device_ids", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("device_labels", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("creator", sa.Text, nullable=False),
        sa.Column("create_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("expire_time", TSTZ),
        sa.Column("revoke_time", TSTZ),
        sa.CheckConstraint(f"name ~ '{NAME_PATTERN}' AND length(name) <= 63", name="api_keys_name_format"),
        sa.CheckConstraint("role BETWEEN 1 AND 3", name="api_keys_role_known"),
        sa.CheckConstraint("octet_length(key_hash) = 32", name="api_keys_hash_sha256"),
        comment="Operator API keys, by SHA-256 of the key; the key itself is never stored.",
    )
    op.create_table(
        "audit_events",
        sa.Column("event_id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("event_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("resource", sa.Text, nullable=False, server_default=""),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        comment="Every call that changes something: who, what, when, outcome.",
    )
    op.create_index("audit_events_actor", "audit_events", ["actor", "event_id"])
    op.create_table(
        "retired_device_ids",
        sa.Column("device_id", sa.Text, primary_key=True),
        sa.Column("delete_time", TSTZ, nullable=False, server_default=NOW),
        comment="Ids of deleted devices: re-registering one needs an admin's explicit `reregister`.",
    )


def downgrade() -> None:
    op.drop_table("retired_device_ids")
    op.drop_index("audit_events_actor", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("api_keys")
