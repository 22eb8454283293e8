"""A test-only fault hook: the aggregator SIGKILLs itself right after a named point.

Fault-tolerance tests must kill the aggregator at exact places in a round, which timing
from outside cannot hit. Set ``CRUCIBLE_FAULT_AFTER`` to one of the points below and the
process kills itself with SIGKILL (no cleanup, like an evicted pod) the first time it
passes that point. Unset, which is the case everywhere but in tests, ``after`` does
nothing.

Points, in the order a round passes them:

- ``update_recorded``: an update was stored and recorded (collecting).
- ``aggregated``: the strategy computed the new global model, nothing written yet.
- ``checkpoint_written``: checkpoint files are on disk, the round not yet recorded.
- ``round_recorded``: the round is committed, the run not yet moved to evaluating.
- ``run_advanced``: the run's new stage is committed too, the round's stored update
  files not yet deleted.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "update_recorded",
    "aggregated",
    "checkpoint_written",
    "round_recorded",
    "run_advanced",
)
_ARMED = os.environ.get("CRUCIBLE_FAULT_AFTER", "")
if _ARMED and _ARMED not in POINTS:
    raise ValueError(
        f"CRUCIBLE_FAULT_AFTER: expected one of {', '.join(POINTS)}, found {_ARMED!r}"
    )


def after(point: str) -> None:
    """SIGKILL this process if ``CRUCIBLE_FAULT_AFTER`` names ``point``."""
    if point == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
