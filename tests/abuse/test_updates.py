"""Replayed and boosted updates: refused or excluded, counted, shown on the run."""

from __future__ import annotations

import numpy as np
import pytest

from crucible.client import pull_model
from crucible.protocol import pb
from crucible.tensors import read_file
from tests.abuse.conftest import metric, open_run
from tests.federation import Federation, wait_for_phase

pytestmark = pytest.mark.timeout(90)
NAMES = ["org-a", "org-b", "org-c", "org-d", "org-e"]


def test_update_recorded_in_round_n_is_refused_in_round_n_plus_1(
    aggregator: Federation,
):
    run = open_run(aggregator, "replay", ["org-a", "org-b"], rounds=2)
    recorded: list[pb.UpdateChunk] = []
    for name, client in run.clients.items():
        task = client.task(run.run_id, pb.TRAIN)
        weights = {k: (v + 0.01).astype(v.dtype) for k, v in client.fetch(task).items()}
        receipt = client.send(task, weights)
        assert receipt.accepted, receipt.message
        if name == "org-a":
            recorded = list(client.chunks(task, weights))
    for client in run.clients.values():
        client.evaluate(client.task(run.run_id, pb.EVALUATE))

    client = run.clients["org-a"]
    task = client.task(run.run_id, pb.TRAIN)
    assert task.round == 2
    exact = client.send(task, {}, chunks=iter(recorded))
    assert (exact.accepted, exact.reason) == (False, "StaleRound")

    relabelled = [pb.UpdateChunk(), *recorded[1:]]
    relabelled[0].CopyFrom(recorded[0])
    relabelled[0].header.round = 2
    receipt = client.send(task, {}, chunks=iter(relabelled))
    assert (receipt.accepted, receipt.reason) == (False, "WrongBase")
    assert "global model" in receipt.message
    assert dict(run.status().refused_updates) == {"StaleRound": 1, "WrongBase": 1}
    run.close()


def test_update_with_a_norm_far_above_the_median_is_excluded(aggregator: Federation):
    strategy = {"name": "fedavg", "parameters": {"max_norm_ratio": 5}}
    run = open_run(aggregator, "norm", NAMES, rounds=1, strategy=strategy)
    rng = np.random.default_rng(5)
    sent = {}
    for name, client in run.clients.items():
        task = client.task(run.run_id, pb.TRAIN)
        base = client.fetch(task)
        scale = 100.0 if name == "org-e" else 0.01
        sent[name] = {
            k: (v + scale * rng.normal(size=v.shape)).astype(np.float32)
            for k, v in base.items()
        }
        assert client.send(task, sent[name]).accepted
    for client in run.clients.values():
        client.evaluate(client.task(run.run_id, pb.EVALUATE))
    with aggregator.admin() as admin:
        final = wait_for_phase(admin, run.run_id, ("Succeeded", "Failed"), timeout=30)
    assert final.phase == "Succeeded", final.message
    assert dict(final.refused_updates) == {"NormOutlier": 1}
    assert final.rounds[0].participants == 4
    assert "NormOutlier" in run.participant("org-e").message
    assert "max_norm_ratio" in run.participant("org-e").message
    assert (
        metric(aggregator, 'crucible_updates_refused_total{reason="NormOutlier"}') == 1
    )

    output = aggregator.root / "norm.safetensors"
    pull_model(
        aggregator.aggregator_address, aggregator.tls("org-a"), run.run_id, output
    )
    result = read_file(output)
    honest = [sent[n] for n in NAMES if n != "org-e"]
    for name, array in result.items():
        expected = np.mean([h[name].astype(np.float64) for h in honest], axis=0)
        np.testing.assert_allclose(array, expected, rtol=1e-5, atol=1e-6)
    run.close()


def test_norm_check_is_off_unless_the_run_sets_it(aggregator: Federation):
    run = open_run(aggregator, "norm-off", NAMES[:3], rounds=1)
    rng = np.random.default_rng(6)
    for name, client in run.clients.items():
        task = client.task(run.run_id, pb.TRAIN)
        base = client.fetch(task)
        scale = 100.0 if name == "org-c" else 0.01
        local = {
            k: (v + scale * rng.normal(size=v.shape)).astype(np.float32)
            for k, v in base.items()
        }
        assert client.send(task, local).accepted
    for client in run.clients.values():
        client.evaluate(client.task(run.run_id, pb.EVALUATE))
    with aggregator.admin() as admin:
        final = wait_for_phase(admin, run.run_id, ("Succeeded", "Failed"), timeout=30)
    assert final.rounds[0].participants == 3
    assert dict(final.refused_updates) == {}
    run.close()


