"""Runs and their rounds: the aggregator's state machine.

A run moves through stages, each closing on the same rule (DESIGN.md): when every
active participant has answered, or ``graceSeconds`` after the quorum
(``minParticipants``) answered, or at ``roundTimeoutSeconds``.

    statistics -> training(1) -> evaluating(1) -> training(2) -> ... -> done

- statistics: participants report per-column counts, sums and sums of squares; the
  aggregator derives one scaling for all and writes the initial global model (round 0).
- training(r): participants fetch global model r-1, train, and send updates; each update
  is checked, written to disk and recorded. Below quorum at the deadline the attempt is
  retried up to ``maxRoundRetries`` times, then the run fails with ``QuorumNotMet``.
  At close, the strategy aggregates the stored updates, the checkpoint is written
  (temporary file, fsync, rename) and then recorded, and the round's updates deleted.
- evaluating(r): participants score global model r on their held-out rows; the pooled
  RMSE is recorded with the round.

One driver thread per active run walks the stages; gRPC handlers only record what
arrives and wake the driver. Every step is persisted before it is acted on, so a killed
aggregator resumes at the stage it was in, with the updates it had accepted.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crucible import data as tables
from crucible import spec as specs
from crucible.errors import CrucibleError, InputError, TemporaryError
from crucible.protocol import pb
from crucible.strategies import Strategy, Update, create, screening
from crucible.telemetry import logger
from crucible.tensors import (
    TensorFileWriter,
    TensorInfo,
    Weights,
    check_finite,
    check_manifest,
    describe,
    payload_digest,
    read_file,
    read_metadata,
    write_atomic,
)
from services.aggregator import faults, memory, metrics
from services.aggregator.store import Store

TERMINAL = ("Succeeded", "Failed", "Cancelled")
CHECKPOINT_RETRY_SECONDS = 5.0
STATE_UNWRITABLE = "state directory unwritable"


class Stopped(Exception):  # noqa: N818 - a signal to stop driving, not an error
    """The run reached a terminal phase while its driver waited."""


@dataclass
class Participant:
    name: str
    state: str = "Waiting"
    joined: bool = False
    removed: bool = False
    last_contact: float = 0.0
    message: str = ""

    @property
    def active(self) -> bool:
        return not self.removed and self.state != "Refused"


@dataclass
class Run:
    """In-memory mirror of one run's row, with its current global model."""

    id: str
    key: str
    spec: specs.RunSpec
    spec_message: pb.RunSpec
    phase: str = "Pending"
    stage: str = "statistics"
    reason: str = ""
    message: str = ""
    current_round: int = 0
    completed_rounds: int = 0
    attempt: int = 1
    stage_started: float = 0.0
    scaling: tables.Scaling | None = None
    model_path: str = ""
    model_digest: str = ""
    created: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    participants: dict[str, Participant] = field(default_factory=dict)
    global_weights: Weights | None = None
    global_digest: str = ""
    manifest: list[TensorInfo] = field(default_factory=list)
    strategy_state: Weights = field(default_factory=dict)
    strategy: Strategy | None = None
    round_started: float = 0.0
    revision: int = 0

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def active(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.active]


def run_id_for(key: str) -> str:
    return "run-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def scaling_json(scaling: tables.Scaling) -> str:
    return json.dumps(
        {
            "columns": scaling.columns,
            "mean": scaling.mean,
            "scale": scaling.scale,
            "dropped": scaling.dropped,
        }
    )


def scaling_from_json(text: str) -> tables.Scaling:
    raw = json.loads(text)
    return tables.Scaling(raw["columns"], raw["mean"], raw["scale"], raw["dropped"])


