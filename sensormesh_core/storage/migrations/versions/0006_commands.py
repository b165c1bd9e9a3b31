"""Commands to devices, and the commands each device advertises.

- `commands`: one row per command, kept after it finishes (a maintenance
  step deletes finished ones older than the retention). The state is the
  contract's CommandState number; each transition has its own timestamp
  column, so the lifecycle stays readable without a history table. Ids come
  from one identity column: they increase in the order commands are sent,
  which is the order a device receives its own.
- `device_commands`: what a device understands, replaced whenever its agent
  opens the command channel (the CommandSpec message, encoded).

The partial index holds only unfinished commands: delivery reads a device's
pending ones, and the expiry sweep finds the due ones, without scanning
history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TSTZ = sa.TIMESTAMP(timezone=True)
NOW = sa.text("now()")
UNFINISHED = "state IN (1, 2, 3)"  # QUEUED, SENT, DELIVERED


def upgrade() -> None:
    op.create_table(
        "commands",
        sa.Column("command_id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("parameters", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("state", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("creator", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False, server_default=""),
        sa.Column("create_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("expire_time", TSTZ, nullable=False),
        sa.Column("result_timeout", sa.Interval, nullable=False),
        sa.Column("send_time", TSTZ),
        sa.Column("deliver_time", TSTZ),
        sa.Column("finish_time", TSTZ),
        sa.Column("result", postgresql.JSONB),
        sa.Column("error_message", sa.Text, nullable=False, server_default=""),
        sa.Column("delivery_count", sa.Integer, nullable=False, server_default="0"),
        # W3C traceparent of the SendCommand call: delivery and result join its trace.
        sa.Column("trace_context", sa.Text, nullable=False, server_default=""),
        sa.CheckConstraint("state BETWEEN 1 AND 8", name="commands_state_known"),
        sa.CheckConstraint(
            "(state IN (1, 2, 3)) = (finish_time IS NULL)", name="commands_finished_when_final"
        ),
        comment="Commands to devices with their lifecycle (CommandState numbers), kept for the retention.",
    )
    op.create_index("commands_device", "commands", ["device_id", "command_id"])
    op.create_index(
        "commands_unfinished",
        "commands",
        ["device_id", "command_id"],
        postgresql_where=sa.text(UNFINISHED),
    )
    op.create_index(
        "commands_request_id",
        "commands",
        ["device_id", "request_id"],
        unique=True,
        postgresql_where=sa.text("request_id <> ''"),
    )
    op.create_index(
        "commands_finished", "commands", ["finish_time"], postgresql_where=sa.text("finish_time IS NOT NULL")
    )
    op.create_table(
        "device_commands",
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("spec", sa.LargeBinary, nullable=False),
        sa.Column("advertise_time", TSTZ, nullable=False, server_default=NOW),
        comment="Commands each device understands (sensormesh.v1.CommandSpec), as its agent last advertised them.",
    )


def downgrade() -> None:
    op.drop_table("device_commands")
    op.drop_table("commands")
