"""Many light participants against one real aggregator, measured.

Shared by the load test and ``benchmarks/participants.py``. Each participant is a thread
with its own mutual-TLS channel that sends a synthetic update (numpy, the global model's
shapes) every round. The aggregator is the real process; its peak resident memory is
read from ``VmHWM`` in /proc/PID/status, so only a Linux host can measure it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crucible import spec as specs
from crucible.protocol import pb
from tests.faults.participants import LightParticipant
from tests.federation import FEATURES, Federation, spec, wait_for_phase

# 12 inputs -> 3200 -> 3200 -> 1: 10,288,001 float32 parameters, 41 MB.
HIDDEN = [3200, 3200]


def parameters(hidden: list[int], inputs: int = len(FEATURES)) -> int:
    sizes = [inputs, *hidden, 1]
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


@dataclass
class SwarmResult:
    participants: int
    rounds: int
    phase: str
    completed_rounds: int
    round_seconds: list[float]
    update_bytes: int
    model_bytes_sent: int
    peak_rss_bytes: int
    seconds: float


class SwarmParticipant(LightParticipant):
    """Sends the same synthetic update each round; fetches the model only if asked."""

    def __init__(self, *args, fetch: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fetch = fetch
        self.update: dict[str, np.ndarray] | None = None

    def do(self, task: pb.Task) -> None:
        if task.kind != pb.TRAIN:
            super().do(task)
            return
        if self.fetch or self.update is None:
            weights = self.call(lambda: self.client.fetch(task))
            self.update = self.update or weights
        update = self.update
        receipt = self.call(lambda: self.client.send(task, update, samples=10))
        self.receipts.append((task.round, receipt.accepted, receipt.reason))


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def metric_total(federation: Federation, name: str) -> float:
    import urllib.request

    url = f"http://{federation.aggregator_metrics}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def run_swarm(
    root: Path,
    *,
    participants: int,
    rounds: int,
    hidden: list[int] | None = None,
    fetch: bool = False,
    timeout: float = 1500.0,
    environment: dict[str, str] | None = None,
) -> SwarmResult:
    """One run of ``rounds`` FedAvg rounds with ``participants`` light participants."""
    names = [f"member-{i:02d}" for i in range(participants)]
    body = spec(
        names,
        rounds=rounds,
        model={"hidden": hidden or HIDDEN, "activation": "relu"},
        roundTimeoutSeconds=600,
    )
    federation = Federation(root)
    try:
        federation.start_aggregator(**(environment or {}))
        assert federation.aggregator_process is not None
        started = time.monotonic()
        with federation.admin() as admin:
            run_id = admin.start_run("uid-swarm", specs.parse(body)).run_id
        swarm = [
            SwarmParticipant(
                federation.aggregator_address,
                federation.issue(name),
                name,
                run_id,
                FEATURES,
                fetch=fetch,
            )
            for name in names
        ]
        for participant in swarm:
            participant.start()
        with federation.admin() as admin:
            final = wait_for_phase(
                admin, run_id, ("Succeeded", "Failed"), timeout=timeout
            )
        seconds = time.monotonic() - started
        for participant in swarm:
            participant.stopping.set()
            participant.join(timeout=30)
            assert participant.error is None, participant.error
        return SwarmResult(
            participants=participants,
            rounds=rounds,
            phase=final.phase,
            completed_rounds=final.completed_rounds,
            round_seconds=[r.seconds for r in final.rounds],
            update_bytes=sum(r.update_bytes for r in final.rounds),
            model_bytes_sent=int(
                metric_total(federation, "crucible_model_bytes_sent_total")
            ),
            peak_rss_bytes=peak_rss(federation.aggregator_process.pid),
            seconds=seconds,
        )
    finally:
        federation.stop()