class Coordinator:
    """All runs of one aggregator: their state, their drivers, and what arrives."""

    def __init__(
        self,
        store: Store,
        *,
        max_update_bytes: int,
        lost_after_seconds: float,
        min_free_bytes: int = 0,
    ) -> None:
        self.store = store
        self.max_update_bytes = max_update_bytes
        self.lost_after = lost_after_seconds
        self.min_free_bytes = min_free_bytes
        self.condition = threading.Condition(threading.RLock())
        self.runs: dict[str, Run] = {}
        self.log = logger("aggregator")
        self._threads: dict[str, threading.Thread] = {}
        self._closing = False

    # ------------------------------------------------------------- lifecycle

    def resume(self) -> None:
        """Load every run from the store and restart drivers of unfinished ones."""
        for leftover in self.store.remove_temporary_files():
            self.log.info("temporary_file_removed", path=str(leftover))
        for row in self.store.query("SELECT * FROM runs ORDER BY created"):
            run = self._load(row)
            self.runs[run.id] = run
            if not run.terminal:
                self.log.info(
                    "run_resumed",
                    run=run.id,
                    stage=run.stage,
                    round=run.current_round,
                    completed=run.completed_rounds,
                )
                self._start_driver(run)
        self._export_phases()

    def close(self) -> None:
        with self.condition:
            self._closing = True
            self.condition.notify_all()
        for thread in list(self._threads.values()):
            thread.join(timeout=5)

    def _load(self, row) -> Run:
        message = pb.RunSpec.FromString(row["spec"])
        run = Run(
            id=row["id"],
            key=row["key"],
            spec=specs.from_proto(message),
            spec_message=message,
            phase=row["phase"],
            stage=row["stage"],
            reason=row["reason"],
            message=row["message"],
            current_round=row["current_round"],
            completed_rounds=row["completed_rounds"],
            attempt=row["attempt"],
            stage_started=row["stage_started"],
            scaling=scaling_from_json(row["scaling"]) if row["scaling"] else None,
            model_path=row["model_path"],
            model_digest=row["model_digest"],
            created=row["created"],
            started=row["started"],
            finished=row["finished"],
        )
        for p in self.store.query("SELECT * FROM participants WHERE run_id=?", run.id):
            run.participants[p["name"]] = Participant(
                p["name"],
                p["state"],
                bool(p["joined"]),
                bool(p["removed"]),
                p["last_contact"],
                p["message"],
            )
        if run.stage == "training" and self.store.query(
            "SELECT 1 FROM rounds WHERE run_id=? AND round=?", run.id, run.current_round
        ):
            # Killed after the round was recorded, before the run moved on: move on.
            run.completed_rounds = run.current_round
            run.stage = "evaluating"
            run.stage_started = time.time()
            run.attempt = 1
            self._save(run)
        if run.scaling is not None and not run.terminal:
            run.strategy = create(run.spec.strategy)
            self._load_global(run, run.completed_rounds)
            self.store.drop_updates(run.id, run.completed_rounds)
        run.round_started = run.stage_started
        return run

    def _load_global(self, run: Run, round_number: int) -> None:
        path = self.store.global_path(run.id, round_number)
        weights = read_file(path)
        order = json.loads(read_metadata(path).get("order", "[]")) or sorted(weights)
        run.global_weights = {name: weights[name] for name in order}
        run.manifest = describe(run.global_weights)
        run.global_digest = payload_digest(run.global_weights)
        state_path = self.store.strategy_path(run.id, round_number)
        run.strategy_state = read_file(state_path) if state_path.exists() else {}

    def _start_driver(self, run: Run) -> None:
        thread = threading.Thread(
            target=self._drive, args=(run,), name=f"driver-{run.id}", daemon=True
        )
        self._threads[run.id] = thread
        thread.start()

    # ------------------------------------------------------------- persistence

    def _save(self, run: Run) -> None:
        """Persist the run's row and participants; wake everyone waiting on changes."""
        with self.store.transaction() as db:
            db.execute(
                """UPDATE runs SET phase=?, stage=?, reason=?, message=?, current_round=?,
                   completed_rounds=?, attempt=?, stage_started=?, scaling=?, model_path=?,
                   model_digest=?, started=?, finished=? WHERE id=?""",
                (
                    run.phase,
                    run.stage,
                    run.reason,
                    run.message,
                    run.current_round,
                    run.completed_rounds,
                    run.attempt,
                    run.stage_started,
                    scaling_json(run.scaling) if run.scaling else None,
                    run.model_path,
                    run.model_digest,
                    run.started,
                    run.finished,
                    run.id,
                ),
            )
            for p in run.participants.values():
                db.execute(
                    """UPDATE participants SET state=?, joined=?, removed=?, last_contact=?,
                       message=? WHERE run_id=? AND name=?""",
                    (
                        p.state,
                        int(p.joined),
                        int(p.removed),
                        p.last_contact,
                        p.message,
                        run.id,
                        p.name,
                    ),
                )
        self._changed(run)

    def _changed(self, run: Run) -> None:
        with self.condition:
            run.revision += 1
            self.condition.notify_all()

    def _export_phases(self) -> None:
        counts = {phase: 0 for phase in ("Pending", "Running", *TERMINAL)}
        for run in self.runs.values():
            counts[run.phase] = counts.get(run.phase, 0) + 1
        for phase, count in counts.items():
            metrics.RUNS.labels(phase=phase).set(count)

    # ------------------------------------------------------------- admin

    def start_run(self, key: str, message: pb.RunSpec, *, actor: str) -> Run:
        """Create the run keyed by ``key``, or return the existing one."""
        if not key:
            raise InputError("key: expected the FederationRound's UID, found nothing")
        run_id = run_id_for(key)
        with self.condition:
            if run_id in self.runs:
                return self.runs[run_id]
            self.check_space(None, "the run is refused; start it again later")
            spec = specs.from_proto(message)
            create(spec.strategy)
            if spec.initial_model_run:
                source = self.runs.get(run_id_for(spec.initial_model_run))
                if source is None or source.phase != "Succeeded":
                    raise InputError(
                        f"initialModelRun: expected a succeeded run with key "
                        f"{spec.initial_model_run!r}, found "
                        f"{source.phase if source else 'no such run'}; the run is refused",
                        reason="InvalidSpec",
                    )
            now = time.time()
            run = Run(
                id=run_id,
                key=key,
                spec=spec,
                spec_message=specs.to_proto(spec),
                created=now,
                started=now,
                stage_started=now,
                round_started=now,
                strategy=create(spec.strategy),
            )
            run.participants = {name: Participant(name) for name in spec.participants}
            with self.store.transaction() as db:
                db.execute(
                    """INSERT INTO runs (id, key, name, spec, phase, stage, created, started,
                       stage_started) VALUES (?,?,?,?,?,?,?,?,?)""",
                    (
                        run.id,
                        key,
                        spec.name,
                        run.spec_message.SerializeToString(),
                        run.phase,
                        run.stage,
                        now,
                        now,
                        now,
                    ),
                )
                for name in spec.participants:
                    db.execute(
                        "INSERT INTO participants (run_id, name, state) VALUES (?,?,?)",
                        (run.id, name, "Waiting"),
                    )
            self.store.audit(
                actor=actor,
                action="run_started",
                run_id=run.id,
                key=key,
                name=spec.name,
                participants=spec.participants,
            )
            self.runs[run.id] = run
            self.log.info(
                "run_started",
                run=run.id,
                name=spec.name,
                rounds=spec.rounds,
                participants=len(spec.participants),
                strategy=spec.strategy.name,
            )
            self._start_driver(run)
            self._export_phases()
            return run

    def get(self, run_id: str) -> Run:
        run = self.runs.get(run_id) or self.runs.get(run_id_for(run_id))
        if run is None:
            raise InputError(
                f"run {run_id!r}: no such run on this aggregator", reason="NotFound"
            )
        return run

    def cancel(self, run_id: str, *, actor: str) -> Run:
        run = self.get(run_id)
        with self.condition:
            if not run.terminal:
                self._finish(run, "Cancelled", "Cancelled", f"cancelled by {actor}")
                self.store.audit(actor=actor, action="run_cancelled", run_id=run.id)
        return run

    def update_participants(self, run_id: str, names: list[str], *, actor: str) -> Run:
        """Remove participants from a run; adding is refused (start a new run)."""
        run = self.get(run_id)
        with self.condition:
            unknown = sorted(set(names) - set(run.participants))
            if unknown:
                raise InputError(
                    f"participants: only removals are allowed after start; {unknown} "
                    f"are not in the run's list {sorted(run.participants)}",
                    reason="InvalidSpec",
                )
            remaining = [
                p
                for p in run.participants.values()
                if p.name in names and not p.removed
            ]
            if len(remaining) < run.spec.min_participants and not run.terminal:
                raise InputError(
                    f"participants: {len(remaining)} would remain, fewer than the run's "
                    f"minParticipants {run.spec.min_participants}; the change is "
                    "refused (cancel the run, or start one with a lower quorum)",
                    reason="InvalidSpec",
                )
            removed = []
            for participant in run.participants.values():
                if participant.name not in names and not participant.removed:
                    participant.removed = True
                    participant.state = "Removed"
                    participant.message = f"removed from the run by {actor}"
                    removed.append(participant.name)
            if removed:
                self.store.audit(
                    actor=actor,
                    action="participants_removed",
                    run_id=run.id,
                    removed=removed,
                )
                self.log.info("participants_removed", run=run.id, removed=removed)
                self._save(run)
        return run

    # ------------------------------------------------------------- the driver

    def _drive(self, run: Run) -> None:
        log = self.log.bind(run=run.id)
        stages: dict[str, Callable[[Run], None]] = {
            "statistics": self._statistics_stage,
            "training": self._training_stage,
            "evaluating": self._evaluation_stage,
        }
        try:
            while not run.terminal and not self._closing:
                stages[run.stage](run)
        except Stopped:
            pass
        except CrucibleError as error:
            log.error(
                "run_failed",
                reason=error.reason,
                error=str(error),
                next="the run ends Failed; completed rounds stay on disk",
            )
            with self.condition:
                self._finish(run, "Failed", error.reason, str(error))
        except Exception as error:  # a bug: keep the service up, fail this run only
            log.exception("run_crashed", next="the run ends Failed; other runs go on")
            with self.condition:
                self._finish(run, "Failed", "InternalError", repr(error))

    def _wait_close(self, run: Run, answered: Callable[[], int]) -> int:
        """Block until the stage closes; return how many participants answered."""
        spec = run.spec
        deadline = run.stage_started + spec.round_timeout_seconds
        quorum_at: float | None = None
        with self.condition:
            while True:
                if run.terminal or self._closing:
                    raise Stopped
                count = answered()
                expected = len(run.active())
                now = time.time()
                if count >= expected and count > 0:
                    return count
                if count >= spec.min_participants:
                    quorum_at = quorum_at or now
                    if now >= quorum_at + spec.grace_seconds:
                        return count
                if now >= deadline:
                    if count < expected:
                        metrics.DEADLINES_EXCEEDED.inc()
                    return count
                wake = (
                    deadline
                    if quorum_at is None
                    else min(deadline, quorum_at + spec.grace_seconds)
                )
                self.condition.wait(timeout=max(0.01, min(wake - now, 1.0)))
                self._mark_lost(run)

    def _below_quorum(self, run: Run, count: int, stage: str) -> None:
        """Retry the stage, or fail the run once the retries are used up."""
        metrics.ROUNDS_FAILED.inc()
        spec = run.spec
        if run.attempt > spec.max_round_retries:
            raise CrucibleError(
                f"{stage} of round {run.current_round}: {count} of {spec.min_participants} "
                f"required participants answered in {run.attempt} attempt(s); "
                "maxRoundRetries is used up",
                reason="QuorumNotMet",
            )
        self.log.warning(
            "round_retried",
            run=run.id,
            round=run.current_round,
            stage=stage,
            answered=count,
            quorum=spec.min_participants,
            attempt=run.attempt + 1,
        )
        with self.condition:
            run.attempt += 1
            run.stage_started = time.time()
            self._save(run)

    def _statistics_stage(self, run: Run) -> None:
        def answered() -> int:
            return len(self._statistics(run))

        if run.phase == "Pending":
            with self.condition:
                run.phase = "Running"
                self._save(run)
                self._export_phases()
        count = self._wait_close(run, answered)
        if count < run.spec.min_participants:
            self._below_quorum(run, count, "statistics")
            return

        reports = self._statistics(run)
        task = run.spec.task
        scaling = tables.combine(list(reports.values()), task.features)
        if scaling.dropped:
            self.log.warning(
                "features_dropped",
                run=run.id,
                features=scaling.dropped,
                why="zero variance across the federation",
            )
        weights = self._initial_weights(run, scaling)
        self._write_checkpoint(run, 0, weights, {}, scaling)
        with self.condition:
            run.scaling = scaling
            run.global_weights = weights
            run.manifest = describe(weights)
            run.global_digest = payload_digest(weights)
            self._open_round(run, 1)

    def _initial_weights(self, run: Run, scaling: tables.Scaling) -> Weights:
        from crucible import models  # torch loads on first need, not at start-up

        inputs = len(scaling.features)
        if not run.spec.initial_model_run:
            seed = models.seed_for(run.spec.seed, "initial")
            return models.initial_weights(run.spec.model, inputs, seed)
        source = self.get(run.spec.initial_model_run)
        weights = read_file(source.model_path)
        expected = describe(models.initial_weights(run.spec.model, inputs, 0))
        check_manifest(
            describe(weights),
            expected=expected,
            max_bytes=self.max_update_bytes,
            source=f"initial model from run {source.id}",
        )
        return {info.name: weights[info.name] for info in expected}

    def _open_round(self, run: Run, round_number: int) -> None:
        now = time.time()
        run.stage = "training"
        run.current_round = round_number
        run.attempt = 1
        run.stage_started = now
        run.round_started = now
        for participant in run.participants.values():
            if participant.state in ("Reported", "Training"):
                participant.state = "Waiting"
        metrics.CURRENT_ROUND.labels(run=run.id).set(round_number)
        metrics.PARTICIPANTS_REPORTING.labels(run=run.id).set(0)
        self._save(run)

    def _training_stage(self, run: Run) -> None:
        round_number = run.current_round
        count = self._wait_close(run, lambda: len(self._updates(run, round_number)))
        if count < run.spec.min_participants:
            self._below_quorum(run, count, "training")
            return

        rows = self._screen(run, round_number, self._updates(run, round_number))
        updates = [
            Update(
                participant=row["participant"],
                samples=row["samples"],
                load=self._loader(run, row["path"]),
                metrics=json.loads(row["metrics"]),
            )
            for row in rows
        ]
        assert run.strategy is not None and run.global_weights is not None
        memory.return_free_memory()
        weights, state = run.strategy.aggregate(
            run.global_weights, updates, run.strategy_state
        )
        check_finite(weights, source=f"aggregate of round {round_number}")
        faults.after("aggregated")
        digest = self._write_checkpoint(run, round_number, weights, state, run.scaling)
        faults.after("checkpoint_written")

        samples = sum(row["samples"] for row in rows)
        losses = [json.loads(row["metrics"]).get("train_loss") for row in rows]
        train_loss = (
            sum(
                loss * row["samples"]
                for loss, row in zip(losses, rows, strict=True)
                if loss is not None
            )
            / samples
            if samples and all(loss is not None for loss in losses)
            else None
        )
        update_bytes = sum(row["bytes"] for row in rows)
        seconds = time.time() - run.round_started
        with self.condition:
            with self.store.transaction() as db:
                db.execute(
                    """INSERT OR REPLACE INTO rounds (run_id, round, attempts, participants,
                       train_loss, seconds, path, digest, update_bytes, completed)
                       VALUES (?,?,?,?,?,?,?,?,?,?)""",
                    (
                        run.id,
                        round_number,
                        run.attempt,
                        len(rows),
                        train_loss,
                        seconds,
                        str(self.store.global_path(run.id, round_number)),
                        digest,
                        update_bytes,
                        time.time(),
                    ),
                )
                db.execute(
                    "DELETE FROM updates WHERE run_id=? AND round=?",
                    (run.id, round_number),
                )
            faults.after("round_recorded")
            run.global_weights = weights
            run.global_digest = payload_digest(weights)
            run.strategy_state = state
            run.completed_rounds = round_number
            run.stage = "evaluating"
            run.stage_started = time.time()
            run.attempt = 1
            self._save(run)
        faults.after("run_advanced")
        self.store.drop_updates(run.id, round_number - 1)
        self.store.drop_updates(run.id, round_number)
        metrics.ROUNDS_COMPLETED.inc()
        metrics.ROUND_DURATION.observe(seconds)
        if train_loss is not None:
            metrics.GLOBAL_LOSS.labels(run=run.id).set(train_loss)
        self.log.info(
            "round_completed",
            run=run.id,
            round=round_number,
            participants=len(rows),
            seconds=round(seconds, 3),
            train_loss=train_loss,
            update_bytes=update_bytes,
        )

    def _screen(self, run: Run, round_number: int, rows: list) -> list:
        """The rows whose updates pass the norm check; outliers are refused."""
        _, max_ratio = screening.split_parameters(run.spec.strategy.parameters)
        assert run.global_weights is not None
        outliers = screening.norm_outliers(
            run.global_weights,
            [(row["participant"], self._loader(run, row["path"])) for row in rows],
            max_ratio=max_ratio,
        )
        for outlier in outliers:
            self.refuse(
                run,
                outlier.participant,
                InputError(
                    f"update from {outlier.participant} for round {round_number}: norm "
                    f"{outlier.norm:.4g} is {outlier.ratio:.1f} times the round's "
                    f"median {outlier.median:.4g}, above max_norm_ratio {max_ratio:g}; "
                    "the update is excluded from the aggregate",
                    reason="NormOutlier",
                ),
            )
        excluded = {outlier.participant for outlier in outliers}
        return [row for row in rows if row["participant"] not in excluded]

    def _loader(self, run: Run, path: str) -> Callable[[], Weights]:
        def load() -> Weights:
            weights = read_file(path)
            return {info.name: weights[info.name] for info in run.manifest}

        return load

    def _write_checkpoint(
        self,
        run: Run,
        round_number: int,
        weights: Weights,
        state: Weights,
        scaling: tables.Scaling | None,
    ) -> str:
        """Write global model and strategy state; on a full disk, wait and try again."""
        metadata = {
            "run_id": run.id,
            "round": str(round_number),
            "digest": payload_digest(weights),
            # Sorted keys: a spec reloaded from the store after a restart lists its
            # maps in another order, and the checkpoint must not differ for that.
            "task": json.dumps(
                run.spec.task.model_dump(mode="json", by_alias=True), sort_keys=True
            ),
            "model": json.dumps(
                run.spec.model.model_dump(mode="json", by_alias=True), sort_keys=True
            ),
            "scaling": scaling_json(scaling) if scaling else "",
            "order": json.dumps(list(weights)),
        }
        while True:
            try:
                if state:
                    write_atomic(self.store.strategy_path(run.id, round_number), state)
                digest = write_atomic(
                    self.store.global_path(run.id, round_number), weights, metadata
                )
                self._writable(run)
                return digest
            except OSError as error:
                metrics.STATE_WRITABLE.set(0)
                self.log.error(
                    "checkpoint_unwritable",
                    run=run.id,
                    round=round_number,
                    error=str(error),
                    next="retrying; no completed round is lost",
                )
                with self.condition:
                    run.message = f"{STATE_UNWRITABLE}: {error}; retrying"
                    self._changed(run)
                    self.condition.wait(timeout=CHECKPOINT_RETRY_SECONDS)
                    if run.terminal or self._closing:
                        raise Stopped from error

    def _evaluation_stage(self, run: Run) -> None:
        round_number = run.completed_rounds
        self._wait_close(run, lambda: len(self._evaluations(run, round_number)))
        rows = self._evaluations(run, round_number)
        total = sum(r["rows"] for r in rows)
        eval_loss = sum(r["sse"] for r in rows) / total if total else None
        eval_rmse = math.sqrt(eval_loss) if eval_loss is not None else None
        self.store.execute(
            "UPDATE rounds SET eval_rmse=?, eval_loss=? WHERE run_id=? AND round=?",
            eval_rmse,
            eval_loss,
            run.id,
            round_number,
        )
        if eval_rmse is not None:
            metrics.EVALUATION_RMSE.labels(run=run.id).set(eval_rmse)
        self.log.info(
            "round_evaluated",
            run=run.id,
            round=round_number,
            participants=len(rows),
            rows=total,
            eval_rmse=eval_rmse,
        )
        with self.condition:
            if round_number >= run.spec.rounds:
                path = self.store.global_path(run.id, round_number)
                run.model_path = str(path)
                run.model_digest = self._round_digest(run, round_number)
                self._finish(
                    run,
                    "Succeeded",
                    "RoundsCompleted",
                    f"{round_number} rounds completed",
                )
            else:
                self._open_round(run, round_number + 1)

    def _round_digest(self, run: Run, round_number: int) -> str:
        rows = self.store.query(
            "SELECT digest FROM rounds WHERE run_id=? AND round=?", run.id, round_number
        )
        return rows[0]["digest"] if rows else ""

    def _finish(self, run: Run, phase: str, reason: str, message: str) -> None:
        run.phase = phase
        run.stage = "done"
        run.reason = reason
        run.message = message
        run.finished = time.time()
        self._save(run)
        self._export_phases()
        self.log.info(
            "run_finished",
            run=run.id,
            phase=phase,
            reason=reason,
            rounds=run.completed_rounds,
        )

    def _mark_lost(self, run: Run) -> None:
        now = time.time()
        lost = connected = 0
        for p in run.participants.values():
            connected += p.joined and now - p.last_contact <= self.lost_after
            silent = p.joined and now - p.last_contact > self.lost_after
            if silent and p.state in ("Waiting", "Training"):
                p.state = "Lost"
                p.message = f"no contact for {now - p.last_contact:.0f} s"
                self.log.warning("participant_lost", run=run.id, participant=p.name)
                self._changed(run)
            lost += p.state == "Lost"
        metrics.PARTICIPANTS_LOST.labels(run=run.id).set(lost)
        metrics.PARTICIPANTS_CONNECTED.labels(run=run.id).set(connected)

    # ------------------------------------------------------------- queries

    def _statistics(self, run: Run) -> dict[str, dict[str, tables.ColumnSums]]:
        active = {p.name for p in run.active()}
        result = {}
        for row in self.store.query(
            "SELECT * FROM statistics WHERE run_id=? ORDER BY participant", run.id
        ):
            if row["participant"] in active:
                raw = json.loads(row["payload"])
                result[row["participant"]] = {
                    c: tables.ColumnSums(v[0], v[1], v[2]) for c, v in raw.items()
                }
        return result

    def _updates(self, run: Run, round_number: int) -> list:
        return self._answers("updates", run, round_number)

    def _evaluations(self, run: Run, round_number: int) -> list:
        return self._answers("evaluations", run, round_number)

    def _answers(self, table: str, run: Run, round_number: int) -> list:
        """A round's rows of ``table`` from active participants, in name order."""
        active = {p.name for p in run.active()}
        rows = self.store.query(
            f"SELECT * FROM {table} WHERE run_id=? AND round=? ORDER BY participant",
            run.id,
            round_number,
        )
        return [r for r in rows if r["participant"] in active]

    # ------------------------------------------------------------- participants

    def offers(self, organization: str) -> list[Run]:
        with self.condition:
            return [
                run
                for run in self.runs.values()
                if not run.terminal
                and organization in run.participants
                and not run.participants[organization].removed
            ]

    def member(self, run_id: str, organization: str) -> tuple[Run, Participant]:
        """The run and the caller's place in it; refuses organizations it does not name."""
        run = self.get(run_id)
        participant = run.participants.get(organization)
        if participant is None:
            raise InputError(
                f"run {run.id} does not name organization {organization!r} among its "
                f"participants; the call is refused",
                reason="NotParticipant",
            )
        if participant.removed:
            raise InputError(
                f"organization {organization!r} was removed from run {run.id}; the call "
                "is refused",
                reason="NotParticipant",
            )
        return run, participant

    def touch(self, participant: Participant, run: Run) -> None:
        participant.last_contact = time.time()
        if participant.state == "Lost":
            participant.state = "Waiting"
            participant.message = ""
            self.log.info(
                "participant_returned", run=run.id, participant=participant.name
            )
            self._changed(run)

    def join(self, run_id: str, organization: str, *, accept: bool, reason: str) -> Run:
        with self.condition:
            run, participant = self.member(run_id, organization)
            self.touch(participant, run)
            if accept:
                participant.joined = True
                if participant.state == "Refused":
                    participant.state = "Waiting"
                participant.message = ""
                self.log.info(
                    "participant_joined", run=run.id, participant=organization
                )
                self.store.audit(
                    actor=organization, action="participant_joined", run_id=run.id
                )
            else:
                participant.state = "Refused"
                participant.message = reason or "refused by the participant's policy"
                self.log.warning(
                    "participant_refused_run",
                    run=run.id,
                    participant=organization,
                    why=participant.message,
                )
                self.store.audit(
                    actor=organization,
                    action="participant_refused_run",
                    run_id=run.id,
                    why=participant.message,
                )
            self._save(run)
            return run

    def next_task(self, run_id: str, organization: str, wait_seconds: float) -> pb.Task:
        """The caller's next task, holding the call up to ``wait_seconds`` for one."""
        deadline = time.time() + max(0.0, wait_seconds)
        with self.condition:
            run, participant = self.member(run_id, organization)
            while True:
                self.touch(participant, run)
                task = self._task_for(run, participant)
                now = time.time()
                if task.kind != pb.WAIT or now >= deadline or self._closing:
                    return task
                self.condition.wait(timeout=min(deadline - now, 5.0))
                if participant.removed:
                    raise InputError(
                        f"organization {organization!r} was removed from run {run.id}",
                        reason="NotParticipant",
                    )

    def _task_for(self, run: Run, participant: Participant) -> pb.Task:
        base = {"run_id": run.id, "round": run.current_round, "attempt": run.attempt}
        if run.phase == "Succeeded":
            return pb.Task(kind=pb.DONE, message=run.message, **base)
        if run.terminal:
            return pb.Task(kind=pb.STOP, message=f"{run.phase}: {run.message}", **base)
        if not participant.joined:
            return pb.Task(kind=pb.STOP, message="join the run first", **base)
        if participant.state == "Refused":
            return pb.Task(kind=pb.STOP, message=participant.message, **base)
        deadline = run.stage_started + run.spec.round_timeout_seconds
        if run.stage == "statistics":
            if participant.name in self._statistics(run):
                return pb.Task(kind=pb.WAIT, **base)
            return pb.Task(
                kind=pb.STATISTICS,
                spec=run.spec_message,
                deadline_unix=deadline,
                **base,
            )
        scaling = self._scaling_message(run)
        if run.stage == "training":
            if any(
                r["participant"] == participant.name
                for r in self._updates(run, run.current_round)
            ):
                return pb.Task(kind=pb.WAIT, **base)
            if participant.state != "Training":
                participant.state = "Training"
                self._changed(run)
            assert run.strategy is not None
            config = run.strategy.participant_config()
            return pb.Task(
                kind=pb.TRAIN,
                spec=run.spec_message,
                scaling=scaling,
                model_digest=run.global_digest,
                deadline_unix=deadline,
                proximal_mu=config.get("proximal_mu", 0.0),
                **base,
            )
        if run.stage == "evaluating":
            if any(
                r["participant"] == participant.name
                for r in self._evaluations(run, run.completed_rounds)
            ):
                return pb.Task(kind=pb.WAIT, **base)
            return pb.Task(
                kind=pb.EVALUATE,
                spec=run.spec_message,
                scaling=scaling,
                model_digest=run.global_digest,
                deadline_unix=deadline,
                **{**base, "round": run.completed_rounds},
            )
        return pb.Task(kind=pb.WAIT, **base)

    def _scaling_message(self, run: Run) -> pb.Scaling:
        s = run.scaling
        assert s is not None
        return pb.Scaling(
            columns=s.columns, mean=s.mean, scale=s.scale, dropped=s.dropped
        )

    def heartbeat(self, run_id: str, organization: str) -> None:
        with self.condition:
            run, participant = self.member(run_id, organization)
            self.touch(participant, run)

    def report_statistics(self, report: pb.StatisticsReport, organization: str) -> None:
        with self.condition:
            run, participant = self.member(report.run_id, organization)
            self.touch(participant, run)
            if run.stage != "statistics":
                raise InputError(
                    f"run {run.id} is past its statistics stage; the report is ignored",
                    reason="StaleRound",
                )
            expected = {*run.spec.task.features, "__target__"}
            found = {c.column for c in report.columns}
            if found != expected:
                raise InputError(
                    f"statistics from {organization}: expected columns {sorted(expected)}, "
                    f"found {sorted(found)}; the report is refused",
                    reason="Malformed",
                )
            payload = {
                c.column: [c.count, c.sum, c.sum_squares] for c in report.columns
            }
            if not all(
                math.isfinite(v) for values in payload.values() for v in values[1:]
            ):
                raise InputError(
                    f"statistics from {organization}: sums must be finite",
                    reason="NotFinite",
                )
            self.store.execute(
                "INSERT OR REPLACE INTO statistics (run_id, participant, payload) "
                "VALUES (?,?,?)",
                run.id,
                organization,
                json.dumps(payload),
            )
            self.log.info(
                "statistics_received",
                run=run.id,
                participant=organization,
                rows=report.rows,
            )
            self._changed(run)

    def report_evaluation(self, report: pb.EvaluationReport, organization: str) -> None:
        with self.condition:
            run, participant = self.member(report.run_id, organization)
            self.touch(participant, run)
            if (
                run.stage != "evaluating"
                or report.round != run.completed_rounds
                or report.model_digest != run.global_digest
            ):
                raise InputError(
                    f"evaluation of round {report.round} from {organization}: run {run.id} "
                    f"is not evaluating that model now; the report is ignored",
                    reason="StaleRound",
                )
            if report.rows < 0 or not math.isfinite(report.sum_squared_error):
                raise InputError(
                    f"evaluation from {organization}: malformed sums",
                    reason="Malformed",
                )
            self.store.execute(
                "INSERT OR REPLACE INTO evaluations (run_id, round, participant, rows, sse, "
                "sae) VALUES (?,?,?,?,?,?)",
                run.id,
                report.round,
                organization,
                report.rows,
                report.sum_squared_error,
                report.sum_absolute_error,
            )
            self._changed(run)

    # ------------------------------------------------------------- updates

    def refuse(self, run: Run | None, organization: str, error: CrucibleError) -> None:
        """Count a refused update by reason and show it on the run."""
        reason = error.reason
        metrics.UPDATES_REFUSED.labels(reason=reason).inc()
        self.log.warning(
            "update_refused",
            run=run.id if run else "",
            participant=organization,
            reason=reason,
            error=str(error),
        )
        self.store.audit(
            actor=organization,
            action="update_refused",
            run_id=run.id if run else "",
            reason=reason,
            why=str(error),
        )
        if run is None:
            return
        with self.condition:
            with self.store.transaction() as db:
                db.execute(
                    """INSERT INTO refusals (run_id, reason, count) VALUES (?,?,1)
                       ON CONFLICT (run_id, reason) DO UPDATE SET count = count + 1""",
                    (run.id, reason),
                )
            participant = run.participants.get(organization)
            if participant is not None:
                participant.message = f"update refused ({reason}): {error}"
            self._changed(run)

    def receive_update(
        self, header: pb.UpdateHeader, chunks: Iterator[bytes], organization: str
    ) -> Run:
        """Check, store and record one update; raises InputError with the refusal."""
        source = f"update from {organization} for round {header.round}"
        with self.condition:
            run, participant = self.member(header.run_id, organization)
            self.touch(participant, run)
            self._check_update_header(run, header, organization, source)
            manifest = [
                TensorInfo(t.name, t.dtype, tuple(t.shape))
                for t in header.manifest.tensors
            ]
            check_manifest(
                manifest,
                expected=run.manifest,
                max_bytes=self.max_update_bytes,
                source=source,
            )
        self.check_space(run, f"{source}: refused; send it again later")

        # Chunks go straight to disk as they arrive, each checked on the way: however
        # many participants send at once, each upload in flight holds one chunk.
        path = self.store.update_path(run.id, header.round, organization)
        size = sum(info.nbytes for info in manifest)
        try:
            with TensorFileWriter(path, manifest, source=source) as writer:
                for data in chunks:
                    writer.add(data)
                writer.finish()
                with self.condition:
                    # The stage may have moved, or another upload from this participant
                    # may have counted, while the bytes arrived: check again, then
                    # rename and record as one step, so a refused upload never
                    # replaces the stored one.
                    self._check_update_header(run, header, organization, source)
                    writer.commit()
                    self._record_update(
                        run, participant, organization, header, path, size
                    )
        except OSError as error:
            self._unwritable(run, f"{error}")
            raise TemporaryError(
                f"{source}: cannot be stored ({error}); send the update again later",
                reason="StateUnwritable",
            ) from error
        self._writable(run)
        faults.after("update_recorded")
        metrics.UPDATES_ACCEPTED.inc()
        metrics.UPDATE_BYTES.inc(size)
        self.log.info(
            "update_accepted",
            run=run.id,
            round=header.round,
            participant=organization,
            samples=header.samples,
            bytes=size,
        )
        return run

    def _record_update(
        self,
        run: Run,
        participant: Participant,
        organization: str,
        header: pb.UpdateHeader,
        path: Path,
        size: int,
    ) -> None:
        """Count a stored update (the caller holds the condition)."""
        self.store.execute(
            """INSERT INTO updates (run_id, round, participant, path, samples, metrics,
               bytes, received) VALUES (?,?,?,?,?,?,?,?)""",
            run.id,
            header.round,
            organization,
            str(path),
            header.samples,
            json.dumps(dict(header.metrics)),
            size,
            time.time(),
        )
        participant.state = "Reported"
        participant.message = ""
        reporting = len(self._updates(run, header.round))
        metrics.PARTICIPANTS_REPORTING.labels(run=run.id).set(reporting)
        self._changed(run)

    def check_space(self, run: Run | None, consequence: str) -> None:
        """Refuse new work while the state directory is below ``min_free_bytes``."""
        free = self.store.free_bytes()
        if free >= self.min_free_bytes:
            return
        why = (
            f"{free} bytes free in {self.store.directory}, below min_free_bytes "
            f"{self.min_free_bytes}"
        )
        self._unwritable(run, why)
        raise TemporaryError(
            f"state directory: {why}; {consequence}", reason="StateUnwritable"
        )

    def _unwritable(self, run: Run | None, why: str) -> None:
        metrics.STATE_WRITABLE.set(0)
        self.log.error(
            "state_unwritable",
            run=run.id if run else "",
            why=why,
            next="new runs and updates are refused until space returns; stored "
            "rounds are kept",
        )
        if run is not None:
            with self.condition:
                run.message = f"{STATE_UNWRITABLE}: {why}"
                self._changed(run)

    def _writable(self, run: Run) -> None:
        metrics.STATE_WRITABLE.set(1)
        if run.message.startswith(STATE_UNWRITABLE):
            with self.condition:
                run.message = ""
                self._changed(run)
            self.log.info("state_writable", run=run.id)

    def _check_update_header(
        self, run: Run, header: pb.UpdateHeader, organization: str, source: str
    ) -> None:
        if run.terminal:
            raise InputError(
                f"{source}: run {run.id} is {run.phase}; the update is refused",
                reason="StaleRound",
            )
        if run.stage != "training" or header.round != run.current_round:
            raise InputError(
                f"{source}: run {run.id} is collecting round {run.current_round} "
                f"({run.stage}); the update is refused",
                reason="StaleRound",
            )
        if header.base_digest != run.global_digest:
            raise InputError(
                f"{source}: it starts from model {header.base_digest[:12] or 'none'}, not "
                f"the round's global model {run.global_digest[:12]}; the update is refused",
                reason="WrongBase",
            )
        if header.samples <= 0:
            raise InputError(
                f"{source}: samples must be positive, found {header.samples}",
                reason="Malformed",
            )
        if not all(math.isfinite(v) for v in header.metrics.values()):
            raise InputError(
                f"{source}: metrics must be finite numbers", reason="NotFinite"
            )
        existing = self.store.query(
            "SELECT 1 FROM updates WHERE run_id=? AND round=? AND participant=?",
            run.id,
            header.round,
            organization,
        )
        if existing:
            raise InputError(
                f"{source}: an update from {organization} already counts in this round; "
                "at most one per organization and round is accepted",
                reason="Duplicate",
            )

    # ------------------------------------------------------------- models

    def model_for(self, run_id: str, round_number: int) -> tuple[Weights, str, dict]:
        """The global model after ``round_number`` (0: the latest), digest and metadata."""
        run = self.get(run_id)
        if round_number <= 0:
            round_number = run.completed_rounds
        path = self.store.global_path(run.id, round_number)
        if not path.exists():
            raise InputError(
                f"run {run.id} has no global model for round {round_number}",
                reason="NotFound",
            )
        metadata = read_metadata(path)
        with self.condition:
            current = (run.completed_rounds, run.global_weights, run.global_digest)
        if current[0] == round_number and current[1] is not None:
            # Every participant fetches the current model each round: serve the copy
            # in memory rather than one read from disk per call.
            return current[1], current[2], metadata
        weights = read_file(path)
        order = json.loads(metadata.get("order", "[]")) or sorted(weights)
        ordered = {name: np.asarray(weights[name]) for name in order}
        return ordered, payload_digest(ordered), metadata
