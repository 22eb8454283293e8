"""Screening a round's updates before any strategy sees them: norm outliers.

An update's norm is ||local - global||, the Euclidean length of the change it proposes.
Honest participants of one round propose changes of comparable length; a scaled or
boosted update (model replacement, Bagdasaryan et al., "How To Backdoor Federated
Learning", AISTATS 2020) stands out by orders of magnitude. An update whose norm is
above ``max_norm_ratio`` times the median norm of the round is excluded with reason
``NormOutlier``, whatever the strategy.

The setting is the strategy parameter ``max_norm_ratio`` (default 0: off). It is off
by default because organizations of very different sizes take very different numbers
of local steps, so their honest norms can differ by a large factor; a consortium sets
it once it knows its spread (10 leaves room for a tenfold spread in local steps).

Memory: one update at a time (norms only), read again by the strategy afterwards.
What this does not catch: small, well-aimed changes (sign flips of honest size, slow
drifts); the robust strategies in :mod:`crucible.strategies.robust` address those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from crucible.errors import InputError
from crucible.tensors import Weights

PARAMETER = "max_norm_ratio"


@dataclass(frozen=True)
class Outlier:
    """An excluded update: whose, its norm and the round's median norm."""

    participant: str
    norm: float
    median: float
    ratio: float


def split_parameters(parameters: dict[str, float]) -> tuple[dict[str, float], float]:
    """The strategy's own parameters, and ``max_norm_ratio`` (0 when not given)."""
    own = {k: v for k, v in parameters.items() if k != PARAMETER}
    ratio = float(parameters.get(PARAMETER, 0.0))
    if ratio != 0 and ratio < 1:
        raise InputError(
            f"strategy.parameters.{PARAMETER}: expected 0 (off) or a multiple >= 1 of "
            f"the round's median update norm, found {ratio}"
        )
    return own, ratio


def update_norm(global_weights: Weights, local: Weights) -> float:
    """||local - global|| over every tensor, in float64."""
    total = 0.0
    for name, array in global_weights.items():
        delta = np.asarray(local[name], dtype=np.float64) - array.astype(np.float64)
        total += float(np.dot(delta.reshape(-1), delta.reshape(-1)))
    return float(np.sqrt(total))


def norm_outliers(
    global_weights: Weights,
    updates: Iterable[tuple[str, Callable[[], Weights]]],
    *,
    max_ratio: float,
) -> list[Outlier]:
    """Updates whose norm exceeds ``max_ratio`` times the median norm of the round.

    ``updates`` pairs each participant with a loader of its local weights. With fewer
    than three updates the median says nothing about who is odd, so none is excluded.
    """
    if max_ratio <= 0:
        return []
    norms = {name: update_norm(global_weights, load()) for name, load in updates}
    if len(norms) < 3:
        return []
    median = float(np.median(list(norms.values())))
    floor = max(median, 1e-12)
    return [
        Outlier(name, norm, median, norm / floor)
        for name, norm in norms.items()
        if norm > max_ratio * floor
    ]
