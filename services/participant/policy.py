"""What an organization accepts: which runs, how many rounds and epochs, how few rows.

The participant decides before it joins. A refusal carries a reason the run's status
shows, so the coordinator sees why an organization stayed out.
"""

from __future__ import annotations

import fnmatch

from crucible.settings import PolicySettings
from crucible.spec import RunSpec


def refusal(policy: PolicySettings, spec: RunSpec, *, rows: int) -> str | None:
    """Why the run is refused under ``policy``, or None when it is acceptable."""
    name = spec.name or "(unnamed)"
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in policy.accepted_runs):
        return (
            f"run name {name!r} matches none of the accepted patterns "
            f"{policy.accepted_runs}"
        )
    if spec.rounds > policy.max_rounds:
        return f"rounds {spec.rounds} exceeds the policy's maximum {policy.max_rounds}"
    if spec.local_epochs > policy.max_local_epochs:
        return (
            f"localEpochs {spec.local_epochs} exceeds the policy's maximum "
            f"{policy.max_local_epochs}"
        )
    if rows < policy.min_rows:
        return (
            f"the table has {rows} rows, fewer than minRows {policy.min_rows}: "
            "its sums would reveal individual tests"
        )
    return None
