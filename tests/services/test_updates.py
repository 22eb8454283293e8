"""Every update is checked before it counts; refusals are counted by reason."""

from __future__ import annotations

import pickle
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from crucible import spec as specs
from crucible.protocol import pb
from tests.federation import Federation, spec
from tests.lightclient import LightClient

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def training(
    federation: Federation,
) -> Iterator[tuple[Federation, LightClient, pb.Task]]:
    """An aggregator with a run in round 1 and a light participant holding its task."""
    federation.start_aggregator()
    body = spec(["org-a", "org-b"], rounds=2)
    client = LightClient(federation.aggregator_address, federation.issue("org-a"))
    with federation.admin() as admin:
        run_id = admin.start_run("uid-updates", specs.parse(body)).run_id
    client.join(run_id)
    other = LightClient(federation.aggregator_address, federation.issue("org-b"))
    other.join(run_id)
    for c in (client, other):
        c.report_statistics(run_id, body["task"]["features"])
    task = client.task(run_id, pb.TRAIN)
    yield federation, client, task
    client.close()
    other.close()


def refused(federation: Federation, run_id: str) -> dict[str, int]:
    with federation.admin() as admin:
        return dict(admin.get_run(run_id).refused_updates)


def metric(federation: Federation, line_start: str) -> float:
    url = f"http://{federation.aggregator_metrics}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.split()[-1])
    raise AssertionError(f"{line_start} not exported")


def test_update_with_nan_is_refused_and_counted(training):
    federation, client, task = training
    weights = client.fetch(task)
    name = next(iter(weights))
    weights[name] = weights[name].copy()
    weights[name].flat[0] = np.nan
    receipt = client.send(task, weights)
    assert not receipt.accepted
    assert receipt.reason == "NotFinite"
    assert name in receipt.message
    assert refused(federation, task.run_id) == {"NotFinite": 1}
    assert metric(federation, 'crucible_updates_refused_total{reason="NotFinite"}') == 1


def test_update_with_wrong_shape_is_refused_and_counted(training):
    federation, client, task = training
    weights = client.fetch(task)
    name = next(iter(weights))
    weights[name] = np.zeros((3, 3), dtype=np.float32)
    receipt = client.send(task, weights)
    assert (receipt.accepted, receipt.reason) == (False, "WrongShape")
    assert "expected" in receipt.message
    assert refused(federation, task.run_id) == {"WrongShape": 1}


def test_update_with_wrong_dtype_is_refused(training):
    _federation, client, task = training
    weights = {k: v.astype(np.float64) for k, v in client.fetch(task).items()}
    receipt = client.send(task, weights)
    assert (receipt.accepted, receipt.reason) == (False, "WrongDtype")


def test_truncated_update_stream_is_refused(training):
    _federation, client, task = training
    weights = client.fetch(task)
    manifest = pb.Manifest(
        tensors=[
            pb.TensorInfo(name=k, dtype=str(v.dtype), shape=v.shape)
            for k, v in weights.items()
        ]
    )
    header = pb.UpdateHeader(
        run_id=task.run_id,
        round=task.round,
        samples=5,
        base_digest=task.model_digest,
        manifest=manifest,
    )
    chunks = iter([pb.UpdateChunk(header=header), pb.UpdateChunk(data=b"\x00" * 16)])
    receipt = client.send(task, weights, chunks=chunks)
    assert (receipt.accepted, receipt.reason) == (False, "Truncated")


def test_pickle_payload_is_refused_without_being_executed(training, tmp_path):
    _federation, client, task = training
    marker = tmp_path / "executed"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Exploit())
    header = pb.UpdateHeader(
        run_id=task.run_id,
        round=task.round,
        samples=5,
        base_digest=task.model_digest,
        manifest=pb.Manifest(
            tensors=[
                pb.TensorInfo(name="0.weight", dtype="object", shape=[len(payload)])
            ]
        ),
    )
    chunks = iter([pb.UpdateChunk(header=header), pb.UpdateChunk(data=payload)])
    receipt = client.send(task, {}, chunks=chunks)
    assert not receipt.accepted
    assert receipt.reason == "WrongDtype"
    assert not marker.exists()


def test_second_update_from_the_same_organization_does_not_count(training):
    federation, client, task = training
    weights = client.fetch(task)
    assert client.send(task, weights).accepted
    second = LightClient(federation.aggregator_address, federation.tls("org-a"))
    receipt = second.send(task, weights)
    assert (receipt.accepted, receipt.reason) == (False, "Duplicate")
    second.close()


def test_update_for_another_round_is_refused_as_stale(training):
    _federation, client, task = training
    weights = client.fetch(task)
    receipt = client.send(task, weights, header={"round": task.round + 1})
    assert (receipt.accepted, receipt.reason) == (False, "StaleRound")
