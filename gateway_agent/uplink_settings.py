"""The uplink's settings: where the agent uploads, how it batches, and how it backs off.

Kept apart from the uplink itself, as the buffer's are (gateway_agent/buffer_settings.py),
so the agent's configuration and the README's table generated from it read the options
here; what they trade is told in gateway_agent/uplink.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from msgspec import Meta

from gateway_agent.durations import Duration
from gateway_agent.options import Options


class UplinkSettings(Options, kw_only=True, frozen=True):
    """Where and how the agent uploads."""

    target: Annotated[str, Meta(min_length=1, description="The ingest service, host:port.")] = (
        "127.0.0.1:50051"
    )
    tls: Annotated[bool, Meta(description="TLS to the ingest service; false only for loopback.")] = True
    ca_file: Annotated[Path | None, Meta(description="PEM CA bundle; unset uses the system's roots.")] = None
    gzip: Annotated[bool, Meta(description="Compress uploads (worth it on metered cellular links).")] = False
    columnar: Annotated[
        bool,
        Meta(
            description="Send readings in columns when the service says it stores them (false: always rows)."
        ),
    ] = True
    # Steady readings go out by age (100 Hz for 1 s: 100 a batch); the count caps a backlog's
    # batches, and each batch is a transaction on the server: 5,000 drains a local backlog at
    # about 80,000 readings/s where 1,000 managed 50,000 (sensormesh bench agent).
    batch_max_readings: Annotated[
        int, Meta(ge=1, le=10_000, description="A batch is sent when it holds this many readings...")
    ] = 5000
    batch_max_age: Annotated[
        Duration, Meta(description="...or when its oldest reading has waited this long.")
    ] = Duration(seconds=1)
    stream_max_batches: Annotated[
        int, Meta(ge=1, description="A stream ends (and is acknowledged) after this many batches...")
    ] = 50
    stream_max_duration: Annotated[
        Duration, Meta(description="...or this long: acknowledgements arrive at least this often.")
    ] = Duration(seconds=10)
    ack_timeout: Annotated[
        Duration, Meta(description="Wait for GetUploadOffset and for a stream's response.")
    ] = Duration(seconds=30)
    backoff_initial: Annotated[
        Duration, Meta(description="First wait before reconnecting (doubles, with jitter).")
    ] = Duration(milliseconds=500)
    backoff_max: Annotated[Duration, Meta(description="Longest wait before reconnecting.")] = Duration(
        seconds=60
    )
    refused_backoff_initial: Annotated[
        Duration,
        Meta(
            description="While the server refuses the device (disabled, deleted, token rotated): first wait..."
        ),
    ] = Duration(seconds=10)
    refused_backoff_max: Annotated[
        Duration,
        Meta(description="...and longest wait before asking again; readings stay buffered meanwhile."),
    ] = Duration(seconds=60)
