"""Which database errors mean "the database is away for now", not a bug.

Callers catch these, report UNAVAILABLE (the client retries, maybe on another
replica) and log a warning once, instead of a traceback and INTERNAL.
"""

from __future__ import annotations

import asyncpg

# Failures worth retrying on another connection or replica.
RETRYABLE_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.AdminShutdownError,
    # A pooled connection caught mid-operation by the server's shutdown: asyncpg's protocol
    # reports its own state ("cannot switch to state ..."); the next run gets a fresh one.
    asyncpg.InternalClientError,
)
