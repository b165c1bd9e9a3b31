"""The ingest service's settings: where it listens and the limits it enforces.

Every field is an environment variable `SENSORMESH_INGEST_<NAME>` (the storage
fields keep their `SENSORMESH_<NAME>` names, shared with the query service and
`sensormesh db`). Defaults suit one process on a small machine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from sensormesh_core.config import ENV_PREFIX, StorageSettings

_PREFIX = f"{ENV_PREFIX}INGEST_"


def _env(name: str) -> str:
    """The environment variable of an ingest-only setting."""
    return f"{_PREFIX}{name.upper()}"


class IngestSettings(StorageSettings):
    """Settings of `sensormesh ingest`; see README "Ingest service" for the table."""

    # Ingest-only fields are read from SENSORMESH_INGEST_<NAME>; code may pass them by name.
    model_config = SettingsConfigDict(**{**StorageSettings.model_config, "validate_by_name": True})

    listen: str = Field(
        default="127.0.0.1:50051",
        validation_alias=_env("listen"),
        description="host:port to serve gRPC on; port 0 picks a free one.",
    )
    max_batch_readings: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        validation_alias=_env("max_batch_readings"),
        description="Most readings in one UploadReadings batch or WriteReadings call.",
    )
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        validation_alias=_env("max_message_bytes"),
        description="Largest gRPC message accepted; larger ones fail with RESOURCE_EXHAUSTED.",
    )
    future_tolerance: timedelta = Field(
        default=timedelta(minutes=10),
        validation_alias=_env("future_tolerance"),
        description="How far a sample time may lie ahead of the server's clock (device clock skew).",
    )
    time_floor: datetime = Field(
        default=datetime(2020, 1, 1, tzinfo=UTC),
        validation_alias=_env("time_floor"),
        description=(
            "Sample times before this are refused: a Pi without a real-time clock boots in 1970 "
            "until NTP answers, and those readings would land in the wrong place."
        ),
    )
    notify: bool = Field(
        default=True,
        validation_alias=_env("notify"),
        description="Send the live-feed signal (pg_notify) after each commit.",
    )
    notify_window: timedelta = Field(
        default=timedelta(milliseconds=50),
        validation_alias=_env("notify_window"),
        description="Signals of one device within this window are merged into one NOTIFY.",
    )
    max_connection_age: timedelta = Field(
        default=timedelta(minutes=15),
        validation_alias=_env("max_connection_age"),
        description="Connections are asked to reconnect after this, so streams rebalance across replicas.",
    )
    max_connection_age_grace: timedelta = Field(
        default=timedelta(seconds=60),
        validation_alias=_env("max_connection_age_grace"),
        description="How long calls on an aged connection may still run before they are cut.",
    )
    keepalive_time: timedelta = Field(
        default=timedelta(minutes=2),
        validation_alias=_env("keepalive_time"),
        description="Ping an idle connection this often to find dead peers (NAT, mobile links).",
    )
    keepalive_timeout: timedelta = Field(
        default=timedelta(seconds=20),
        validation_alias=_env("keepalive_timeout"),
        description="Close a connection whose ping is unanswered for this long.",
    )
    token_cache_ttl: timedelta = Field(
        default=timedelta(seconds=10),
        validation_alias=_env("token_cache_ttl"),
        description="How long a token lookup is trusted; a disabled device is refused within this.",
    )
    pipeline_depth: int = Field(
        default=2,
        ge=1,
        le=64,
        validation_alias=_env("pipeline_depth"),
        description="Decoded batches a stream may hold while its previous batch is being written.",
    )
    maintenance_interval: timedelta = Field(
        default=timedelta(hours=1),
        validation_alias=_env("maintenance_interval"),
        description="How often partitions are created ahead and dropped past retention (plain PostgreSQL).",
    )
    shutdown_grace: timedelta = Field(
        default=timedelta(seconds=30),
        validation_alias=_env("shutdown_grace"),
        description="On SIGTERM, how long in-flight batches may take to commit before calls are cut.",
    )
    migrate_embedded: bool = Field(
        default=True,
        validation_alias=_env("migrate_embedded"),
        description="Migrate the embedded database on start (a configured database is migrated by `sensormesh db migrate`).",
    )

    @field_validator("time_floor")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @field_validator("notify_window", "future_tolerance", "keepalive_timeout", "token_cache_ttl")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator("max_connection_age", "keepalive_time", "maintenance_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("must be host:port, e.g. 0.0.0.0:50051 or [::]:50051")
        return value
