"""The control service's settings: where it listens, and the defaults and limits of commands.

Every field is an environment variable `SENSORMESH_<NAME>` (or a `.env` line),
on top of the storage and access settings every service shares.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, model_validator

from sensormesh_core.config import ServiceSettings


class ControlSettings(ServiceSettings):
    """Listen address, command defaults, retention and stream limits; alert evaluation and notifications."""

    control_listen: str = Field(
        default="127.0.0.1:50053",
        description="host:port the control service's gRPC server binds; port 0 picks a free one (tests).",
    )
    control_max_message_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        description="Largest gRPC request accepted; larger ones fail with RESOURCE_EXHAUSTED.",
    )
    commands_page_size: int = Field(
        default=100, ge=1, le=1_000, description="ListCommands commands per page when page_size is 0."
    )
    command_default_ttl: timedelta = Field(
        default=timedelta(hours=1),
        ge=timedelta(seconds=1),
        le=timedelta(days=30),
        description="How long a command waits for its device when SendCommand gives no expiry.",
    )
    command_default_result_timeout: timedelta = Field(
        default=timedelta(seconds=60),
        ge=timedelta(seconds=1),
        le=timedelta(days=1),
        description="How long a device has to report a result when SendCommand gives no result_timeout.",
    )
    command_retention: timedelta = Field(
        default=timedelta(days=30),
        ge=timedelta(hours=1),
        description="Finished commands are deleted this long after they finished.",
    )
    command_sweep_interval: timedelta = Field(
        default=timedelta(seconds=1),
        ge=timedelta(milliseconds=100),
        le=timedelta(minutes=1),
        description="How often overdue commands are ended (EXPIRED, TIMED_OUT): at most this late.",
    )
    command_max_watchers: int = Field(
        default=1_000,
        ge=1,
        description="WatchCommands streams one process serves; more get RESOURCE_EXHAUSTED.",
    )
    command_watch_heartbeat: timedelta = Field(
        default=timedelta(seconds=15),
        description="An idle WatchCommands stream sends an empty message this often.",
    )
    control_max_connection_age: timedelta = Field(
        default=timedelta(minutes=30),
        description="Connections are closed (GOAWAY) after this, so watch streams rebalance across replicas.",
    )
    alerts_enabled: bool = Field(
        default=True,
        description=(
            "Evaluate alert rules here (one control replica at a time leads, by a lease in PostgreSQL; "
            "false: this replica serves AlertService but never evaluates)."
        ),
    )
    alertmanager_urls: list[str] = Field(
        default_factory=list,
        description='Prometheus Alertmanagers to send alerts to, a JSON list: ["http://alertmanager:9093"].',
    )
    alert_webhook_urls: list[str] = Field(
        default_factory=list,
        description='URLs that get every alert change as signed JSON, a JSON list: ["https://chat.example/hook"].',
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None,
        description="The shared secret webhooks are signed with (HMAC-SHA256); required with alert_webhook_urls.",
    )
    alert_link_base: str = Field(
        default="http://127.0.0.1:8080",
        description="Where people reach the API: notifications link to <this>/v1/alerts/<id>.",
    )
    alert_retention: timedelta = Field(
        default=timedelta(days=90),
        ge=timedelta(days=1),
        description="Cleared alerts, and delivered or dead notifications, are deleted this long after.",
    )
    alert_notification_give_up: timedelta = Field(
        default=timedelta(hours=24),
        ge=timedelta(minutes=1),
        description="A notification not delivered within this is marked dead (kept, logged) instead of retried.",
    )
    alert_no_data_interval: timedelta = Field(
        default=timedelta(seconds=5),
        ge=timedelta(seconds=1),
        le=timedelta(minutes=5),
        description="How often no-data rules are judged (a silence is noticed at most this late).",
    )
    alert_round_interval: timedelta = Field(
        default=timedelta(milliseconds=500),
        ge=timedelta(milliseconds=50),
        le=timedelta(seconds=10),
        description=(
            "Committed batches are gathered this long and judged together in a round (a quiet "
            "device's first batch at once): the most gathering adds to an alert's latency. "
            "Shorter: sooner alerts, more CPU per reading judged."
        ),
    )
    alert_leader_retry: timedelta = Field(
        default=timedelta(seconds=2),
        ge=timedelta(milliseconds=100),
        le=timedelta(minutes=1),
        description="How often a standby control replica tries to take over alert evaluation.",
    )
    alert_watch_heartbeat: timedelta = Field(
        default=timedelta(seconds=15),
        description="An idle WatchAlerts stream sends an empty message this often.",
    )

    @model_validator(mode="after")
    def _webhooks_need_a_secret(self) -> ControlSettings:
        if self.alert_webhook_urls and self.alert_webhook_secret is None:
            raise ValueError("alert_webhook_urls needs alert_webhook_secret (webhooks are signed)")
        return self
