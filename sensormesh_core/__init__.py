"""sensormesh's shared library: settings, errors and their gRPC mapping, validation,
telemetry, logging, tokens, and (for the servers) storage: schema, migrations, the
device registry, partitions, rollups.

Every program imports it; it imports none of them, nor the command line. The part
the gateway agent uses (config, telemetry, logs, stop signals) needs only the base
dependencies: `sensormesh_core.storage` is the one room that needs the `server`
extra (asyncpg, SQLAlchemy, Alembic), and only the servers import it."""

__version__ = "0.1.0"
