"""The participant's loop: find runs, join under the local policy, do their tasks.

The agent only dials out; it opens no port but /metrics. It asks the aggregator for
offers naming its organization (from its own certificate), checks each against the
local policy and its table, joins, and then long-polls for tasks: report statistics,
train and send an update, evaluate the global model. Rows never leave the process.

Failures split as everywhere in Crucible: an unavailable aggregator or a broken link is
retried with jittered exponential backoff (an update sent twice counts once: the
aggregator refuses the second as a duplicate, which the agent takes as delivered); a
run the aggregator refuses or stops is left, and the agent waits for the next.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc
import numpy as np
import torch
from prometheus_client import start_http_server

from crucible import data as tables
from crucible import models
from crucible import spec as specs
from crucible.certificates import identity_of, trust_problem
from crucible.client import receive_tensors
from crucible.errors import CrucibleError, InputError
from crucible.protocol import pb, rpc
from crucible.settings import DatasetSettings, ParticipantSettings
from crucible.telemetry import logger
from crucible.tensors import Weights, describe, iter_bytes, payload_digest
from crucible.transport import channel
from services.participant import metrics
from services.participant.policy import refusal

T = TypeVar("T")
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}
OFFER_POLL_SECONDS = 1.0


@dataclass
class LocalData:
    """A run's view of the organization's tables: training and held-out rows."""

    train: tables.Prepared
    evaluation: tables.Prepared


class Agent:
    """One organization's participant, working through runs one at a time."""

    def __init__(self, settings: ParticipantSettings) -> None:
        self.settings = settings
        self.files = settings.tls.files()
        self.organization = identity_of(
            self.files.certificate.read_bytes()
        ).organization
        self.log = logger("participant", participant=self.organization)
        # The aggregator refuses such a certificate at the handshake without saying
        # why; say it here instead of retrying UNAVAILABLE forever.
        problem = trust_problem(
            self.files.certificate.read_bytes(),
            self.files.ca.read_bytes(),
            now=dt.datetime.now(dt.UTC),
        )
        if problem is not None:
            raise InputError(
                f"CRUCIBLE_TLS__CERTIFICATE {self.files.certificate}: {problem}; "
                "renew it from the federation CA; the participant does not start"
            )
        self.channel = channel(
            settings.aggregator,
            self.files,
            server_name=settings.server_name,
            keepalive_seconds=settings.keepalive_seconds,
        )
        self.stub = rpc.FederationStub(self.channel)
        self.finished: set[str] = set()
        self.models: dict[str, Weights] = {}
        self.stopping = threading.Event()

    # ------------------------------------------------------------- transport

    def call(self, what: str, function: Callable[[], T]) -> T:
        """Call the aggregator, retrying transport failures with jittered backoff."""
        delay = self.settings.backoff_initial_seconds
        while True:
            try:
                result = function()
                metrics.CONNECTED.set(1)
                return result
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or self.stopping.is_set():
                    raise
                metrics.CONNECTED.set(0)
                metrics.RECONNECTS.inc()
                wait = random.uniform(0.5, 1.0) * delay
                self.log.warning(
                    "aggregator_unreachable",
                    call=what,
                    code=error.code().name,
                    retry_in=round(wait, 2),
                )
                if self.stopping.wait(wait):
                    raise
                delay = min(delay * 2, self.settings.backoff_max_seconds)

    # ------------------------------------------------------------- the loop

    def run_forever(self) -> int:
        self.log.info("participant_started", aggregator=self.settings.aggregator)
        while not self.stopping.is_set():
            offers = self.call(
                "ListOffers",
                lambda: self.stub.ListOffers(pb.OffersRequest(), timeout=30),
            )
            for offer in offers.offers:
                if offer.run_id in self.finished:
                    continue
                if not self.take(offer):
                    continue  # left on an error: the next offer poll rejoins
                self.finished.add(offer.run_id)
                if self.settings.once:
                    return 0
            self.stopping.wait(OFFER_POLL_SECONDS)
        return 0

    def take(self, offer: pb.RunOffer) -> bool:
        """Join the offered run if the policy and the table allow, then work it.

        True when the agent is done with the run (refused it, or the run ended); False
        when it left on an error, so that the next offer poll rejoins the run.
        """
        log = self.log.bind(run=offer.run_id)
        try:
            spec = specs.from_proto(offer.spec)
            local = self.load(spec)
            reason = refusal(self.settings.policy, spec, rows=local.train.rows)
        except CrucibleError as error:
            reason = str(error)
            local = None
        if reason is not None:
            metrics.RUNS_REFUSED.inc()
            log.warning("run_refused", why=reason)
            self.call(
                "Join",
                lambda: self.stub.Join(
                    pb.JoinRequest(
                        run_id=offer.run_id, accept=False, refusal_reason=reason
                    ),
                    timeout=30,
                ),
            )
            return True
        assert local is not None
        self.call(
            "Join",
            lambda: self.stub.Join(
                pb.JoinRequest(run_id=offer.run_id, accept=True), timeout=30
            ),
        )
        log.info("run_joined", name=spec.name, rows=local.train.rows)
        try:
            self.work(offer.run_id, spec, local)
        except grpc.RpcError as error:
            log.warning(
                "run_left",
                code=error.code().name,
                why=error.details(),
                next="rejoining while the run is offered",
            )
            return False
        finally:
            self.models.clear()
        return True

    def load(self, spec: specs.RunSpec) -> LocalData:
        name = spec.task.dataset or "default"
        dataset: DatasetSettings | None = self.settings.datasets.get(name)
        if dataset is None:
            raise InputError(
                f"task.dataset: this organization has no table named {name!r}; it has "
                f"{sorted(self.settings.datasets)}"
            )
        train = tables.prepare(
            tables.read_table(dataset.train), spec.task, source=str(dataset.train)
        )
        evaluation = train
        if dataset.evaluation is not None:
            evaluation = tables.prepare(
                tables.read_table(dataset.evaluation),
                spec.task,
                source=str(dataset.evaluation),
            )
        return LocalData(train, evaluation)

    def work(self, run_id: str, spec: specs.RunSpec, local: LocalData) -> None:
        log = self.log.bind(run=run_id)
        wait = self.settings.poll_seconds
        while not self.stopping.is_set():
            task = self.call(
                "GetTask",
                lambda: self.stub.GetTask(
                    pb.TaskRequest(run_id=run_id, wait_seconds=wait), timeout=wait + 30
                ),
            )
            try:
                self.do(task, spec, local, log)
            except grpc.RpcError as error:
                # The stage closed while we worked (a straggler): take the next task.
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                log.warning("task_outdated", why=error.details(), next="next task")
            if task.kind in (pb.DONE, pb.STOP):
                log.info(
                    "run_ended", kind=pb.TaskKind.Name(task.kind), why=task.message
                )
                return

    # ------------------------------------------------------------- tasks

    def do(self, task: pb.Task, spec: specs.RunSpec, local: LocalData, log) -> None:
        if task.kind == pb.STATISTICS:
            self.report_statistics(task, local)
        elif task.kind == pb.TRAIN:
            self.train(task, spec, local, log)
        elif task.kind == pb.EVALUATE:
            self.evaluate(task, spec, local, log)

    def report_statistics(self, task: pb.Task, local: LocalData) -> None:
        sums = tables.statistics(local.train)
        report = pb.StatisticsReport(
            run_id=task.run_id,
            rows=local.train.rows,
            columns=[
                pb.ColumnStatistics(
                    column=c, count=s.count, sum=s.sum, sum_squares=s.sum_squares
                )
                for c, s in sums.items()
            ],
        )
        self.call(
            "ReportStatistics", lambda: self.stub.ReportStatistics(report, timeout=30)
        )

    def fetch(self, task: pb.Task) -> Weights:
        """The task's global model, from the cache when its digest is known."""
        if task.model_digest in self.models:
            return self.models[task.model_digest]

        def download() -> Weights:
            stream = self.stub.FetchModel(
                pb.ModelRequest(
                    run_id=task.run_id,
                    round=task.round - 1 if task.kind == pb.TRAIN else task.round,
                ),
                timeout=600,
            )
            weights, digest = receive_tensors(stream, source="global model")
            if digest != task.model_digest or payload_digest(weights) != digest:
                raise InputError(
                    f"global model digest {digest[:12]} is not the task's "
                    f"{task.model_digest[:12]}"
                )
            return weights

        weights = self.call("FetchModel", download)
        self.models = {task.model_digest: weights}
        return weights

    def train(self, task: pb.Task, spec: specs.RunSpec, local: LocalData, log) -> None:
        weights = self.fetch(task)
        scaling = scaling_of(task.scaling)
        inputs, target = tables.design(local.train, scaling)
        seed = models.seed_for(spec.seed, task.round, self.organization)
        with self.heartbeats(task):
            result = models.train(
                spec.model,
                weights,
                inputs,
                target,
                epochs=spec.local_epochs,
                batch_size=spec.batch_size,
                learning_rate=spec.learning_rate,
                weight_decay=spec.weight_decay,
                seed=seed,
                proximal_mu=task.proximal_mu,
            )
        held_in, held_target = tables.design(local.evaluation, scaling)
        validation = float(
            np.mean(
                (models.predict(spec.model, result.weights, held_in) - held_target) ** 2
            )
        )
        metrics.LOCAL_TRAINING.observe(result.seconds)
        metrics.LOCAL_LOSS.set(result.loss)
        header = pb.UpdateHeader(
            run_id=task.run_id,
            round=task.round,
            attempt=task.attempt,
            samples=result.samples,
            metrics={
                "train_loss": result.loss,
                "seconds": result.seconds,
                "validation_loss": validation,
            },
            base_digest=task.model_digest,
            manifest=pb.Manifest(
                tensors=[
                    pb.TensorInfo(name=i.name, dtype=i.dtype, shape=i.shape)
                    for i in describe(result.weights)
                ],
                total_bytes=sum(i.nbytes for i in describe(result.weights)),
            ),
        )
        receipt = self.send_update(header, result.weights)
        if receipt.accepted or receipt.reason == "Duplicate":
            metrics.ROUNDS.inc()
            log.info(
                "update_sent",
                round=task.round,
                samples=result.samples,
                loss=round(result.loss, 5),
                seconds=round(result.seconds, 3),
            )
        else:
            log.warning(
                "update_refused",
                round=task.round,
                reason=receipt.reason,
                why=receipt.message,
            )

    def send_update(
        self, header: pb.UpdateHeader, weights: Weights
    ) -> pb.UpdateReceipt:
        def chunks() -> Iterator[pb.UpdateChunk]:
            yield pb.UpdateChunk(header=header)
            for data in iter_bytes(weights):
                yield pb.UpdateChunk(data=data)

        return self.call(
            "SendUpdate", lambda: self.stub.SendUpdate(chunks(), timeout=600)
        )

    def evaluate(
        self, task: pb.Task, spec: specs.RunSpec, local: LocalData, log
    ) -> None:
        weights = self.fetch(task)
        scaling = scaling_of(task.scaling)
        inputs, _ = tables.design(local.evaluation, scaling)
        predicted = tables.unscale_target(
            models.predict(spec.model, weights, inputs), scaling
        )
        errors = predicted - local.evaluation.target
        report = pb.EvaluationReport(
            run_id=task.run_id,
            round=task.round,
            model_digest=task.model_digest,
            rows=len(errors),
            sum_squared_error=float((errors**2).sum()),
            sum_absolute_error=float(np.abs(errors).sum()),
            sum_target=float(local.evaluation.target.sum()),
            sum_target_squares=float((local.evaluation.target**2).sum()),
        )
        rmse = float(np.sqrt(np.mean(errors**2)))
        metrics.LOCAL_EVALUATION_RMSE.set(rmse)
        log.info("global_model_evaluated", round=task.round, rmse=round(rmse, 5))
        self.call(
            "ReportEvaluation", lambda: self.stub.ReportEvaluation(report, timeout=30)
        )

    def heartbeats(self, task: pb.Task):
        """Send heartbeats while local training runs, so the run sees us alive."""
        agent = self

        class Beating:
            def __enter__(self) -> None:
                self.done = threading.Event()
                self.thread = threading.Thread(target=self.beat, daemon=True)
                self.thread.start()

            def beat(self) -> None:
                while not self.done.wait(agent.settings.heartbeat_seconds):
                    with contextlib.suppress(grpc.RpcError):
                        agent.stub.Heartbeat(
                            pb.HeartbeatRequest(
                                run_id=task.run_id, state="training", round=task.round
                            ),
                            timeout=10,
                        )

            def __exit__(self, *exc: object) -> None:
                self.done.set()
                self.thread.join()

        return Beating()


def scaling_of(message: pb.Scaling) -> tables.Scaling:
    return tables.Scaling(
        list(message.columns),
        list(message.mean),
        list(message.scale),
        list(message.dropped),
    )


def serve(settings: ParticipantSettings) -> int:
    """Run the participant until stopped (or after one run with ``once``)."""
    torch.set_num_threads(settings.torch_threads)
    host, _, port = settings.metrics_listen.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")
    agent = Agent(settings)
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stopping.set())
    try:
        return agent.run_forever()
    except grpc.RpcError as error:
        if agent.stopping.is_set():
            return 0
        agent.log.error(
            "participant_stopped",
            code=error.code().name,
            why=error.details(),
            next="the process exits; restart it to rejoin",
        )
        return 1
    finally:
        time.sleep(0)
