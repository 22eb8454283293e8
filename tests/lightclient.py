"""A participant without torch: speaks the protocol directly, sends chosen tensors.

Tests use it to drive the real aggregator with exact numbers (strategies against a
hand computation), with bad input (NaN, wrong shapes, replays, pickles), and in numbers
(many participants). It authenticates with its own certificate like any participant.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import numpy as np

from crucible.client import receive_tensors
from crucible.protocol import pb, rpc
from crucible.tensors import Weights, describe, iter_bytes
from crucible.transport import TlsFiles, channel


class LightClient:
    def __init__(
        self, address: str, files: TlsFiles, *, keepalive: float = 30.0
    ) -> None:
        self.channel = channel(address, files, keepalive_seconds=keepalive)
        self.stub = rpc.FederationStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def join(self, run_id: str, *, accept: bool = True, reason: str = "") -> None:
        self.stub.Join(
            pb.JoinRequest(run_id=run_id, accept=accept, refusal_reason=reason),
            timeout=10,
        )

    def task(
        self, run_id: str, kind: int | None = None, timeout: float = 30.0
    ) -> pb.Task:
        """The next task, waiting until one of ``kind`` (any but WAIT by default)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.stub.GetTask(
                pb.TaskRequest(run_id=run_id, wait_seconds=2), timeout=10
            )
            if task.kind != pb.WAIT and (kind is None or task.kind == kind):
                return task
            if task.kind in (pb.DONE, pb.STOP) and kind not in (pb.DONE, pb.STOP):
                return task
        raise TimeoutError(f"no task of kind {kind} for run {run_id}")

    def report_statistics(
        self, run_id: str, columns: list[str], rows: int = 100
    ) -> None:
        rng = np.random.default_rng(len(columns))
        report = pb.StatisticsReport(run_id=run_id, rows=rows)
        for column in [*columns, "__target__"]:
            values = rng.normal(size=rows)
            report.columns.add(
                column=column,
                count=rows,
                sum=float(values.sum()),
                sum_squares=float((values**2).sum()),
            )
        self.stub.ReportStatistics(report, timeout=10)

    def fetch(self, task: pb.Task) -> Weights:
        stream = self.stub.FetchModel(
            pb.ModelRequest(run_id=task.run_id, round=task.round - 1), timeout=120
        )
        weights, _ = receive_tensors(stream, source="global model")
        return weights

    def chunks(
        self,
        task: pb.Task,
        weights: Weights,
        *,
        samples: int = 10,
        metrics: dict[str, float] | None = None,
        header: dict | None = None,
    ) -> Iterator[pb.UpdateChunk]:
        """The messages of an update stream: header, then the tensors' bytes."""
        fields = {
            "run_id": task.run_id,
            "round": task.round,
            "attempt": task.attempt,
            "samples": samples,
            "metrics": metrics or {"train_loss": 1.0},
            "base_digest": task.model_digest,
            "manifest": pb.Manifest(
                tensors=[
                    pb.TensorInfo(name=i.name, dtype=i.dtype, shape=i.shape)
                    for i in describe(weights)
                ]
            ),
        }
        fields.update(header or {})
        yield pb.UpdateChunk(header=pb.UpdateHeader(**fields))
        for data in iter_bytes(weights):
            yield pb.UpdateChunk(data=data)

    def send(
        self,
        task: pb.Task,
        weights: Weights,
        *,
        samples: int = 10,
        metrics: dict[str, float] | None = None,
        header: dict | None = None,
        chunks: Iterator[pb.UpdateChunk] | None = None,
    ) -> pb.UpdateReceipt:
        stream = chunks or self.chunks(
            task, weights, samples=samples, metrics=metrics, header=header
        )
        return self.stub.SendUpdate(stream, timeout=120)

    def evaluate(self, task: pb.Task, *, rows: int = 10, sse: float = 1.0) -> None:
        self.stub.ReportEvaluation(
            pb.EvaluationReport(
                run_id=task.run_id,
                round=task.round,
                model_digest=task.model_digest,
                rows=rows,
                sum_squared_error=sse,
                sum_absolute_error=sse,
            ),
            timeout=10,
        )


def is_refused_at_handshake(error: grpc.RpcError) -> bool:
    return error.code() == grpc.StatusCode.UNAVAILABLE
