"""When the server refuses the device itself: "not allowed now", not "try again soon".

Ingest answers PERMISSION_DENIED when the device is disabled (or the token
belongs to another device), UNAUTHENTICATED when the token is unknown (the
device was deleted, or its token was rotated), and NOT_FOUND when a batch
arrives for a device deleted a moment ago. None of these is fixed by the
network or by retrying quickly: an operator has to act. Until then the agent
keeps sampling into its buffer, marks nothing as sent, and asks again on the
slow `refused_backoff_*` schedule; this module decides what that state is
and logs it once when it starts, when the server's reason changes and when
uploads are allowed again, never once per retry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import grpc

log = logging.getLogger(__name__)

REFUSING_CODES = frozenset(
    {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.NOT_FOUND}
)


def is_refusal(code: grpc.StatusCode) -> bool:
    """Whether `code` means the server will not take this device's data until someone acts."""
    return code in REFUSING_CODES


@dataclass(frozen=True)
class Refusal:
    """What the server said, and since when (time.monotonic())."""

    code: grpc.StatusCode
    detail: str
    since: float


def advice(code: grpc.StatusCode, device_id: str, new_token: str) -> str:
    """What the operator should do about a refusal with `code`."""
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return (
            f"re-enable the device (sensormesh devices update {device_id} --status active), "
            f"or if the token is another device's: {new_token}"
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return f"the device was deleted: register it again and {new_token}"
    return f"the token is not (or no longer) valid: the device was deleted or its token rotated; {new_token}"


class RefusalWatch:
    """A link's refused-or-not state; logs only when it changes. `what` names the link in the
    log events (`upload_refused`, `command_channel_refused`, ...)."""

    def __init__(self, device_id: str, what: str = "upload") -> None:
        self.device_id = device_id
        self.what = what
        self.current: Refusal | None = None

    @property
    def refused(self) -> bool:
        return self.current is not None

    def is_news(self, error: grpc.aio.AioRpcError) -> bool:
        """Whether `error` starts a refusal or changes the server's reason (what `refuse` logs)."""
        current = self.current
        return current is None or (current.code, current.detail) != (error.code(), error.details() or "")

    def refuse(self, error: grpc.aio.AioRpcError, *, buffered: int, retry_s: float, new_token: str) -> None:
        """Record a refusal; logs one line if it is news (see `is_news`)."""
        if not self.is_news(error):
            return
        code, detail = error.code(), error.details() or ""
        previous = self.current
        self.current = Refusal(code, detail, previous.since if previous else time.monotonic())
        log.error(
            "event=%s_refused device_id=%s code=%s detail=%r buffered=%d retry_max_s=%g action=%r",
            self.what, self.device_id, code.name, detail, buffered, retry_s, advice(code, self.device_id, new_token),
        )  # fmt: skip

    def allow(self, *, buffered: int) -> None:
        """Uploads are acknowledged again; logs one line if they had been refused."""
        previous = self.current
        if previous is None:
            return
        self.current = None
        log.info(
            "event=%s_allowed device_id=%s refused_for_s=%.0f was=%s buffered=%d",
            self.what, self.device_id, time.monotonic() - previous.since, previous.code.name, buffered,
        )  # fmt: skip
