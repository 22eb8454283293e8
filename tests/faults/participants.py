"""Light participants that keep working through faults, as the real agent does.

Each runs in a thread, speaks the protocol through ``tests.lightclient``, retries calls
that fail with UNAVAILABLE (the aggregator away, a link cut) with jittered exponential
backoff, and counts a refused Duplicate as delivered. Its update is a deterministic
function of the global model, the organization and the round, so two runs of the same
spec end with the same global model whatever faults happen in between.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
import numpy as np

from crucible.protocol import pb
from crucible.transport import TlsFiles
from tests.lightclient import LightClient

T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def local_update(weights: dict, organization: str, round_number: int) -> dict:
    """Global weights moved by an amount fixed by organization and round."""
    step = (sum(organization.encode()) % 7 + 1) * 0.01 * round_number
    return {
        name: (array * 0.9 + step).astype(array.dtype)
        for name, array in weights.items()
    }


class LightParticipant(threading.Thread):
    def __init__(
        self,
        address: str,
        files: TlsFiles,
        organization: str,
        run_id: str,
        features: list[str],
    ) -> None:
        super().__init__(daemon=True, name=f"light-{organization}")
        self.client = LightClient(address, files, keepalive=5.0)
        self.organization = organization
        self.run_id = run_id
        self.features = features
        self.receipts: list[tuple[int, bool, str]] = []
        self.retries = 0
        self.outcome = ""
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def call(self, function: Callable[[], T]) -> T:
        delay = 0.1
        while True:
            try:
                return function()
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE or self.stopping.is_set():
                    raise
                self.retries += 1
                time.sleep(random.uniform(0.5, 1.0) * delay)
                delay = min(delay * 2, 1.0)

    def run(self) -> None:
        try:
            self.call(lambda: self.client.join(self.run_id))
            while not self.stopping.is_set():
                task = self.call(
                    lambda: self.client.stub.GetTask(
                        pb.TaskRequest(run_id=self.run_id, wait_seconds=2), timeout=10
                    )
                )
                if task.kind in (pb.DONE, pb.STOP):
                    self.outcome = pb.TaskKind.Name(task.kind)
                    return
                self.do(task)
        except BaseException as error:  # reported by the test that owns the thread
            self.error = error
        finally:
            self.client.close()

    def do(self, task: pb.Task) -> None:
        if task.kind == pb.STATISTICS:
            self.call(lambda: self.client.report_statistics(self.run_id, self.features))
        elif task.kind == pb.TRAIN:
            weights = self.call(lambda: self.client.fetch(task))
            update = local_update(weights, self.organization, task.round)
            receipt = self.call(lambda: self.client.send(task, update, samples=10))
            self.receipts.append((task.round, receipt.accepted, receipt.reason))
        elif task.kind == pb.EVALUATE:
            try:
                self.call(lambda: self.client.evaluate(task, rows=10, sse=1.0))
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise

    def accepted(self) -> dict[int, int]:
        """Per round, how many sends the aggregator accepted."""
        counts: dict[int, int] = {}
        for round_number, accepted, _ in self.receipts:
            counts[round_number] = counts.get(round_number, 0) + accepted
        return counts


def digest_of(weights: dict) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    return digest.hexdigest()
