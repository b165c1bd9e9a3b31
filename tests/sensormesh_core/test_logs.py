"""grpc's complaint about metadata that is not UTF-8 becomes one info line without the value."""

from __future__ import annotations

import logging

from sensormesh_core.logs import ClientMetadataEncoding, LogfmtFormatter, PoolReconnect, StreamContextDetach


def test_grpc_metadata_encoding_errors_become_one_info_line_without_the_value() -> None:
    try:
        b"Bearer \xff".decode()
    except UnicodeDecodeError:
        record = logging.LogRecord(
            "grpc._cython.cygrpc", logging.ERROR, "x", 1, "Invalid encoding on %s", (b"Bearer \xff",), None
        )
        import sys

        record.exc_info = sys.exc_info()
    assert ClientMetadataEncoding().filter(record)
    line = LogfmtFormatter().format(record)
    assert "level=info" in line and "event=client_metadata_not_utf8" in line
    assert "Bearer" not in line and "Traceback" not in line and "\n" not in line


def test_other_records_pass_unchanged() -> None:
    record = logging.LogRecord("grpc", logging.ERROR, "x", 1, "event=something_else", (), None)
    assert ClientMetadataEncoding().filter(record)
    assert (record.levelno, record.getMessage()) == (logging.ERROR, "event=something_else")


def _detach_failure() -> logging.LogRecord:
    try:
        raise ValueError(
            "<Token var=<ContextVar name='current_context'> at 0x1> was created in a different Context"
        )
    except ValueError:
        import sys

        return logging.LogRecord(
            "opentelemetry.context", logging.ERROR, "x", 1, "Failed to detach context", (), sys.exc_info()
        )


def test_opentelemetry_detach_failures_of_closed_streams_are_debug_lines() -> None:
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        assert not StreamContextDetach().filter(_detach_failure())  # dropped at info
        root.setLevel(logging.DEBUG)
        record = _detach_failure()
        assert StreamContextDetach().filter(record)
        line = LogfmtFormatter().format(record)
        assert (
            "level=debug" in line and "event=otel_context_detach_failed" in line and "Traceback" not in line
        )
    finally:
        root.setLevel(level)


def test_other_detach_failures_stay_errors() -> None:
    record = logging.LogRecord(
        "opentelemetry.context", logging.ERROR, "x", 1, "Failed to detach context", (), None
    )
    assert StreamContextDetach().filter(record) and record.levelno == logging.ERROR


def test_pool_reconnect_failures_are_one_warning_line_naming_the_error() -> None:
    import sys

    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        record = logging.LogRecord(
            "asyncpg.pool", logging.WARNING, "x", 1, PoolReconnect.MESSAGE, (), sys.exc_info()
        )
    assert PoolReconnect().filter(record)
    line = LogfmtFormatter().format(record)
    assert "level=warning" in line and "event=database_pool_reconnect_failed" in line
    assert "Connect call failed" in line and "Traceback" not in line and "\n" not in line
