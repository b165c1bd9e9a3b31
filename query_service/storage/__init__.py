"""The query service's SQL: series catalogue, history, latest values and the
read-back of committed readings for live feeds. Servicers call these; no SQL
lives in a handler."""
