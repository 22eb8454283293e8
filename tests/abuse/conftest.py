"""Shared pieces of the abuse suite: one aggregator per module, runs in round 1."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from crucible import spec as specs
from crucible.protocol import pb
from tests.federation import Federation, spec
from tests.lightclient import LightClient


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """One aggregator for the tests of a module; each test starts its own run."""
    federation = Federation(tmp_path_factory.mktemp("abuse"))
    federation.start_aggregator()
    yield federation
    federation.stop()


@dataclass
class OpenRun:
    """A run whose participants joined and reported statistics."""

    federation: Federation
    run_id: str
    clients: dict[str, LightClient]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def status(self) -> pb.RunStatus:
        with self.federation.admin() as admin:
            return admin.get_run(self.run_id)

    def participant(self, name: str) -> pb.ParticipantStatus:
        return next(p for p in self.status().participants if p.name == name)


def open_run(
    federation: Federation, key: str, names: list[str], **overrides: object
) -> OpenRun:
    """Start run ``key`` naming ``names``; every light client joins and reports."""
    body = spec(names, **overrides)
    with federation.admin() as admin:
        run_id = admin.start_run(key, specs.parse(body)).run_id
    clients = {
        name: LightClient(federation.aggregator_address, federation.issue(name))
        for name in names
    }
    for client in clients.values():
        client.join(run_id)
        client.report_statistics(run_id, body["task"]["features"])
    return OpenRun(federation, run_id, clients)


def metric(federation: Federation, line_start: str) -> float:
    """The value of the first exported sample line starting with ``line_start``."""
    url = f"http://{federation.aggregator_metrics}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.split()[-1])
    raise AssertionError(f"{line_start} not exported")


def audit_records(federation: Federation) -> list[dict]:
    """The aggregator's audit trail as written to audit.jsonl."""
    path = federation.state_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]
