"""The demo's experiment: federated against local-only, centralized and Larson-Miller.

For each fold the organizations' tables are split by heat into training and held-out
rows and written as files, one pair per organization and fold, which the participants
serve by name (``fold1`` ... ``foldK``; ``all`` for the final model). Then two things
happen side by side:

- the real federation trains one run per fold (the run's task picks the fold's table),
  with every participant in the quorum and a fixed seed, and the demo scores each run's
  global model on the held-out rows itself;
- this process trains the baselines on the same folds with the same code and budget.

After the folds, one more run trains the global model on all rows: the model a
consortium would use, written to the output directory with its scaling and digest.
Everything is seeded: the same data, settings and seed give the same numbers.

Limitations: the final model has no held-out rows (its run evaluates on the rows it
trains on); the fold results stand for its accuracy. The wall time is mostly fixed
costs of six Python processes importing torch, and rounds of a few tenths of a second,
so a busy machine slows the demo roughly in proportion to its load.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from crucible import models
from crucible.data import Prepared, prepare, read_table
from crucible.demo import baselines, folds, larson_miller, plots, prediction, report
from crucible.demo.federation import Federation
from crucible.demo.organizations import Consortium, assign, load
from crucible.demo.progress import Progress
from crucible.errors import CrucibleError, InputError
from crucible.protocol import pb
from crucible.spec import RunSpec
from crucible.tensors import file_digest

TABLE = "netl_9cr_creep_rupture.csv"
CONSORTIUM = "organizations.yaml"
TEMPERATURE = "test_temp_C"
STRESS = "stress_MPa"
FINAL = "all"


@dataclass
class Options:
    data: Path
    output: Path
    rounds: int | None = None
    max_folds: int | None = None
    hold: bool = False


@dataclass
class Split:
    """One fold's rows, per organization, as prepared tables and as files."""

    fold: int
    train: dict[str, Prepared]
    test: dict[str, Prepared]
    train_rows: dict[str, pd.DataFrame]
    test_rows: dict[str, pd.DataFrame]


@dataclass
class FederatedResults:
    """What the federation thread hands back."""

    predictions: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    rounds: list[dict] = field(default_factory=list)
    final_model: dict | None = None
    seconds: float = 0.0
    error: BaseException | None = None


def run(options: Options, progress: Progress | None = None) -> dict:
    """Run the whole demo into ``options.output``; return the report."""
    started = time.perf_counter()
    torch.set_num_threads(1)
    consortium = load(options.data / CONSORTIUM)
    if options.rounds:
        training = consortium.training.model_copy(update={"rounds": options.rounds})
        consortium = consortium.model_copy(update={"training": training})
    frame = read_table(options.data / TABLE)
    owners = assign(frame, consortium, source=str(options.data / TABLE)).organization
    fold_of_row = folds.assign(
        frame[folds.HEAT_COLUMN], owners, folds=consortium.folds, seed=consortium.seed
    )
    evaluated = list(range(1, consortium.folds + 1))[: options.max_folds]
    progress = progress or Progress(folds=len(evaluated))

    # The organizations' own tables, a pair of files per fold, as each would hold them.
    output = options.output
    work = output / "work"
    shutil.rmtree(work, ignore_errors=True)
    splits, datasets = write_tables(
        frame, owners, fold_of_row, consortium, work, evaluated
    )
    progress.note(
        f"{len(consortium.names)} organizations, {len(frame)} tests, "
        f"{frame[folds.HEAT_COLUMN].nunique()} heats, {len(evaluated)} folds by heat"
    )

    federation = Federation(work, datasets)
    results = FederatedResults()
    with federation:
        progress.note(
            f"federation up: aggregator {federation.address}, "
            f"{len(consortium.names)} participants over mutual TLS"
        )
        if options.hold:
            # Written at once, so a scraper can watch the rounds as they happen.
            endpoints = output / "endpoints.json"
            endpoints.write_text(json.dumps(federation.endpoints(), indent=2) + "\n")
            progress.note(f"metrics addresses in {endpoints}")
        worker = threading.Thread(
            target=federate,
            args=(federation, consortium, splits, results, progress, output),
            name="federation",
            daemon=True,
        )
        federation_started = time.perf_counter()
        worker.start()

        # The baselines train here while the services train the federated models.
        baseline_started = time.perf_counter()
        local_predictions = {
            s.fold: train_baselines(s, consortium)
            for s in splits_with_progress(splits, progress)
        }
        baseline_seconds = time.perf_counter() - baseline_started
        worker.join()
        if results.error is not None:
            raise results.error
        results.seconds = time.perf_counter() - federation_started

        predictions = assemble(
            splits, results.predictions, local_predictions, consortium.names
        )
        timings = {
            "federation_seconds": results.seconds,
            "baselines_seconds": baseline_seconds,
        }
        settings = {
            "folds": len(evaluated),
            "seed": consortium.seed,
            "model": consortium.training.model.model_dump(),
            "rounds": consortium.training.rounds,
            "localEpochs": consortium.training.local_epochs,
            "epochs": consortium.training.epochs,
            "batchSize": consortium.training.batch_size,
            "learningRate": consortium.training.learning_rate,
            "weightDecay": consortium.training.weight_decay,
            "strategy": consortium.training.strategy.name,
            "features": consortium.task.features,
        }
        predictions.to_csv(output / "predictions.csv", index=False)
        plots.loss_per_round(results.rounds, output / "loss_per_round.png")
        plots.predicted_against_measured(
            predictions, output / "predicted_vs_measured.png"
        )
        timings["total_seconds"] = time.perf_counter() - started
        built = report.build(
            predictions,
            organizations=consortium.names,
            rounds=results.rounds,
            timings=timings,
            settings=settings,
            final_model=results.final_model,
        )
        report.write(built, output)
        progress.note(
            f"federated RMSE {built['federated']['all']['rmse']:.3f}, centralized "
            f"{built['centralized']['all']['rmse']:.3f}, Larson-Miller "
            f"{built['larson_miller']['all']['rmse']:.3f} (log10 h); report in "
            f"{output / 'report.md'}"
        )

        if options.hold:
            hold(federation, progress)
    return built


