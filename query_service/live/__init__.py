"""Live feeds: one LISTEN connection per process, read-back of committed rows,
fan-out to subscribers through bounded queues."""
