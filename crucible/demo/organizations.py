"""The demo's consortium: organizations, the task and the training settings, from YAML.

``organizations.yaml`` beside the creep data fixes who holds which steels (by the
``grade`` column), the features of the run's task and the hyperparameters every model
of the comparison shares. This module reads and checks that file and splits a table
into the organizations' rows. It does not choose the split or the hyperparameters:
the file does, with its reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crucible.errors import InputError
from crucible.spec import Model, Strategy, Task, describe_errors

GRADE_COLUMN = "grade"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Organization(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    grades: list[str] = Field(min_length=1)


class Training(_Strict):
    """Hyperparameters shared by the federated, local-only and centralized models."""

    model: Model = Field(default_factory=Model)
    rounds: int = Field(ge=1)
    local_epochs: int = Field(1, ge=1, alias="localEpochs")
    batch_size: int = Field(32, ge=1, alias="batchSize")
    learning_rate: float = Field(gt=0, alias="learningRate")
    weight_decay: float = Field(0.0, ge=0, alias="weightDecay")
    strategy: Strategy = Field(default_factory=Strategy)

    @property
    def epochs(self) -> int:
        """Passes over each training row: the budget every model gets."""
        return self.rounds * self.local_epochs


class Consortium(_Strict):
    organizations: list[Organization] = Field(min_length=2)
    task: Task
    training: Training
    folds: int = Field(5, ge=2)
    seed: int = 0

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.organizations]


@dataclass(frozen=True)
class Membership:
    """Each row's organization, in the table's row order."""

    organization: pd.Series

    def rows_of(self, name: str) -> pd.Series:
        return self.organization == name


def load(path: Path) -> Consortium:
    """The consortium described in ``path``; errors name the field and the file."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot be read as YAML: {error}") from error
    try:
        consortium = Consortium.model_validate(document)
    except ValidationError as error:
        raise InputError(f"{path}: {describe_errors(error)}") from error

    names = consortium.names
    if len(set(names)) != len(names):
        raise InputError(
            f"{path}: organizations: each name may appear once, found {names}"
        )
    grades = [g for o in consortium.organizations for g in o.grades]
    repeated = sorted({g for g in grades if grades.count(g) > 1})
    if repeated:
        raise InputError(
            f"{path}: organizations: grade(s) {repeated} are held by more than one "
            "organization; each grade belongs to exactly one"
        )
    return consortium


def assign(frame: pd.DataFrame, consortium: Consortium, *, source: str) -> Membership:
    """Each row's organization by its grade; refuses rows that no organization holds."""
    if GRADE_COLUMN not in frame.columns:
        raise InputError(f"{source}: expected a {GRADE_COLUMN!r} column, found none")
    owner = {g: o.name for o in consortium.organizations for g in o.grades}
    organization = frame[GRADE_COLUMN].map(owner)

    orphans = sorted(frame.loc[organization.isna(), GRADE_COLUMN].astype(str).unique())
    if orphans:
        raise InputError(
            f"{source}: grade(s) {orphans} belong to no organization; add them to one "
            "in organizations.yaml"
        )
    return Membership(organization=organization.astype(str))
