"""The ingest service's settings: where it listens and the limits it enforces.

Every field is an environment variable `SENSORMESH_<FIELD>`: the ingest-only
ones are named `ingest_*` (`SENSORMESH_INGEST_LISTEN`), so one ConfigMap can
hold every service's settings; the storage fields are shared with the query
service and `sensormesh db`. Defaults suit one process on a small machine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import Field, field_validator

from sensormesh_core.config import ServiceSettings


class IngestSettings(ServiceSettings):
    """Settings of `sensormesh ingest`; see README "Ingest service" for the table."""

    ingest_listen: str = Field(
        default="127.0.0.1:50051",
        description="host:port to serve gRPC on; port 0 picks a free one.",
    )
    ingest_max_batch_readings: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Most readings in one UploadReadings batch or WriteReadings call.",
    )
    ingest_max_message_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest gRPC message accepted; larger ones fail with RESOURCE_EXHAUSTED.",
    )
    ingest_max_frame_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=4 * 1024 * 1024,
        description="Largest camera frame (encoded image) accepted; at most the contract's 4 MiB.",
    )
    ingest_max_batch_frames: int = Field(
        default=16,
        ge=1,
        le=1_000,
        description="Most frames in one UploadFrames batch (a batch also stays within the message limit).",
    )
    ingest_frame_rate: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Frames per second one device may upload on average (per ingest process); a faster device's "
            "stream is slowed down, not refused, so a backlog after an outage drains at this rate."
        ),
    )
    ingest_frame_burst: int = Field(
        default=100,
        ge=1,
        description="Frames a device may upload at once before ingest_frame_rate paces it.",
    )
    ingest_future_tolerance: timedelta = Field(
        default=timedelta(minutes=10),
        description="How far a sample time may lie ahead of the server's clock (device clock skew).",
    )
    ingest_time_floor: datetime = Field(
        default=datetime(2020, 1, 1, tzinfo=UTC),
        description=(
            "Sample times before this are refused: a Pi without a real-time clock boots in 1970 "
            "until NTP answers, and those readings would land in the wrong place."
        ),
    )
    ingest_command_poll_interval: timedelta = Field(
        default=timedelta(seconds=30),
        ge=timedelta(seconds=1),
        description=(
            "A command channel reads its device's pending commands this often even without a command "
            "signal (a safety net; signals deliver new commands at once)."
        ),
    )
    ingest_command_heartbeat: timedelta = Field(
        default=timedelta(seconds=30),
        ge=timedelta(seconds=1),
        le=timedelta(seconds=60),
        description=(
            "A command channel with nothing to say sends a heartbeat this often, so proxies keep it "
            "open and the device can tell a dead channel from a quiet one."
        ),
    )
    ingest_notify: bool = Field(
        default=True,
        description="Send the live-feed signal (pg_notify) after each commit.",
    )
    ingest_notify_window: timedelta = Field(
        default=timedelta(milliseconds=20),
        description=(
            "At most one NOTIFY statement per window (a device's signals within it are merged); a commit "
            "after a quiet spell is signalled at once, under steady load within this window."
        ),
    )
    ingest_max_connection_age: timedelta = Field(
        default=timedelta(minutes=15),
        description="Connections are asked to reconnect after this, so streams rebalance across replicas.",
    )
    ingest_max_connection_age_grace: timedelta = Field(
        default=timedelta(seconds=60),
        description="How long calls on an aged connection may still run before they are cut.",
    )
    ingest_keepalive_time: timedelta = Field(
        default=timedelta(minutes=2),
        description="Ping an idle connection this often to find dead peers (NAT, mobile links).",
    )
    ingest_keepalive_timeout: timedelta = Field(
        default=timedelta(seconds=20),
        description="Close a connection whose ping is unanswered for this long.",
    )
    ingest_pipeline_depth: int = Field(
        default=8,
        ge=1,
        le=64,
        description=(
            "Batches a stream may hold, decoded, while its previous batch is being written; "
            "those waiting when it is written commit together."
        ),
    )
    ingest_commit_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "Most batch transactions running at once (at most the pool's size). Batches that arrive "
            "while they all run share the next transaction, one batch per device (group commit)."
        ),
    )
    ingest_commit_group_max: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Most batches in one transaction; 1 gives every batch a transaction of its own.",
    )
    ingest_maintenance_interval: timedelta = Field(
        default=timedelta(hours=1),
        description="How often partitions are created ahead and dropped past retention (plain PostgreSQL).",
    )
    ingest_rollup_refresh_interval: timedelta = Field(
        default=timedelta(minutes=1),
        description=(
            "How often the 1-minute and 1-hour rollups are brought up to date (plain PostgreSQL; "
            "one replica at a time). TimescaleDB refreshes its continuous aggregates itself."
        ),
    )
    ingest_health_interval: timedelta = Field(
        default=timedelta(seconds=5),
        description="How often the database is checked; the service reports NOT_SERVING while it is unreachable.",
    )
    ingest_shutdown_grace: timedelta = Field(
        default=timedelta(seconds=30),
        description="On SIGTERM, how long in-flight batches may take to commit before calls are cut.",
    )
    ingest_migrate_embedded: bool = Field(
        default=True,
        description="Migrate the embedded database on start (a configured database is migrated by `sensormesh db migrate`).",
    )

    @field_validator("ingest_time_floor")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @field_validator(
        "ingest_notify_window",
        "ingest_future_tolerance",
        "ingest_keepalive_timeout",
    )
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator(
        "ingest_max_connection_age",
        "ingest_keepalive_time",
        "ingest_maintenance_interval",
        "ingest_rollup_refresh_interval",
        "ingest_health_interval",
    )
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @field_validator("ingest_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("must be host:port, e.g. 0.0.0.0:50051 or [::]:50051")
        return value