def test_message_above_the_size_limit_is_refused_and_the_update_then_counts(
    aggregator: Federation,
):
    import grpc

    from crucible.protocol import rpc
    from crucible.transport import MAX_MESSAGE_BYTES

    run = open_run(aggregator, "oversized", ["org-a", "org-b"], rounds=1)
    client = run.clients["org-a"]
    task = client.task(run.run_id, pb.TRAIN)
    weights = client.fetch(task)
    certificate, key, ca = aggregator.tls("org-a").read()
    # A peer whose own limit lets it send one message of twice the aggregator's limit.
    loose = grpc.secure_channel(
        aggregator.aggregator_address,
        grpc.ssl_channel_credentials(ca, key, certificate),
        options=[("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES)],
    )
    header = next(client.chunks(task, weights))
    oversized = pb.UpdateChunk(data=b"\0" * (2 * MAX_MESSAGE_BYTES))
    with loose, pytest.raises(grpc.RpcError) as raised:
        rpc.FederationStub(loose).SendUpdate(iter([header, oversized]), timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    receipt = client.send(task, weights)
    assert receipt.accepted, receipt.message
    assert dict(run.status().refused_updates) == {}
    run.close()


def test_upload_still_arriving_when_its_round_closes_is_refused_as_stale(
    aggregator: Federation,
):
    import threading

    run = open_run(
        aggregator,
        "late",
        ["org-a", "org-b"],
        rounds=2,
        minParticipants=1,
        graceSeconds=1,
    )
    client, other = run.clients["org-a"], run.clients["org-b"]
    task = client.task(run.run_id, pb.TRAIN)
    base = client.fetch(task)
    release = threading.Event()
    started = threading.Event()
    receipts: list[pb.UpdateReceipt] = []

    def late_chunks():
        parts = list(client.chunks(task, base))
        yield parts[0]
        yield pb.UpdateChunk(data=parts[1].data[:100])
        started.set()
        release.wait(timeout=60)
        yield pb.UpdateChunk(data=parts[1].data[100:])
        yield from parts[2:]

    late = threading.Thread(
        target=lambda: receipts.append(client.send(task, {}, chunks=late_chunks()))
    )
    late.start()
    assert started.wait(timeout=30)
    assert other.send(other.task(run.run_id, pb.TRAIN), base).accepted
    other.evaluate(other.task(run.run_id, pb.EVALUATE))  # round 1 closed without org-a
    release.set()
    late.join(timeout=60)

    assert (receipts[0].accepted, receipts[0].reason) == (False, "StaleRound")
    status = run.status()
    assert dict(status.refused_updates) == {"StaleRound": 1}
    assert "unwritable" not in status.message
    updates = aggregator.state_dir / "runs" / run.run_id / "updates"
    assert list(updates.rglob("*org-a*")) == []
    run.close()


def test_a_participant_holds_at_most_one_receiving_slot(aggregator: Federation):
    import threading
    import time

    import grpc

    run = open_run(aggregator, "slots", ["org-a", "org-b"], rounds=1)
    client, other = run.clients["org-a"], run.clients["org-b"]
    task = client.task(run.run_id, pb.TRAIN)
    weights = client.fetch(task)
    release = threading.Event()
    receipts: list[pb.UpdateReceipt] = []

    def stalled():
        parts = list(client.chunks(task, weights))
        yield parts[0]
        yield pb.UpdateChunk(data=parts[1].data[:100])
        release.wait(timeout=60)
        yield pb.UpdateChunk(data=parts[1].data[100:])
        yield from parts[2:]

    first = threading.Thread(
        target=lambda: receipts.append(client.send(task, {}, chunks=stalled()))
    )
    first.start()
    # The aggregator is writing the stalled upload once its temporary file exists.
    updates = aggregator.state_dir / "runs" / run.run_id / "updates" / "0001"
    deadline = time.monotonic() + 30
    while not list(updates.glob(".org-a.safetensors.tmp-*")):
        assert time.monotonic() < deadline, "the stalled upload never started"
        time.sleep(0.05)

    for _ in range(3):
        with pytest.raises(grpc.RpcError) as raised:
            client.send(task, weights)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "still in progress" in (raised.value.details() or "")
    receipt = other.send(other.task(run.run_id, pb.TRAIN), weights)
    assert receipt.accepted, receipt.message

    release.set()
    first.join(timeout=60)
    assert receipts[0].accepted, receipts[0].message
    assert dict(run.status().refused_updates) == {"UploadInProgress": 3}
    run.close()
