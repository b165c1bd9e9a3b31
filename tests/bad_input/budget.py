"""Hypothesis settings for the bad-input properties: a fixed number of examples
per property, drawn the same way every run (derandomized, no example database),
so CI sees the same cases each time and the suite's length is bounded. Each
example is a real call through the stack; the budgets below keep the whole
package at a few minutes on a 2-core machine.

More examples on demand: SENSORMESH_BAD_INPUT_EXAMPLES=10 multiplies every
budget by 10 and draws at random (a different set each run), for a long soak.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_FACTOR = int(os.environ.get("SENSORMESH_BAD_INPUT_EXAMPLES", "1"))


def examples(count: int) -> settings:
    """Settings for a property that runs `count` examples (times the factor above)."""
    return settings(
        max_examples=count * _FACTOR,
        deadline=None,  # each example is a network call; the pytest timeout bounds the whole
        derandomize=_FACTOR == 1,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # the stack and its device serve every example
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
