"""A real federation on loopback for tests: CA, certificates, and service processes.

Every service runs as its own process (``crucible aggregator``, ``crucible
participant``), configured through CRUCIBLE_* variables exactly as in a cluster, and
talks over mutual TLS on 127.0.0.1. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pandas as pd
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crucible import certificates
from crucible.client import AdminClient
from crucible.transport import TlsFiles, channel

REPO = Path(__file__).resolve().parent.parent
CREEP = REPO / "data" / "creep" / "netl_9cr_creep_rupture.csv"
FEATURES = [
    "C",
    "Cr",
    "Mo",
    "W",
    "Ni",
    "Nb",
    "V",
    "N",
    "normalize_C",
    "temper1_C",
    "test_temp_C",
    "stress_MPa",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spec(participants: list[str], **overrides: object) -> dict:
    """A small, fast run spec over the creep table's real columns."""
    body = {
        "name": "tests/creep",
        "task": {
            "features": FEATURES,
            "target": "rupture_time_h",
            "targetTransform": "log10",
            "fill": {
                "default": "zero",
                "columns": {"normalize_C": "mean", "temper1_C": "mean"},
            },
            "transforms": [{"column": "stress_MPa", "transform": "log10"}],
        },
        "model": {"hidden": [16], "activation": "silu"},
        "participants": participants,
        "minParticipants": len(participants),
        "rounds": 3,
        "localEpochs": 1,
        "batchSize": 64,
        "learningRate": 0.01,
        "graceSeconds": 0,
        "roundTimeoutSeconds": 60,
        "maxRoundRetries": 0,
        "seed": 7,
    }
    body.update(overrides)
    return body


def organization_tables(directory: Path, names: list[str]) -> dict[str, Path]:
    """Real creep rows split by data source among ``names``: one CSV each."""
    frame = pd.read_csv(CREEP)
    groups = {
        names[0]: frame[frame.grade.isin(["Gr.91", "STBA 26"])],
        names[1]: frame[frame.grade.isin(["SUH 616", "SUS 403", "Gr.92"])],
    }
    if len(names) > 2:
        groups[names[2]] = frame[frame.source_org.isin(["GE", "NETL", "JCFC"])]
    paths = {}
    for name, rows in groups.items():
        paths[name] = directory / f"{name}.csv"
        rows.to_csv(paths[name], index=False)
    return paths


@dataclass
class Federation:
    """Certificates and service processes under one temporary directory."""

    root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    aggregator_address: str = ""
    aggregator_metrics: str = ""
    aggregator_process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.pki = self.root / "pki"
        certificates.init_ca(self.pki)
        certificates.issue(
            self.pki,
            "aggregator",
            role="aggregator",
            ip_addresses=["127.0.0.1"],
            dns_names=["localhost"],
        )
        certificates.issue(self.pki, "coordinator", role="operator")
        self.state_dir = self.root / "state"
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def tls(self, name: str) -> TlsFiles:
        return TlsFiles(
            self.pki / f"{name}.crt", self.pki / f"{name}.key", self.pki / "ca.crt"
        )

    def issue(self, name: str, role: str = "participant") -> TlsFiles:
        if not (self.pki / f"{name}.crt").exists():
            certificates.issue(self.pki, name, role=role)
        return self.tls(name)

    def _env(self, name: str, **values: str) -> dict[str, str]:
        files = self.tls(name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIBLE_")}
        env.update(
            {
                "CRUCIBLE_TLS__CERTIFICATE": str(files.certificate),
                "CRUCIBLE_TLS__KEY": str(files.key),
                "CRUCIBLE_TLS__CA": str(files.ca),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(values)
        return env

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str]
    ) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "crucible.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        self.processes.append(process)
        return process

    def start_aggregator(self, **values: str) -> subprocess.Popen:
        if not self.aggregator_address:
            self.aggregator_address = f"127.0.0.1:{free_port()}"
            self.aggregator_metrics = f"127.0.0.1:{free_port()}"
        env = self._env(
            "aggregator",
            CRUCIBLE_LISTEN=self.aggregator_address,
            CRUCIBLE_METRICS_LISTEN=self.aggregator_metrics,
            CRUCIBLE_STATE_DIR=str(self.state_dir),
            CRUCIBLE_LOST_AFTER_SECONDS="5",
            CRUCIBLE_MIN_FREE_BYTES="0",
            **values,
        )
        self.aggregator_process = self._spawn("aggregator", ["aggregator"], env)
        self.wait_ready()
        return self.aggregator_process

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the aggregator answers its health check over mutual TLS."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.aggregator_process and self.aggregator_process.poll() is not None:
                raise RuntimeError(
                    f"aggregator exited: {self.log('aggregator')[-3000:]}"
                )
            try:
                with channel(self.aggregator_address, self.tls("coordinator")) as ch:
                    stub = health_pb2_grpc.HealthStub(ch)
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    return
            except grpc.RpcError:
                time.sleep(0.2)
        raise TimeoutError(f"aggregator not ready: {self.log('aggregator')[-3000:]}")

    def kill_aggregator(self) -> None:
        assert self.aggregator_process is not None
        self.aggregator_process.send_signal(signal.SIGKILL)
        self.aggregator_process.wait(timeout=10)

    def start_participant(
        self, name: str, datasets: dict[str, dict[str, str]], **values: str
    ) -> subprocess.Popen:
        self.issue(name)
        env = self._env(
            name,
            CRUCIBLE_AGGREGATOR=self.aggregator_address,
            CRUCIBLE_METRICS_LISTEN=f"127.0.0.1:{free_port()}",
            CRUCIBLE_DATASETS=json.dumps(datasets),
            CRUCIBLE_POLL_SECONDS="5",
            CRUCIBLE_HEARTBEAT_SECONDS="1",
            CRUCIBLE_BACKOFF_INITIAL_SECONDS="0.2",
            CRUCIBLE_BACKOFF_MAX_SECONDS="2",
            **values,
        )
        return self._spawn(name, ["participant"], env)

    def admin(self, name: str = "coordinator") -> AdminClient:
        return AdminClient(self.aggregator_address, self.tls(name), timeout_seconds=30)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for_phase(
    admin: AdminClient, run_id: str, phases: tuple[str, ...], timeout: float = 120.0
):
    """Follow the run's watch stream until it reaches one of ``phases``."""
    deadline = time.monotonic() + timeout
    for status in admin.watch_run(run_id, timeout=timeout):
        if status.phase in phases:
            return status
        if time.monotonic() > deadline:
            break
    status = admin.get_run(run_id)
    assert status.phase in phases, f"run {run_id} is {status.phase}: {status.message}"
    return status
