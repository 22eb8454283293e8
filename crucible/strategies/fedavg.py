"""Weighted and plain averaging of local models: FedAvg, mean and FedProx.

FedAvg: McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017. The global model is the sample-weighted mean of the
local models. FedProx: Li et al., "Federated Optimization in Heterogeneous Networks",
MLSys 2020; it aggregates like FedAvg and adds a proximal term to the local objective
(sent to participants as ``proximal_mu``).

Memory: one float64 running sum the size of the model plus the update being read; the
weighted update is added a block at a time, without a model-sized temporary.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from crucible.errors import InputError
from crucible.strategies import Update, check_parameters
from crucible.tensors import Weights

# Elements per block when adding a weighted update to the running sum (8 MiB in float64).
BLOCK = 1 << 20


def accumulate(total: np.ndarray, array: np.ndarray, weight: float) -> None:
    """``total += weight * array`` in float64, one block at a time.

    Gives the same bits as the whole-array expression: each element is widened to
    float64, multiplied and added exactly as it would be there.
    """
    flat_total = total.reshape(-1)
    flat = array.reshape(-1)
    for start in range(0, flat.size, BLOCK):
        block = flat[start : start + BLOCK].astype(np.float64)
        block *= weight
        flat_total[start : start + BLOCK] += block


def weighted_mean(updates: Iterable[Update], *, by_samples: bool) -> Weights:
    """Mean of the updates' weights in float64, weighted by samples or equally."""
    sums: dict[str, np.ndarray] = {}
    dtypes: dict[str, np.dtype] = {}
    total = 0.0
    for update in updates:
        weight = float(update.samples) if by_samples else 1.0
        for name, array in update.load().items():
            if name not in sums:
                sums[name] = np.zeros(array.shape, dtype=np.float64)
                dtypes[name] = array.dtype
            accumulate(sums[name], array, weight)
        total += weight
    if total <= 0:
        raise InputError("aggregation: no update with a positive sample count")
    means: Weights = {}
    for name in list(sums):
        mean = sums.pop(name)
        mean /= total
        means[name] = mean.astype(dtypes[name])
    return means


class FedAvg:
    """Sample-weighted mean of the local models (McMahan et al., 2017)."""

    name = "fedavg"

    def __init__(self, parameters: dict[str, float]) -> None:
        check_parameters(self.name, parameters, {})

    def participant_config(self) -> dict[str, float]:
        return {}

    def aggregate(
        self, global_weights: Weights, updates: Iterable[Update], state: Weights
    ) -> tuple[Weights, Weights]:
        return weighted_mean(updates, by_samples=True), state


class Mean(FedAvg):
    """Unweighted mean: each organization counts the same, whatever its size."""

    name = "mean"

    def aggregate(
        self, global_weights: Weights, updates: Iterable[Update], state: Weights
    ) -> tuple[Weights, Weights]:
        return weighted_mean(updates, by_samples=False), state


class FedProx(FedAvg):
    """FedAvg aggregation with a proximal local objective (Li et al., 2020).

    Parameter ``mu`` (default 0.01) weighs the proximal term at the participants.
    """

    name = "fedprox"

    def __init__(self, parameters: dict[str, float]) -> None:
        self.parameters = check_parameters(self.name, parameters, {"mu": 0.01})
        if self.parameters["mu"] < 0:
            raise InputError(
                f"strategy.parameters.mu: expected >= 0, found {self.parameters['mu']}"
            )

    def participant_config(self) -> dict[str, float]:
        return {"proximal_mu": self.parameters["mu"]}
