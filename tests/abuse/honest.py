"""Light participants that train honestly on real creep rows, and one that poisons.

They speak the protocol like :class:`tests.lightclient.LightClient` but report real
statistics, train with :func:`crucible.models.train` and evaluate the global model on
their held-out heats, so the run's RMSE means what it means in production. A poisoner
trains honestly too, then sends its change multiplied by a factor: boosted (model
replacement) when the factor is large, sign-flipped when it is negative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crucible import data as tables
from crucible import models
from crucible import spec as specs
from crucible.client import receive_tensors
from crucible.protocol import pb
from crucible.tensors import Weights
from tests.federation import CREEP
from tests.lightclient import LightClient


def split_by_heat(names: list[str], *, seed: int = 0) -> dict[str, tuple]:
    """Creep rows dealt to ``names`` by heat, each with 20% of its heats held out."""
    frame = pd.read_csv(CREEP)
    heat = frame["heat"].fillna(frame["alloy_id"]).astype(str)
    keys = heat.unique()
    rng = np.random.default_rng(seed)
    owner = dict(
        zip(rng.permutation(keys), np.arange(len(keys)) % len(names), strict=True)
    )
    held = dict(zip(keys, rng.random(len(keys)) < 0.2, strict=True))
    dealt = {}
    for index, name in enumerate(names):
        mine = heat.map(owner) == index
        out = heat.map(held)
        dealt[name] = (frame[mine & ~out], frame[mine & out])
    return dealt


class HonestClient(LightClient):
    """Trains on its own rows; with ``poison`` it sends poison times its change."""

    def __init__(self, name, address, files, *, train, evaluation, poison=0.0):
        super().__init__(address, files)
        self.name = name
        self.frames = (train, evaluation)
        self.poison = poison
        self.spec: specs.RunSpec | None = None

    def prepare(self, spec: specs.RunSpec) -> None:
        self.spec = spec
        train, evaluation = self.frames
        self.train_rows = tables.prepare(train, spec.task, source="train")
        self.eval_rows = tables.prepare(evaluation, spec.task, source="evaluation")

    def report_real_statistics(self, run_id: str) -> None:
        sums = tables.statistics(self.train_rows)
        self.stub.ReportStatistics(
            pb.StatisticsReport(
                run_id=run_id,
                rows=self.train_rows.rows,
                columns=[
                    pb.ColumnStatistics(
                        column=c, count=s.count, sum=s.sum, sum_squares=s.sum_squares
                    )
                    for c, s in sums.items()
                ],
            ),
            timeout=10,
        )

    def model(self, task: pb.Task, round_number: int) -> Weights:
        stream = self.stub.FetchModel(
            pb.ModelRequest(run_id=task.run_id, round=round_number), timeout=60
        )
        return receive_tensors(stream, source="global model")[0]

    def train_round(self, task: pb.Task) -> pb.UpdateReceipt:
        assert self.spec is not None
        scaling = scaling_of(task.scaling)
        base = self.model(task, task.round - 1)
        inputs, target = tables.design(self.train_rows, scaling)
        result = models.train(
            self.spec.model,
            base,
            inputs,
            target,
            epochs=self.spec.local_epochs,
            batch_size=self.spec.batch_size,
            learning_rate=self.spec.learning_rate,
            seed=models.seed_for(self.spec.seed, task.round, self.name),
        )
        held_in, held_target = tables.design(self.eval_rows, scaling)
        predicted = models.predict(self.spec.model, result.weights, held_in)
        validation = float(np.mean((predicted - held_target) ** 2))
        sent = result.weights
        if self.poison:
            sent = {
                k: (base[k] + self.poison * (v - base[k])).astype(v.dtype)
                for k, v in result.weights.items()
            }
        return self.send(
            task,
            sent,
            samples=result.samples,
            metrics={"train_loss": result.loss, "validation_loss": validation},
        )

    def evaluate_round(self, task: pb.Task) -> None:
        assert self.spec is not None
        scaling = scaling_of(task.scaling)
        weights = self.model(task, task.round)
        inputs, _ = tables.design(self.eval_rows, scaling)
        predicted = tables.unscale_target(
            models.predict(self.spec.model, weights, inputs), scaling
        )
        errors = predicted - self.eval_rows.target
        self.stub.ReportEvaluation(
            pb.EvaluationReport(
                run_id=task.run_id,
                round=task.round,
                model_digest=task.model_digest,
                rows=len(errors),
                sum_squared_error=float((errors**2).sum()),
                sum_absolute_error=float(np.abs(errors).sum()),
            ),
            timeout=10,
        )


def scaling_of(message: pb.Scaling) -> tables.Scaling:
    return tables.Scaling(
        list(message.columns),
        list(message.mean),
        list(message.scale),
        list(message.dropped),
    )
