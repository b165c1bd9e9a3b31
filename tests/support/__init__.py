"""Test doubles and helpers shared by several test packages (and by `sensormesh bench query`
until the real ingest service drives its load)."""
