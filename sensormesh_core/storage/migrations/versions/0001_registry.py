"""Device registry, sensors and series, upload offsets, latest values, dead
letters, thinning reports and input states.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TSTZ = sa.TIMESTAMP(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "sensormesh_meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        comment="Facts about this database's schema, e.g. backend = timescaledb | partitioned.",
    )
    op.create_table(
        "devices",
        sa.Column("device_id", sa.Text, primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("device_type", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("status", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("labels", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("create_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("update_time", TSTZ, nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "device_id ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$' AND length(device_id) <= 63",
            name="devices_device_id_format",
        ),
        comment="Registered devices. token_hash is SHA-256 of the bearer token; the token is never stored.",
    )
    op.create_table(
        "upload_offsets",
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("committed_sequence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("update_time", TSTZ),
        sa.CheckConstraint("committed_sequence >= 0", name="upload_offsets_sequence_nonnegative"),
        comment="Per-device high-water mark, written in the same transaction as the batch's rows.",
    )
    op.create_table(
        "sensors",
        sa.Column("sensor_id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("create_time", TSTZ, nullable=False, server_default=NOW),
        sa.UniqueConstraint("device_id", "name", name="sensors_device_name_key"),
    )
    op.create_table(
        "series",
        sa.Column("series_id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column(
            "sensor_id", sa.Integer, sa.ForeignKey("sensors.sensor_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("quantity", sa.Text, nullable=False),
        sa.Column("unit", sa.Text, nullable=False, server_default=""),
        sa.UniqueConstraint("sensor_id", "quantity", name="series_sensor_quantity_key"),
        comment="One quantity of one sensor. Typed quantities get a series too, for latest values.",
    )
    op.create_table(
        "latest_values",
        sa.Column(
            "series_id", sa.Integer, sa.ForeignKey("series.series_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("time", TSTZ, nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        comment="Last value per series, kept current by ingest so GetLatestReadings scans nothing.",
    )
    op.create_table(
        "dead_letters",
        sa.Column("dead_letter_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("receive_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("reading", sa.LargeBinary, nullable=False),
        comment="Readings refused by ingest, kept with the reason (reading = serialized sensormesh.v1.Reading).",
    )
    op.create_index("dead_letters_device_time", "dead_letters", ["device_id", "receive_time"])
    op.create_table(
        "thinning_reports",
        sa.Column("report_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sensor", sa.Text, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_sample_time", TSTZ, nullable=False),
        sa.Column("last_sample_time", TSTZ, nullable=False),
        sa.Column("batch_last_sequence", sa.BigInteger, nullable=False),
        sa.Column("report_time", TSTZ, nullable=False, server_default=NOW),
        comment="Readings a device discarded to stay within its disk budget, as it reported them.",
    )
    op.create_index("thinning_reports_device", "thinning_reports", ["device_id", "sensor"])
    op.create_table(
        "device_inputs",
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("input", sa.Text, primary_key=True),
        sa.Column("state", sa.SmallInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("error_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("observe_time", TSTZ, nullable=False),
        comment="Last reported state of each agent input (sensor driver).",
    )


def downgrade() -> None:
    for table in (
        "device_inputs",
        "thinning_reports",
        "dead_letters",
        "latest_values",
        "series",
        "sensors",
        "upload_offsets",
        "devices",
        "sensormesh_meta",
    ):
        op.drop_table(table)
