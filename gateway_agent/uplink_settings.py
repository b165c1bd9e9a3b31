"""The uplink's settings: where the agent uploads, how it batches, and how it backs off.

Kept apart from the uplink itself, as the buffer's are (gateway_agent/buffer_settings.py),
so the agent's configuration and the README's table generated from it read the options
here; what they trade is told in gateway_agent/uplink.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from gateway_agent.durations import Duration


class UplinkSettings(BaseModel):
    """Where and how the agent uploads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(default="127.0.0.1:50051", min_length=1, description="The ingest service, host:port.")
    tls: bool = Field(default=True, description="TLS to the ingest service; false only for loopback.")
    ca_file: Path | None = Field(default=None, description="PEM CA bundle; unset uses the system's roots.")
    gzip: bool = Field(default=False, description="Compress uploads (worth it on metered cellular links).")
    columnar: bool = Field(
        default=True,
        description="Send readings in columns when the service says it stores them (false: always rows).",
    )
    # Steady readings go out by age (100 Hz for 1 s: 100 a batch); the count caps a backlog's
    # batches, and each batch is a transaction on the server: 5,000 drains a local backlog at
    # about 80,000 readings/s where 1,000 managed 50,000 (sensormesh bench agent).
    batch_max_readings: int = Field(
        default=5000, ge=1, le=10_000, description="A batch is sent when it holds this many readings..."
    )
    batch_max_age: Duration = Field(
        default=timedelta(seconds=1), description="...or when its oldest reading has waited this long."
    )
    stream_max_batches: int = Field(
        default=50, ge=1, description="A stream ends (and is acknowledged) after this many batches..."
    )
    stream_max_duration: Duration = Field(
        default=timedelta(seconds=10),
        description="...or this long: acknowledgements arrive at least this often.",
    )
    ack_timeout: Duration = Field(
        default=timedelta(seconds=30), description="Wait for GetUploadOffset and for a stream's response."
    )
    backoff_initial: Duration = Field(
        default=timedelta(milliseconds=500),
        description="First wait before reconnecting (doubles, with jitter).",
    )
    backoff_max: Duration = Field(
        default=timedelta(seconds=60), description="Longest wait before reconnecting."
    )
    refused_backoff_initial: Duration = Field(
        default=timedelta(seconds=10),
        description="While the server refuses the device (disabled, deleted, token rotated): first wait...",
    )
    refused_backoff_max: Duration = Field(
        default=timedelta(seconds=60),
        description="...and longest wait before asking again; readings stay buffered meanwhile.",
    )
