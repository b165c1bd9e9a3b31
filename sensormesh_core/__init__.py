"""sensormesh's shared package: storage schema and migrations, configuration,
errors, telemetry and the `sensormesh` command. Used by the ingest service, the
query service and the gateway agent; it knows nothing of either service's RPCs."""

__version__ = "0.1.0"
