"""The models federation is compared with: centralized (all rows pooled) and local-only.

Both are trained in this process with exactly the code the participants run
(:func:`crucible.data.prepare`, :func:`crucible.data.combine`,
:func:`crucible.models.train`) and the hyperparameters of the federated run, so the only
difference is which rows a model sees. The budget is the same: every model passes over
each of its training rows ``rounds x localEpochs`` times, as a participant does over its
own rows in the run. The centralized model scales with the statistics of all
organizations, exactly the scaling the federation agrees on; a local-only model scales
with its organization's own.

Not here: the federated model itself, which the real services train (see
:mod:`crucible.demo.federation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crucible import models
from crucible.data import Prepared, Scaling, combine, design, statistics, unscale_target
from crucible.demo.organizations import Training
from crucible.errors import InputError
from crucible.spec import Model
from crucible.tensors import Weights


@dataclass(frozen=True)
class FittedModel:
    """A trained model with the scaling it expects, ready to predict."""

    model: Model
    weights: Weights
    scaling: Scaling
    loss: float
    seconds: float


def scaling_of(tables: list[Prepared]) -> Scaling:
    """The scaling the holders of ``tables`` would agree on by sharing sums only."""
    if not tables:
        raise InputError("scaling: expected at least one table, found none")
    return combine([statistics(t) for t in tables], tables[0].columns)


def fit(tables: list[Prepared], training: Training, *, seed: int) -> FittedModel:
    """Train one model on the rows of ``tables`` pooled, with the shared budget."""
    scaling = scaling_of(tables)
    designs = [design(t, scaling) for t in tables]
    inputs = np.concatenate([x for x, _ in designs])
    target = np.concatenate([y for _, y in designs])

    start = models.initial_weights(training.model, inputs.shape[1], seed)
    result = models.train(
        training.model,
        start,
        inputs,
        target,
        epochs=training.epochs,
        batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
        seed=models.seed_for(seed, "train"),
    )
    return FittedModel(
        model=training.model,
        weights=result.weights,
        scaling=scaling,
        loss=result.loss,
        seconds=result.seconds,
    )


def predict(fitted: FittedModel, table: Prepared) -> np.ndarray:
    """log10 rupture hours (the target after its transform) for a table's rows."""
    inputs, _ = design(table, fitted.scaling)
    scaled = models.predict(fitted.model, fitted.weights, inputs)
    return unscale_target(scaled, fitted.scaling)