def hold(federation: Federation, progress: Progress) -> None:
    """Keep the services and their /metrics up until Ctrl-C or until one exits."""
    progress.note("holding the services; Ctrl-C stops them")
    try:
        federation.wait()
    except KeyboardInterrupt:
        progress.note("stopping the services")


def write_tables(
    frame: pd.DataFrame,
    owners: pd.Series,
    fold_of_row: np.ndarray,
    consortium: Consortium,
    work: Path,
    evaluated: list[int],
) -> tuple[list[Split], dict[str, dict[str, dict[str, str]]]]:
    """Each organization's per-fold train and held-out files and prepared tables."""
    task = consortium.task
    datasets: dict[str, dict[str, dict[str, str]]] = {n: {} for n in consortium.names}
    splits = []
    for fold in evaluated:
        split = Split(fold, {}, {}, {}, {})
        for name in consortium.names:
            mine = (owners == name).to_numpy()
            directory = work / "tables" / name
            directory.mkdir(parents=True, exist_ok=True)
            train_rows = frame[mine & (fold_of_row != fold)]
            test_rows = frame[mine & (fold_of_row == fold)]
            paths = {
                "train": directory / f"fold{fold}-train.csv",
                "evaluation": directory / f"fold{fold}-test.csv",
            }
            train_rows.to_csv(paths["train"], index=False)
            test_rows.to_csv(paths["evaluation"], index=False)
            datasets[name][f"fold{fold}"] = {k: str(v) for k, v in paths.items()}
            split.train[name] = prepare(train_rows, task, source=str(paths["train"]))
            split.test[name] = prepare(test_rows, task, source=str(paths["evaluation"]))
            split.train_rows[name] = train_rows
            split.test_rows[name] = test_rows
        splits.append(split)

    # The final model trains on every row an organization holds.
    for name in consortium.names:
        path = work / "tables" / name / f"{FINAL}.csv"
        frame[(owners == name).to_numpy()].to_csv(path, index=False)
        datasets[name][FINAL] = {"train": str(path), "evaluation": str(path)}
    return splits, datasets


def run_spec(consortium: Consortium, dataset: str) -> RunSpec:
    """The run of one fold: every organization, all in the quorum, a fixed seed."""
    training = consortium.training
    return RunSpec(
        name=f"demo/{dataset}",
        task=consortium.task.model_copy(update={"dataset": dataset}),
        model=training.model,
        participants=consortium.names,
        min_participants=len(consortium.names),
        rounds=training.rounds,
        local_epochs=training.local_epochs,
        batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
        strategy=training.strategy,
        # Everyone is on this machine: no waiting for stragglers after the quorum.
        grace_seconds=0.0,
        round_timeout_seconds=300.0,
        max_round_retries=0,
        seed=consortium.seed,
    )


def follow(
    federation: Federation,
    consortium: Consortium,
    dataset: str,
    progress: Progress,
    label: str,
) -> pb.RunStatus:
    """Start one run and follow it to its end; refuse anything but success."""
    spec = run_spec(consortium, dataset)
    shown = 0
    final: pb.RunStatus | None = None
    for status in federation.run(f"demo-{dataset}", spec):
        final = status
        for metrics in status.rounds[shown:]:
            progress.round_completed(
                label=label,
                round_number=metrics.round,
                rounds=spec.rounds,
                loss=metrics.train_loss,
            )
        shown = max(shown, len(status.rounds))
    assert final is not None
    if final.phase != "Succeeded":
        federation.check_alive()
        raise CrucibleError(
            f"run {final.run_id} ({dataset}) ended {final.phase}: {final.reason}: "
            f"{final.message}; the service logs are in {federation.directory / 'logs'}"
        )
    return final


def round_table(status: pb.RunStatus) -> list[dict]:
    return [
        {
            "round": r.round,
            "train_loss": r.train_loss,
            "eval_loss": r.eval_loss,
            "eval_rmse": r.eval_rmse,
            "participants": r.participants,
            "seconds": r.seconds,
            "update_bytes": r.update_bytes,
        }
        for r in status.rounds
    ]


