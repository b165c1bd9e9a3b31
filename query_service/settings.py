"""The query service's settings: where it listens and the limits it enforces.

Every field is an environment variable `SENSORMESH_<NAME>` (or a `.env` line),
on top of the storage settings it shares with ingest.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from sensormesh_core.config import ServiceSettings


class QuerySettings(ServiceSettings):
    """Listen address, page sizes, live-feed limits and connection ageing."""

    query_listen: str = Field(
        default="127.0.0.1:50052",
        description="host:port the gRPC server binds; port 0 picks a free one (tests).",
    )
    query_max_message_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest gRPC request accepted; larger ones fail with RESOURCE_EXHAUSTED naming both sizes.",
    )
    readings_page_size: int = Field(
        default=10_000, ge=1, le=100_000, description="ListReadings points per page when page_size is 0."
    )
    devices_page_size: int = Field(
        default=100, ge=1, le=1_000, description="ListDevices devices per page when page_size is 0."
    )
    default_range: timedelta = Field(
        default=timedelta(hours=1), description="ListReadings range when start_time is unset."
    )
    max_subscribers: int = Field(
        default=1_000,
        ge=1,
        description="WatchReadings streams one process serves; more get RESOURCE_EXHAUSTED.",
    )
    subscriber_queue_size: int = Field(
        default=256,
        ge=1,
        description=(
            "Messages (one per committed batch) buffered per subscriber; when full the oldest is dropped "
            "and counted in the next message's missed_count."
        ),
    )
    frame_subscriber_queue_size: int = Field(
        default=64,
        ge=1,
        description=(
            "Frames buffered per WatchFrames subscriber; when full the oldest is dropped and counted in "
            "the next message's missed_count."
        ),
    )
    heartbeat_interval: timedelta = Field(
        default=timedelta(seconds=15), description="An idle feed sends an empty message this often."
    )
    live_order_wait: timedelta = Field(
        default=timedelta(seconds=2),
        description=(
            "How long a live feed waits for a device's commit signal that another ingest replica has "
            "not sent yet, before delivering what follows and reporting the gap as missed_count."
        ),
    )
    replay_max_age: timedelta = Field(
        default=timedelta(hours=1), description="How far back WatchReadings.start_time may reach."
    )
    max_connection_age: timedelta = Field(
        default=timedelta(minutes=30),
        description="Connections are closed (GOAWAY) after this, so long streams rebalance across replicas.",
    )
    max_connection_age_grace: timedelta = Field(
        default=timedelta(minutes=5), description="Time given to open calls after GOAWAY."
    )
    keepalive_time: timedelta = Field(
        default=timedelta(seconds=30), description="Ping an idle connection this often to find dead peers."
    )
    keepalive_timeout: timedelta = Field(
        default=timedelta(seconds=10), description="A ping unanswered this long closes the connection."
    )
