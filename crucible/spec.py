"""The run spec at the edges: one pydantic model for the FederationRound's ``spec``.

The operator validates a FederationRound's spec with it, the aggregator validates every
StartRun with it, and the demo builds its runs from it. Field names are the CRD's
(camelCase); :func:`to_proto` and :func:`from_proto` convert to the wire message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crucible.errors import InputError
from crucible.protocol import pb

StrategyName = Literal[
    "fedavg",
    "mean",
    "fedprox",
    "fedadam",
    "median",
    "trimmed_mean",
    "krum",
    "evaluation_weighted",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FillRule(_Model):
    default: Literal["zero", "mean", "refuse"] = "zero"
    columns: dict[str, Literal["zero", "mean", "refuse"]] = Field(default_factory=dict)


class Transform(_Model):
    column: str
    transform: Literal["log10", "reciprocal_kelvin"]


class Task(_Model):
    features: list[str] = Field(min_length=1)
    target: str
    target_transform: Literal["none", "log10"] = Field("none", alias="targetTransform")
    fill: FillRule = Field(default_factory=FillRule)
    transforms: list[Transform] = Field(default_factory=list)
    dataset: str = ""

    @model_validator(mode="after")
    def _target_is_not_a_feature(self) -> Task:
        if self.target in self.features:
            raise ValueError(
                f"task.target {self.target!r} is also listed in task.features"
            )
        if len(set(self.features)) != len(self.features):
            raise ValueError("task.features: each column may appear once")
        return self


class Model(_Model):
    architecture: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    activation: Literal["relu", "silu", "tanh"] = "silu"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class Strategy(_Model):
    name: StrategyName = "fedavg"
    parameters: dict[str, float] = Field(default_factory=dict)


class RunSpec(_Model):
    task: Task
    model: Model = Field(default_factory=Model)
    participants: list[str] = Field(min_length=1)
    min_participants: int = Field(1, ge=1, alias="minParticipants")
    rounds: int = Field(10, ge=1, le=100_000)
    local_epochs: int = Field(1, ge=1, le=10_000, alias="localEpochs")
    batch_size: int = Field(32, ge=1, alias="batchSize")
    learning_rate: float = Field(1e-3, gt=0, alias="learningRate")
    weight_decay: float = Field(0.0, ge=0, alias="weightDecay")
    strategy: Strategy = Field(default_factory=Strategy)
    grace_seconds: float = Field(30.0, ge=0, alias="graceSeconds")
    round_timeout_seconds: float = Field(600.0, gt=0, alias="roundTimeoutSeconds")
    max_round_retries: int = Field(2, ge=0, alias="maxRoundRetries")
    initial_model_run: str = Field("", alias="initialModelRun")
    name: str = ""
    seed: int = 0

    @model_validator(mode="after")
    def _quorum_fits(self) -> RunSpec:
        if len(set(self.participants)) != len(self.participants):
            raise ValueError("participants: each organization may appear once")
        if self.min_participants > len(self.participants):
            raise ValueError(
                f"minParticipants: expected at most the {len(self.participants)} "
                f"participants, found {self.min_participants}"
            )
        return self


def parse(data: dict, *, source: str = "spec") -> RunSpec:
    """Validate a spec mapping; errors name each field, expectation and finding."""
    try:
        return RunSpec.model_validate(data)
    except ValidationError as error:
        raise InputError(
            f"{source}: {describe_errors(error)}", reason="InvalidSpec"
        ) from error


def describe_errors(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']} "
        f"(found {e.get('input')!r})"
        for e in error.errors()
    )


def to_proto(spec: RunSpec) -> pb.RunSpec:
    task = spec.task
    return pb.RunSpec(
        task=pb.TaskSpec(
            features=task.features,
            target=task.target,
            target_transform=task.target_transform,
            fill_default=task.fill.default,
            fill=task.fill.columns,
            transforms=[
                pb.FeatureTransform(column=t.column, transform=t.transform)
                for t in task.transforms
            ],
            dataset=task.dataset,
        ),
        model=pb.ModelSpec(
            architecture=spec.model.architecture,
            hidden=spec.model.hidden,
            activation=spec.model.activation,
            dropout=spec.model.dropout,
        ),
        participants=spec.participants,
        min_participants=spec.min_participants,
        rounds=spec.rounds,
        local_epochs=spec.local_epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        weight_decay=spec.weight_decay,
        strategy=pb.StrategySpec(
            name=spec.strategy.name, parameters=spec.strategy.parameters
        ),
        grace_seconds=spec.grace_seconds,
        round_timeout_seconds=spec.round_timeout_seconds,
        max_round_retries=spec.max_round_retries,
        initial_model_run=spec.initial_model_run,
        name=spec.name,
        seed=spec.seed,
    )


def from_proto(message: pb.RunSpec) -> RunSpec:
    """The validated spec of a wire message; raises InputError naming bad fields."""
    task = message.task
    data = {
        "task": {
            "features": list(task.features),
            "target": task.target,
            "targetTransform": task.target_transform or "none",
            "fill": {
                "default": task.fill_default or "zero",
                "columns": dict(task.fill),
            },
            "transforms": [
                {"column": t.column, "transform": t.transform} for t in task.transforms
            ],
            "dataset": task.dataset,
        },
        "model": {
            "architecture": message.model.architecture or "mlp",
            "hidden": list(message.model.hidden) or [64, 64],
            "activation": message.model.activation or "silu",
            "dropout": message.model.dropout,
        },
        "participants": list(message.participants),
        "minParticipants": message.min_participants or 1,
        "rounds": message.rounds,
        "localEpochs": message.local_epochs or 1,
        "batchSize": message.batch_size or 32,
        "learningRate": message.learning_rate or 1e-3,
        "weightDecay": message.weight_decay,
        "strategy": {
            "name": message.strategy.name or "fedavg",
            "parameters": dict(message.strategy.parameters),
        },
        "graceSeconds": message.grace_seconds,
        "roundTimeoutSeconds": message.round_timeout_seconds or 600.0,
        "maxRoundRetries": message.max_round_retries,
        "initialModelRun": message.initial_model_run,
        "name": message.name,
        "seed": message.seed,
    }
    return parse(data)
