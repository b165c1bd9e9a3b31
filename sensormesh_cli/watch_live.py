"""The terminal view of `sensormesh watch`: a table refreshed in place (rich's Live display).

rich is in the `local` extra; without it the command prints plain lines.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.live import Live
from rich.table import Table

from sensormesh_cli.watch_view import DeviceView

COLUMNS = ("sensor", "quantity", "value", "unit", "sample time (UTC)", "per second")


class LiveTable:
    """`with LiveTable(view) as t: ... t.refresh()`; redraws at most 4 times a second."""

    def __init__(self, view: DeviceView) -> None:
        self._view = view
        self._live = Live(self._render(), refresh_per_second=4, transient=False, auto_refresh=True)
        self._drawn = 0.0

    def _render(self) -> Table:
        table = Table(title=self._view.title(), title_justify="left", expand=False)
        for name in COLUMNS:
            table.add_column(name, justify="right" if name in ("value", "per second") else "left")
        for row in self._view.rows():
            table.add_row(*row)
        return table

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._drawn >= 0.25:  # at 100 Hz, rebuilding the table per message would be the cost
            self._drawn = now
            self._live.update(self._render())

    def __enter__(self) -> LiveTable:
        self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._live.update(self._render())
        self._live.__exit__(kind, error, trace)
