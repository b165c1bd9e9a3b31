"""The `sensormesh` command line and the local stack (`sensormesh up`).

It sits above the programs: it starts them (`stack/`), and speaks to their
services as an operator (`devices`, `watch`). Nothing below imports it."""
