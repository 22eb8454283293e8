"""FedAdam: Adam on the server, over the average of the participants' updates.

Reddi et al., "Adaptive Federated Optimization", ICLR 2021. The pseudo-gradient is the
sample-weighted mean of local models minus the global model; the server keeps Adam's
first and second moments (``m``, ``v``) as its state, saved with every checkpoint so
a resumed run continues with the same moments.

Parameters: ``eta`` (server learning rate, default 0.01), ``beta1`` (0.9), ``beta2``
(0.99), ``tau`` (adaptivity, 1e-3), as in the paper's notation.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from crucible.strategies import Update, check_parameters
from crucible.strategies.fedavg import weighted_mean
from crucible.tensors import Weights


class FedAdam:
    """Server-side Adam over the weighted mean pseudo-gradient (Reddi et al., 2021)."""

    name = "fedadam"

    def __init__(self, parameters: dict[str, float]) -> None:
        self.parameters = check_parameters(
            self.name,
            parameters,
            {"eta": 0.01, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3},
        )

    def participant_config(self) -> dict[str, float]:
        return {}

    def aggregate(
        self, global_weights: Weights, updates: Iterable[Update], state: Weights
    ) -> tuple[Weights, Weights]:
        p = self.parameters
        averaged = weighted_mean(updates, by_samples=True)
        new_weights: Weights = {}
        new_state: Weights = {}
        for name, current in global_weights.items():
            delta = averaged[name].astype(np.float64) - current.astype(np.float64)
            m = state.get(f"m/{name}", np.zeros_like(delta)).astype(np.float64)
            v = state.get(f"v/{name}", np.zeros_like(delta)).astype(np.float64)
            m = p["beta1"] * m + (1 - p["beta1"]) * delta
            v = p["beta2"] * v + (1 - p["beta2"]) * delta**2
            step = p["eta"] * m / (np.sqrt(v) + p["tau"])
            new_weights[name] = (current.astype(np.float64) + step).astype(
                current.dtype
            )
            new_state[f"m/{name}"] = m
            new_state[f"v/{name}"] = v
        return new_weights, new_state
