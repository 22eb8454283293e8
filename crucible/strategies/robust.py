"""Strategies that resist a few bad participants, and evaluation-weighted averaging.

- Coordinate-wise median and trimmed mean: Yin et al., "Byzantine-Robust Distributed
  Learning: Towards Optimal Statistical Rates", ICML 2018.
- (Multi-)Krum: Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
  Gradient Descent", NeurIPS 2017; Multi-Krum averages the ``m`` best-scored updates.
- Evaluation-weighted averaging, as in the NIMS-FL consortium system: each update's weight
  comes from the participant's score of its own local model on its held-out split.

Memory: unlike the running-sum strategies, median, trimmed mean and Krum need every
update of the round at once: k updates of a model of P parameters hold k·P float32
values; Krum flattens them to float64 (8·k·P bytes) and adds k² distances, computed
one row at a time (another 8·k·P bytes at the peak). Evaluation weighting streams
like FedAvg but reads each update's metrics first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from crucible.errors import InputError
from crucible.strategies import Update, check_parameters
from crucible.strategies.fedavg import accumulate
from crucible.tensors import Weights


def _stack(updates: Iterable[Update]) -> tuple[list[Update], list[Weights]]:
    listed = list(updates)
    if not listed:
        raise InputError("aggregation: no accepted update in this round")
    return listed, [u.load() for u in listed]


class Median:
    """Coordinate-wise median of the local models (Yin et al., 2018)."""

    name = "median"

    def __init__(self, parameters: dict[str, float]) -> None:
        check_parameters(self.name, parameters, {})

    def participant_config(self) -> dict[str, float]:
        return {}

    def aggregate(
        self, global_weights: Weights, updates: Iterable[Update], state: Weights
    ) -> tuple[Weights, Weights]:
        _, loaded = _stack(updates)
        return {
            name: np.median(np.stack([w[name] for w in loaded]), axis=0).astype(
                array.dtype
            )
            for name, array in global_weights.items()
        }, state


class TrimmedMean:
    """Coordinate-wise mean after dropping the ``beta`` fraction at each end (Yin et al.).

    Parameter ``beta`` (default 0.2) is the fraction trimmed from each side, rounded down
    to whole participants, at least one per side when at least three updates arrive.
    """

    name = "trimmed_mean"

    def __init__(self, parameters: dict[str, float]) -> None:
        self.parameters = check_parameters(self.name, parameters, {"beta": 0.2})
        if not 0 <= self.parameters["beta"] < 0.5:
            raise InputError(
                "strategy.parameters.beta: expected 0 <= beta < 0.5, "
                f"found {self.parameters['beta']}"
            )

    def participant_config(self) -> dict[str, float]:
        return {}

    def aggregate(
        self, global_weights: Weights, updates: Iterable[Update], state: Weights
    ) -> tuple[Weights, Weights]:
        _, loaded = _stack(updates)
        k = len(loaded)
        trim = int(self.parameters["beta"] * k)
        if trim == 0 and k >= 3 and self.parameters["beta"] > 0:
            trim = 1
        result: Weights = {}
        for name, array in global_weights.items():
            stacked = np.sort(
                np.stack([w[name] for w in loaded]).astype(np.float64), axis=0
            )
            result[name] = stacked[trim : k - trim].mean(axis=0).astype(array.dtype)
        return result, state


class Krum:
    """(Multi-)Krum (Blanchard et al., 2017).

    Each update is scored by the summed squared distances to its ``k - f - 2`` nearest
    neighbours; the ``m`` lowest-scored are averaged. Parameters: ``f`` (assumed bad
    participants, default 1) and ``m`` (updates averaged, default 1: plain Krum).
    """

    name = "krum"

    def __init__(self, parameters: dict[str, float]) -> None:
        self.parameters = check_parameters(self.name, parameters, {"f": 1, "m": 1})

    def participant_config(self) -> dict[str, float]:
        return {}

    def aggregate(
        self, global_weights: Weights, updates: Iterable[Update], state: Weights
    ) -> tuple[Weights, Weights]:
        _, loaded = _stack(updates)
        k = len(loaded)
        f = int(self.parameters["f"])
        m = max(1, min(int(self.parameters["m"]), k))
        flat = np.stack(
            [np.concatenate([w[n].reshape(-1) for n in global_weights]) for w in loaded]
        ).astype(np.float64)
        # Row by row: a k x k x P broadcast would need k times the updates' memory.
        squared = np.stack([((flat - row) ** 2).sum(axis=1) for row in flat])
        neighbours = max(1, k - f - 2)
        scores = [
            np.sort(np.delete(squared[i], i))[:neighbours].sum() for i in range(k)
        ]
        chosen = np.argsort(scores, kind="stable")[:m]
        return {
            name: np.mean([loaded[i][name] for i in chosen], axis=0).astype(array.dtype)
            for name, array in global_weights.items()
        }, state


class EvaluationWeighted:
    """Weights from each participant's held-out score of its own local model.

    Participants report ``validation_loss`` (lower is better) with every update. With
    ``higher_is_better`` = 1 the metric named is a score (higher is better) instead.
    Losses weigh as 1/loss, scores as the score itself (negatives count as 0); either
    way the weights are normalized to sum to one. An update without the metric, or
    with a loss that is not positive, weighs zero rather than failing the round; when
    no update has a usable score, all weigh the same.

    The scores are the participants' own: one that lies about its loss buys weight.
    This is a rule for trusted members of differing quality, not a defence. Parameter
    ``metric_is_r2`` = 1 reads ``validation_r2`` as the score.
    """

    name = "evaluation_weighted"

    def __init__(self, parameters: dict[str, float]) -> None:
        self.parameters = check_parameters(
            self.name, parameters, {"higher_is_better": 0, "metric_is_r2": 0}
        )

    def participant_config(self) -> dict[str, float]:
        return {}

    def weights(self, updates: list[Update]) -> list[float]:
        """The normalized weight of each update, in order; they sum to one."""
        key = "validation_r2" if self.parameters["metric_is_r2"] else "validation_loss"
        higher = bool(
            self.parameters["higher_is_better"] or self.parameters["metric_is_r2"]
        )
        raw: list[float] = []
        for update in updates:
            value = float(update.metrics.get(key, math.nan))
            if math.isnan(value) or (not higher and value <= 0):
                raw.append(0.0)  # no usable score: the update weighs nothing
            else:
                raw.append(max(value, 0.0) if higher else 1.0 / value)
        total = sum(raw)
        if total <= 0:
            return [1.0 / len(raw)] * len(raw)
        return [r / total for r in raw]

    def aggregate(
        self, global_weights: Weights, updates: Iterable[Update], state: Weights
    ) -> tuple[Weights, Weights]:
        listed = list(updates)
        if not listed:
            raise InputError("aggregation: no accepted update in this round")
        sums = {
            n: np.zeros(a.shape, dtype=np.float64) for n, a in global_weights.items()
        }
        for weight, update in zip(self.weights(listed), listed, strict=True):
            for name, array in update.load().items():
                accumulate(sums[name], array, weight)
        return {n: s.astype(global_weights[n].dtype) for n, s in sums.items()}, state
