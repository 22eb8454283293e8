"""Aggregation strategies: how the global model is made from participants' updates.

Every strategy implements :class:`Strategy`. The aggregator hands it the round's global
weights and the accepted updates as an iterable that reads each update from disk when
asked, so running-sum strategies (FedAvg, mean, FedProx, FedAdam) hold a few models in
memory however many participants report, while robust strategies that need every update
at once say so in their docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from crucible.errors import InputError
from crucible.spec import Strategy as StrategySpec
from crucible.tensors import Weights


@dataclass
class Update:
    """One accepted update: who sent it, how many samples it saw, and its weights."""

    participant: str
    samples: int
    load: Callable[[], Weights]
    metrics: dict[str, float] = field(default_factory=dict)


class Strategy(Protocol):
    """An aggregation rule. ``state`` persists across rounds with each checkpoint."""

    name: str

    def participant_config(self) -> dict[str, float]:
        """Settings sent to participants with each training task (FedProx's mu)."""
        ...

    def aggregate(
        self, global_weights: Weights, updates: Iterable[Update], state: Weights
    ) -> tuple[Weights, Weights]:
        """The next global weights and the strategy's next state."""
        ...


def create(spec: StrategySpec) -> Strategy:
    """The strategy a run's spec names, with its parameters checked.

    Every strategy also takes ``max_norm_ratio``, applied before it by the aggregator
    (see :mod:`crucible.strategies.screening`).
    """
    from crucible.strategies import fedadam, fedavg, robust, screening

    factories: dict[str, Callable[[dict[str, float]], Strategy]] = {
        "fedavg": fedavg.FedAvg,
        "mean": fedavg.Mean,
        "fedprox": fedavg.FedProx,
        "fedadam": fedadam.FedAdam,
        "median": robust.Median,
        "trimmed_mean": robust.TrimmedMean,
        "krum": robust.Krum,
        "evaluation_weighted": robust.EvaluationWeighted,
    }
    try:
        factory = factories[spec.name]
    except KeyError:
        raise InputError(
            f"strategy.name: expected one of {sorted(factories)}, found {spec.name!r}"
        ) from None
    own, _ = screening.split_parameters(dict(spec.parameters))
    return factory(own)


def check_parameters(
    name: str, given: dict[str, float], allowed: dict[str, float]
) -> dict[str, float]:
    """``allowed`` with ``given`` applied; unknown parameter names are refused."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InputError(
            f"strategy.parameters: {name} takes {sorted(allowed) or 'no parameters'}, "
            f"found {unknown}"
        )
    return {**allowed, **given}