def federate(
    federation: Federation,
    consortium: Consortium,
    splits: list[Split],
    results: FederatedResults,
    progress: Progress,
    output: Path,
) -> None:
    """The federation thread: one run per fold, then the final model on all rows."""
    try:
        for split in splits:
            label = f"fold {split.fold}/{len(splits)} federated"
            status = follow(
                federation, consortium, f"fold{split.fold}", progress, label
            )
            model = prediction.load(Path(status.model_path))
            results.predictions[split.fold] = {
                name: baselines.predict(model.fitted, table)
                for name, table in split.test.items()
            }
            results.rounds.append(
                {
                    "fold": split.fold,
                    "run_id": status.run_id,
                    "seconds": status.finished_unix - status.started_unix,
                    "rounds": round_table(status),
                }
            )
            progress.fold_completed(
                label=label,
                summary=(
                    f"{len(status.rounds)} rounds in "
                    f"{status.finished_unix - status.started_unix:.1f} s"
                ),
            )

        label = "global model on all rows"
        status = follow(federation, consortium, FINAL, progress, label)
        target = output / "global-model.safetensors"
        shutil.copyfile(status.model_path, target)
        model = prediction.load(target)
        results.rounds.append(
            {
                "fold": "final",
                "run_id": status.run_id,
                "seconds": status.finished_unix - status.started_unix,
                "rounds": round_table(status),
            }
        )
        results.final_model = {
            "path": str(target),
            "digest": model.digest,
            "file_sha256": file_digest(target),
            "run_id": status.run_id,
            "rounds": len(status.rounds),
            "scaling": {
                "columns": model.fitted.scaling.columns,
                "mean": model.fitted.scaling.mean,
                "scale": model.fitted.scaling.scale,
                "dropped": model.fitted.scaling.dropped,
            },
        }
        progress.fold_completed(label=label, summary=f"written to {target}")
    except BaseException as error:  # handed to the main thread, which raises it
        results.error = error


def splits_with_progress(splits: list[Split], progress: Progress):
    for split in splits:
        yield split
        progress.fold_completed(
            label=f"fold {split.fold}/{len(splits)} baselines",
            summary="centralized, local-only and Larson-Miller trained",
        )


def train_baselines(
    split: Split, consortium: Consortium
) -> dict[str, dict[str, np.ndarray]]:
    """Held-out predictions of the centralized, local-only and Larson-Miller models."""
    seed = consortium.seed
    names = consortium.names
    predicted: dict[str, dict[str, np.ndarray]] = {}

    pooled = baselines.fit(
        [split.train[n] for n in names],
        consortium.training,
        seed=models.seed_for(seed, split.fold, report.CENTRALIZED),
    )
    predicted[report.CENTRALIZED] = {
        n: baselines.predict(pooled, split.test[n]) for n in names
    }
    for owner in names:
        local = baselines.fit(
            [split.train[owner]],
            consortium.training,
            seed=models.seed_for(seed, split.fold, "local", owner),
        )
        predicted[report.local_column(owner)] = {
            n: baselines.predict(local, split.test[n]) for n in names
        }

    # Larson-Miller on the pooled training rows: temperature, stress and life only.
    curve = larson_miller.fit(
        np.concatenate([split.train_rows[n][TEMPERATURE].to_numpy() for n in names]),
        np.concatenate([split.train_rows[n][STRESS].to_numpy() for n in names]),
        np.concatenate([split.train[n].target for n in names]),
    )
    predicted[report.LARSON_MILLER] = {
        n: curve.predict(
            split.test_rows[n][TEMPERATURE].to_numpy(),
            split.test_rows[n][STRESS].to_numpy(),
        )
        for n in names
    }
    return predicted


def assemble(
    splits: list[Split],
    federated: dict[int, dict[str, np.ndarray]],
    others: dict[int, dict[str, dict[str, np.ndarray]]],
    names: list[str],
) -> pd.DataFrame:
    """A row per held-out test: fold, organization, measured, every model's value."""
    parts = []
    for split in splits:
        for name in names:
            rows = split.test_rows[name]
            part = pd.DataFrame(
                {
                    "fold": split.fold,
                    "organization": name,
                    "heat": rows[folds.HEAT_COLUMN].to_numpy(),
                    "grade": rows["grade"].to_numpy(),
                    "test_temp_C": rows[TEMPERATURE].to_numpy(),
                    "stress_MPa": rows[STRESS].to_numpy(),
                    "measured": split.test[name].target,
                    report.FEDERATED: federated[split.fold][name],
                }
            )
            for column, values in others[split.fold].items():
                part[column] = values[name]
            parts.append(part)
    return pd.DataFrame(pd.concat(parts, ignore_index=True))


def check_data(data: Path) -> None:
    for name in (TABLE, CONSORTIUM):
        if not (data / name).is_file():
            raise InputError(
                f"--data {data}: expected {name} there, found nothing; point --data at "
                "the directory holding the creep table and organizations.yaml"
            )
