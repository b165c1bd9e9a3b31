"""grpc's complaint about metadata that is not UTF-8 becomes one info line without the value."""

from __future__ import annotations

import logging

from sensormesh_core.logs import ClientMetadataEncoding, LogfmtFormatter


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
