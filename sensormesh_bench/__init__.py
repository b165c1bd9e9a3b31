"""`sensormesh bench`: every measurement of the programs, in a room of its own.

It imports what it measures (the programs, the command line's Envoy launcher,
the shared library); nothing imports it, so no product package carries
benchmark code. `command.py` is the `sensormesh bench` subcommand, one
subpackage or module per benchmark (`ingest/`, `query/`, `agent.py`) and
`studies/`, the one-off measurements behind design decisions in `docs/`."""
