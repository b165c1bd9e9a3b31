"""Camera frames: metadata by capture time, images, cameras, the frame mark and thinning reports.

- `frames`: one row per stored frame (capture time, device, its frame
  sequence, camera, content type, size), a TimescaleDB hypertable or a
  natively range-partitioned table, like the reading tables of 0002, on the
  backend 0002 recorded. Daily chunks or partitions, so the frames'
  retention (`frame_retention`, its own setting) drops whole days.
- `frame_blobs`: the images, by device and frame sequence, partitioned the
  same way by the same capture time, so retention drops a day's images with
  its metadata. This is the PostgreSQL frame store
  (sensormesh_core/storage/frame_blobs.py); another store (S3) would leave
  the table empty. Images are stored uncompressed (STORAGE EXTERNAL): JPEG
  and PNG do not compress again, and the attempt costs CPU on every insert.
- `frame_offsets`: the device's frame mark, apart from the readings'
  `upload_offsets`, so a frame commit never waits for the readings' row lock
  nor moves their mark. A device gets its row with its first frame batch (a
  device without one is at 0), so registering a device stays as it was.
- `cameras`: what a device's frames came from, with the newest frame (kept
  by ingest in each frame transaction, newest wins), so "the latest frame"
  and GetDevice scan no frames.
- `frame_thinning_reports`: frames a device reported discarded.

No foreign keys on the partitioned tables (as for readings): deleting a
device deletes its frames explicitly (registry.delete_device).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TSTZ = sa.TIMESTAMP(timezone=True)
NOW = sa.text("now()")

# Written out (not taken from schema.py): a migration keeps meaning what it meant when it ran.
_FRAMES = """CREATE TABLE frames (
  time timestamptz NOT NULL,
  sequence bigint NOT NULL,
  device_id text NOT NULL,
  camera text NOT NULL,
  content_type text NOT NULL,
  width integer NOT NULL,
  height integer NOT NULL,
  size_bytes integer NOT NULL,
  receive_time timestamptz NOT NULL DEFAULT now()
){suffix}"""
_FRAME_BLOBS = """CREATE TABLE frame_blobs (
  time timestamptz NOT NULL,
  sequence bigint NOT NULL,
  device_id text NOT NULL,
  data bytea NOT NULL
){suffix}"""


def _timescale() -> bool:
    backend = (
        op.get_bind().exec_driver_sql("SELECT value FROM sensormesh_meta WHERE key = 'backend'").scalar()
    )
    return backend == "timescaledb"


def _partitioned_tables(timescale: bool) -> None:
    suffix = "" if timescale else " PARTITION BY RANGE (time)"
    op.execute(_FRAMES.format(suffix=suffix))
    op.execute(_FRAME_BLOBS.format(suffix=suffix))
    op.execute("ALTER TABLE frame_blobs ALTER COLUMN data SET STORAGE EXTERNAL")
    if timescale:
        for table in ("frames", "frame_blobs"):
            op.execute(
                f"SELECT create_hypertable('{table}', by_range('time', INTERVAL '1 day'), "
                "create_default_indexes => false)"
            )
    # ListFrames and replays: a device's frames over a capture-time range.
    op.execute("CREATE INDEX frames_device_time ON frames (device_id, time DESC)")
    # GetFrame by sequence (every chunk's index is probed once: the sequence carries no time),
    # and a live feed's read of the frames one commit signal names.
    op.execute("CREATE INDEX frames_device_sequence ON frames (device_id, sequence)")
    op.execute("CREATE INDEX frame_blobs_device_sequence ON frame_blobs (device_id, sequence)")


def upgrade() -> None:
    _partitioned_tables(_timescale())
    op.create_table(
        "frame_offsets",
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("committed_sequence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("update_time", TSTZ),
        sa.CheckConstraint("committed_sequence >= 0", name="frame_offsets_sequence_nonnegative"),
        comment="Per-device frame high-water mark, written in the same transaction as the frames.",
    )
    op.create_table(
        "cameras",
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("create_time", TSTZ, nullable=False, server_default=NOW),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.Column("last_capture_time", TSTZ, nullable=False),
        comment="Cameras a device uploaded frames from, with the newest frame (kept by ingest).",
    )
    op.create_table(
        "frame_thinning_reports",
        sa.Column("report_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "device_id", sa.Text, sa.ForeignKey("devices.device_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("camera", sa.Text, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first_capture_time", TSTZ, nullable=False),
        sa.Column("last_capture_time", TSTZ, nullable=False),
        sa.Column("batch_last_sequence", sa.BigInteger, nullable=False),
        sa.Column("report_time", TSTZ, nullable=False, server_default=NOW),
        comment="Frames a device discarded to stay within its disk budget, as it reported them.",
    )
    op.create_index("frame_thinning_reports_device", "frame_thinning_reports", ["device_id", "camera"])


def downgrade() -> None:
    op.drop_table("frame_thinning_reports")
    op.drop_table("cameras")
    op.drop_table("frame_offsets")
    # Dropping a partitioned parent drops its partitions; a hypertable, its chunks.
    op.execute("DROP TABLE frame_blobs")
    op.execute("DROP TABLE frames")
