"""The real federation on one machine: CA, certificates, aggregator and participants.

The demo runs the same services a cluster runs, as processes of this machine: one
``crucible aggregator`` and one ``crucible participant`` per organization, configured
only through ``CRUCIBLE_*`` variables and talking mutual TLS on 127.0.0.1, on ports the
kernel hands out. The participants stay up across runs; each run's task picks the
table (one per fold) by name. Every service logs to ``logs/NAME.log`` under the work
directory, and the aggregator keeps its state in a fresh ``state/`` there, so a demo
never resumes an older one's runs.

Not here: anything a cluster adds (Kubernetes, the operator, certificate rotation).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crucible import certificates
from crucible.client import AdminClient
from crucible.errors import CrucibleError, InputError, TemporaryError
from crucible.protocol import pb
from crucible.spec import RunSpec
from crucible.transport import TlsFiles

AGGREGATOR = "aggregator"
OPERATOR = "coordinator"
LOOPBACK = "127.0.0.1"
READY_SECONDS = 60.0
STOP_SECONDS = 10.0
TERMINAL_PHASES = ("Succeeded", "Failed", "Cancelled")

# Every service is a CPU-bound torch process on a small machine: one thread each.
QUIET_THREADS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "CRUCIBLE_TORCH_THREADS": "1",
}


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """One running service process and where it listens."""

    name: str
    process: subprocess.Popen
    metrics: str
    log: Path


@dataclass
class Federation:
    """Aggregator and participants as processes under ``directory``.

    ``datasets`` maps each organization to its tables by name, as the participant's
    ``CRUCIBLE_DATASETS`` setting: ``{name: {"train": path, "evaluation": path}}``.
    """

    directory: Path
    datasets: dict[str, dict[str, dict[str, str]]]
    services: list[Service] = field(default_factory=list)
    address: str = ""

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def organizations(self) -> list[str]:
        return list(self.datasets)

    def tls(self, name: str) -> TlsFiles:
        return TlsFiles(
            self.pki / f"{name}.crt", self.pki / f"{name}.key", self.pki / "ca.crt"
        )

    def start(self) -> None:
        """Certificates, the aggregator, then every participant; waits for ready."""
        state = self.directory / "state"
        shutil.rmtree(state, ignore_errors=True)
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)

        certificates.init_ca(self.pki)
        certificates.issue(
            self.pki, AGGREGATOR, role="aggregator", ip_addresses=[LOOPBACK]
        )
        certificates.issue(self.pki, OPERATOR, role="operator")
        for name in self.organizations:
            certificates.issue(self.pki, name, role="participant")

        self.address = f"{LOOPBACK}:{free_port()}"
        self._spawn(
            AGGREGATOR,
            "aggregator",
            CRUCIBLE_LISTEN=self.address,
            CRUCIBLE_STATE_DIR=str(state),
            # The demo's state directory is throwaway: no free-space reserve.
            CRUCIBLE_MIN_FREE_BYTES="0",
        )
        self._wait_ready()
        for name in self.organizations:
            self._spawn(
                name,
                "participant",
                CRUCIBLE_AGGREGATOR=self.address,
                CRUCIBLE_DATASETS=json.dumps(self.datasets[name]),
                # Loopback answers at once: short polls and backoff keep rounds short.
                CRUCIBLE_POLL_SECONDS="5",
                CRUCIBLE_BACKOFF_INITIAL_SECONDS="0.2",
                CRUCIBLE_BACKOFF_MAX_SECONDS="2",
            )

    def _spawn(self, name: str, command: str, **settings: str) -> None:
        files = self.tls(name)
        metrics = f"{LOOPBACK}:{free_port()}"
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith("CRUCIBLE_")
        }
        environment.update(QUIET_THREADS)
        environment.update(
            CRUCIBLE_TLS__CERTIFICATE=str(files.certificate),
            CRUCIBLE_TLS__KEY=str(files.key),
            CRUCIBLE_TLS__CA=str(files.ca),
            CRUCIBLE_METRICS_LISTEN=metrics,
            PYTHONUNBUFFERED="1",
            **settings,
        )
        log = self.directory / "logs" / f"{name}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "crucible.cli", command],
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.services.append(Service(name, process, metrics, log))

    def _wait_ready(self) -> None:
        """Block until the aggregator answers an admin call over mutual TLS."""
        deadline = time.monotonic() + READY_SECONDS
        aggregator = self.services[0]
        while time.monotonic() < deadline:
            if aggregator.process.poll() is not None:
                raise InputError(
                    f"aggregator exited with code {aggregator.process.returncode} "
                    f"before it was ready; see {aggregator.log}:\n"
                    f"{_tail(aggregator.log)}"
                )
            try:
                with self.admin(timeout_seconds=2.0) as admin:
                    admin.list_runs()
                return
            except TemporaryError:
                time.sleep(0.2)
        raise TemporaryError(
            f"aggregator did not answer within {READY_SECONDS:.0f} s; "
            f"see {aggregator.log}"
        )

    def admin(self, *, timeout_seconds: float = 30.0) -> AdminClient:
        return AdminClient(
            self.address, self.tls(OPERATOR), timeout_seconds=timeout_seconds
        )

    def check_alive(self) -> None:
        """Refuse to go on when a service has exited; name it and show its log."""
        for service in self.services:
            if service.process.poll() is not None:
                raise TemporaryError(
                    f"{service.name} exited with code {service.process.returncode}; "
                    f"see {service.log}:\n{_tail(service.log)}"
                )

    def run(self, key: str, spec: RunSpec) -> Iterator[pb.RunStatus]:
        """Start the run keyed by ``key`` and yield its status until it ends."""
        with self.admin() as admin:
            started = admin.start_run(key, spec)
            yield started
            for status in admin.watch_run(started.run_id):
                yield status
                if status.phase in TERMINAL_PHASES:
                    return
            yield admin.get_run(started.run_id)

    def endpoints(self) -> dict[str, str]:
        """Each service's /metrics address, by service name."""
        return {service.name: service.metrics for service in self.services}

    def wait(self) -> None:
        """Block until a service exits (``--hold``); Ctrl-C ends the wait."""
        while all(s.process.poll() is None for s in self.services):
            time.sleep(1.0)
        self.check_alive()

    def stop(self) -> None:
        """Terminate every service this federation started, then kill stragglers."""
        for service in self.services:
            if service.process.poll() is None:
                service.process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for service in self.services:
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()

    def __enter__(self) -> Federation:
        try:
            self.start()
        except (CrucibleError, OSError):
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path, characters: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-characters:]
    except OSError:
        return "(no log)"
