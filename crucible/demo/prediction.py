"""Rupture life of new tests from a global model file: ``crucible predict``.

A global model file is the aggregator's safetensors checkpoint: the tensors, and in its
metadata the run's ``task`` and ``model`` (JSON) and the federation's ``scaling``
(columns, mean, scale, dropped). That is everything needed to turn a new table's rows
into predictions with the same fill rules, transforms and scaling the federation used.

    crucible predict --model demo-output/global-model.safetensors --input new.csv \\
        [--output predictions.csv]

The output is the input table with two columns added: ``predicted_log10_<target>`` and
``predicted_<target>`` (hours, for the creep task). A feature column the model needs
and the table lacks is refused by name. The measured target, when present, is ignored.

Not here: uncertainty estimates, or a check that new rows lie inside the training range.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crucible.data import Scaling, prepare, read_table
from crucible.demo.baselines import FittedModel, predict
from crucible.errors import InputError
from crucible.spec import Model, Task
from crucible.tensors import payload_digest, read_file, read_metadata

# prepare() reads the target column too; new rows have none, so a neutral stand-in.
TARGET_STAND_IN = 1.0


@dataclass(frozen=True)
class GlobalModel:
    """A global model file, read: the task it was trained for and the fitted model."""

    task: Task
    fitted: FittedModel
    digest: str
    metadata: dict[str, str]


def load(path: Path) -> GlobalModel:
    """Read a global model file; refuse one without task, model and scaling metadata."""
    path = Path(path)
    try:
        weights = read_file(path)
        metadata = read_metadata(path)
    except (OSError, ValueError) as error:
        raise InputError(
            f"{path}: cannot be read as a safetensors model: {error}"
        ) from error
    missing = [k for k in ("task", "model", "scaling") if not metadata.get(k)]
    if missing:
        raise InputError(
            f"{path}: expected metadata {missing} in the model file, found keys "
            f"{sorted(metadata)}; use a global model written by the aggregator"
        )
    try:
        task = Task.model_validate_json(metadata["task"])
        model = Model.model_validate_json(metadata["model"])
        scaling = Scaling(**json.loads(metadata["scaling"]))
    except (ValueError, TypeError) as error:
        raise InputError(f"{path}: metadata cannot be read: {error}") from error

    order = json.loads(metadata.get("order", "[]")) or list(weights)
    ordered = {name: weights[name] for name in order}
    fitted = FittedModel(
        model=model, weights=ordered, scaling=scaling, loss=0.0, seconds=0.0
    )
    return GlobalModel(
        task=task, fitted=fitted, digest=payload_digest(ordered), metadata=metadata
    )


def predict_table(
    model: GlobalModel, frame: pd.DataFrame, *, source: str
) -> pd.DataFrame:
    """``frame`` with the predicted target (transformed and in its own unit) added."""
    task = model.task
    missing = [c for c in task.features if c not in frame.columns]
    if missing:
        raise InputError(
            f"{source}: missing feature column(s) {missing} that the model needs; "
            "add them (blank cells follow the model's fill rules) and predict again",
            reason="MissingColumn",
        )
    rows = frame.assign(**{task.target: TARGET_STAND_IN})
    predicted = predict(model.fitted, prepare(rows, task, source=source))

    result = frame.copy()
    if task.target_transform == "log10":
        result[f"predicted_log10_{task.target}"] = predicted
        result[f"predicted_{task.target}"] = np.power(10.0, predicted)
    else:
        result[f"predicted_{task.target}"] = predicted
    return result


def predict_main(argv: list[str]) -> int:
    """``crucible predict``: predictions for the rows of a CSV or Parquet table."""
    parser = argparse.ArgumentParser(
        prog="crucible predict", description="Predict rupture life with a global model."
    )
    parser.add_argument("--model", required=True, type=Path, help="global model file")
    parser.add_argument(
        "--input", required=True, type=Path, help="CSV or Parquet table"
    )
    parser.add_argument("--output", type=Path, help="CSV to write (default: stdout)")
    args = parser.parse_args(argv)

    model = load(args.model)
    result = predict_table(model, read_table(args.input), source=str(args.input))
    if args.output:
        result.to_csv(args.output, index=False)
        print(
            json.dumps(
                {
                    "rows": len(result),
                    "output": str(args.output),
                    "model_digest": model.digest,
                }
            )
        )
    else:
        result.to_csv(sys.stdout, index=False)
    return 0
