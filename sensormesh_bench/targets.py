"""A benchmark figure's goal, checked against figures measured in the same run."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Target:
    """A figure's goal, e.g. Target("samples_per_s", ">=", 300_000)."""

    figure: str
    op: Literal[">=", "<=", "<"]
    value: float

    def met(self, figures: dict[str, Any]) -> bool | None:
        got = figures.get(self.figure)
        if not isinstance(got, int | float):
            return None
        return _COMPARE[self.op](got, self.value)
