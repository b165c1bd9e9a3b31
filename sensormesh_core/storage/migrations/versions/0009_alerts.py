"""Alert rules, alerts, the evaluator's state, and the notification outbox.

- `alert_rules`: one row per rule; the typed condition is the contract's
  AlertRule message, encoded (`rule`), beside the columns queries filter on.
- `alerts`: one row per alert; at most one active alert per rule, device and
  sensor (a partial unique index), kept after it clears for the retention.
- `alert_cursors`: per device, the last sequence the evaluator judged and that
  reading's sample time: a new leader (after a restart or a failover) resumes
  exactly there.
- `alert_series_states`: per rule, device and sensor, what a condition
  remembers between batches (a `for` clock, moving averages, a window's
  head), written in the same transaction as the cursor, so state and cursor
  never disagree.
- `alert_leader`: one row: the epoch of the current evaluator, taken by the
  process that holds the evaluators' advisory lock. Every evaluation
  transaction reads it (FOR SHARE) and stops if a newer leader has taken over,
  so a process that lost the lock without knowing it yet cannot write.
- `alert_notifications`: the outbox. Every alert change adds a row per
  receiver in the change's transaction; a dispatcher delivers them with
  retries, so a receiver's outage neither blocks evaluation nor loses a
  change; after the last retry a row is kept as dead (`dead_time`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TSTZ = sa.TIMESTAMP(timezone=True)
NOW = sa.text("now()")
ACTIVE = "state IN (1, 2)"  # ACTIVE_UNACK, ACTIVE_ACK


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("rule_id", sa.Text, primary_key=True),
        sa.Column("rule", sa.LargeBinary, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("creator", sa.Text, nullable=False),
        sa.Column("create_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("update_time", TSTZ, nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "rule_id ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$' AND length(rule_id) <= 63",
            name="alert_rules_id_format",
        ),
        comment="Alert rules (sensormesh.v1.AlertRule, encoded).",
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("rule_id", sa.Text, nullable=False),
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sensor", sa.Text, nullable=False, server_default=""),
        sa.Column("quantity", sa.Text, nullable=False, server_default=""),
        sa.Column("severity", sa.SmallInteger, nullable=False),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("first_time", TSTZ, nullable=False),
        sa.Column("last_time", TSTZ, nullable=False),
        sa.Column("last_value", sa.Float, nullable=False, server_default="0"),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("create_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("clear_time", TSTZ),
        sa.Column("cleared_by", sa.Text, nullable=False, server_default=""),
        sa.Column("acknowledge_time", TSTZ),
        sa.Column("acknowledged_by", sa.Text, nullable=False, server_default=""),
        sa.CheckConstraint("state BETWEEN 1 AND 4", name="alerts_state_known"),
        sa.CheckConstraint("severity BETWEEN 1 AND 5", name="alerts_severity_known"),
        comment="Alerts (AlertState numbers); one active per rule, device and sensor.",
    )
    op.create_index(
        "alerts_one_active",
        "alerts",
        ["rule_id", "device_id", "sensor"],
        unique=True,
        postgresql_where=sa.text(ACTIVE),
    )
    op.create_index("alerts_device", "alerts", ["device_id", "alert_id"])
    op.create_index(
        "alerts_cleared", "alerts", ["clear_time"], postgresql_where=sa.text("clear_time IS NOT NULL")
    )
    op.create_table(
        "alert_cursors",
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("sample_time", TSTZ),
        comment="Per device: the last sequence the alert evaluator judged, and its reading's sample time.",
    )
    op.create_table(
        "alert_series_states",
        sa.Column("rule_id", sa.Text, primary_key=True),
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("sensor", sa.Text, primary_key=True),
        sa.Column("state", postgresql.JSONB, nullable=False),
        comment="What each rule's condition remembers per series between batches.",
    )
    op.create_table(
        "alert_leader",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("holder", sa.Text, nullable=False, server_default=""),
        sa.Column("since", TSTZ),
        sa.CheckConstraint("id = 1", name="alert_leader_one_row"),
        comment="The alert evaluator's fencing epoch (one row).",
    )
    op.execute("INSERT INTO alert_leader (id) VALUES (1)")
    op.create_table(
        "alert_notifications",
        sa.Column("notification_id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("alert_id", sa.BigInteger, nullable=False),
        sa.Column("receiver", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("create_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("delivered_time", TSTZ),
        sa.Column("dead_time", TSTZ),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        comment="The alert notification outbox: one row per change and receiver, delivered with retries.",
    )
    op.create_index(
        "alert_notifications_due",
        "alert_notifications",
        ["next_attempt_time"],
        postgresql_where=sa.text("delivered_time IS NULL AND dead_time IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("alert_notifications")
    op.drop_table("alert_leader")
    op.drop_table("alert_series_states")
    op.drop_table("alert_cursors")
    op.drop_index("alerts_cleared", table_name="alerts")
    op.drop_index("alerts_device", table_name="alerts")
    op.drop_index("alerts_one_active", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
