"""Settings shared by the services: where the database is and how data ages.

Every setting is an environment variable `SENSORMESH_<NAME>` (or a line in a
`.env` file in the working directory). Each service extends `StorageSettings`
with its own; nothing else in the code reads the environment.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SENSORMESH_"


class TimescaleMode(StrEnum):
    """Whether the schema uses TimescaleDB."""

    AUTO = "auto"  # use it when the server has the extension
    REQUIRE = "require"  # fail the migration without it (production)
    OFF = "off"  # plain PostgreSQL partitioning even if it is available


class SensormeshSettings(BaseSettings):
    """Base for every settings class: one prefix, one `.env` file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )


class StorageSettings(SensormeshSettings):
    """Where readings live and how long they stay."""

    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "PostgreSQL URL, e.g. postgresql://sensormesh:...@db:5432/sensormesh. "
            "Unset: start the embedded PostgreSQL under data_dir."
        ),
    )
    data_dir: Path = Field(
        default=Path(".sensormesh"),
        description="Folder for the embedded PostgreSQL's data and other local state.",
    )
    timescaledb: TimescaleMode = Field(
        default=TimescaleMode.AUTO,
        description=(
            "Use TimescaleDB hypertables at the first migration. auto: when the server preloads "
            "the extension (files without shared_preload_libraries: plain partitioning and a "
            "warning); require: fail otherwise, naming what to change; off: plain partitioning."
        ),
    )
    retention: timedelta = Field(
        default=timedelta(days=30),
        ge=timedelta(days=2),
        description=(
            "Raw readings older than this are dropped (whole chunks or partitions) and refused by "
            "ingest; at least 2 days (the rollups' refresh window ends a day inside it)."
        ),
    )
    frame_retention: timedelta = Field(
        default=timedelta(days=7),
        ge=timedelta(days=1),
        description=(
            "Camera frames (metadata and images) older than this are dropped, a day at a time, and "
            "refused by ingest; at least 1 day."
        ),
    )
    rollup_1m_retention: timedelta = Field(
        default=timedelta(days=365), description="How long 1-minute rollups stay."
    )
    rollup_1h_retention: timedelta = Field(
        default=timedelta(days=5 * 365), description="How long 1-hour rollups stay."
    )
    compress_after: timedelta = Field(
        default=timedelta(days=2), description="Chunks older than this are compressed (TimescaleDB)."
    )
    partitions_ahead: int = Field(
        default=3,
        ge=1,
        le=60,
        description="Daily partitions created ahead of today (plain PostgreSQL).",
    )
    pool_min_size: int = Field(default=2, ge=1, description="Connections a service keeps open.")
    pool_max_size: int = Field(default=10, ge=1, description="Most connections a service opens.")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        # libpq URLs may name no host (`postgresql:///db?host=/run/socket`), so
        # only the scheme is checked here; libpq reports anything else on connect.
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    def database_dsn(self) -> str | None:
        """The configured URL in clear text, or None for the embedded server."""
        return None if self.database_url is None else self.database_url.get_secret_value()


# A revoked key, a rotated token or a deleted device is refused within this; the docs promise it.
MAX_CREDENTIAL_DELAY = timedelta(seconds=10)


class ServiceSettings(StorageSettings):
    """What every service shares beyond storage: how long credentials are trusted."""

    credential_cache_ttl: timedelta = Field(
        default=timedelta(seconds=5),
        ge=timedelta(0),
        le=MAX_CREDENTIAL_DELAY,
        description=(
            "How long a looked-up API key or device token is trusted (unknown ones too); a revoked "
            "key, a rotated token or a disabled or deleted device is refused within this, at most 10 s."
        ),
    )
    stream_recheck_interval: timedelta = Field(
        default=timedelta(seconds=5),
        ge=timedelta(seconds=1),
        le=timedelta(seconds=5),
        description=(
            "How often an open stream's credential is checked again; a live feed or upload opened "
            "with a key or token that stops being valid ends within this plus the cache's time."
        ),
    )
    trust_forwarded_identity: bool = Field(
        default=False,
        description=(
            "Accept the single sign-on identity Envoy forwards in x-sensormesh-identity (after its "
            "jwt_authn filter verified the JWT). Turn on only where Envoy is the only way to the "
            "service's port (Kubernetes: the NetworkPolicies); off, the header is ignored. Operator "
            "calls only: ingest takes device tokens alone."
        ),
    )
    sso_subject_claim: str = Field(
        default="sub",
        min_length=1,
        description="The forwarded JWT claim that names the caller (the audit log's `sso:<subject>`).",
    )
    sso_role_claim: str = Field(
        default="sensormesh_role",
        min_length=1,
        description=(
            "The forwarded JWT claim that carries the role: viewer, operator or admin (a list of "
            "them: the highest). Missing or unknown: PERMISSION_DENIED naming the claim."
        ),
    )
