"""Identity is the certificate: expired, shared, impersonating and removed identities."""

from __future__ import annotations

import datetime as dt
import time

import grpc
import numpy as np
import pytest

from crucible import certificates
from crucible.errors import InputError
from crucible.protocol import pb
from crucible.transport import TlsFiles
from tests.abuse.conftest import audit_records, open_run
from tests.federation import Federation, wait_for_phase
from tests.lightclient import LightClient

pytestmark = pytest.mark.timeout(90)


def noisy(weights: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        k: (v + 0.01 * rng.normal(size=v.shape)).astype(v.dtype)
        for k, v in weights.items()
    }


def test_expired_certificate_is_refused_at_the_handshake(aggregator: Federation):
    directory = aggregator.root / "expired"
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    certificates.issue(
        aggregator.pki,
        "org-late",
        role="participant",
        not_before=start,
        days=1,
        out=directory,
    )
    files = TlsFiles(
        directory / "org-late.crt",
        directory / "org-late.key",
        aggregator.pki / "ca.crt",
    )
    client = LightClient(aggregator.aggregator_address, files)
    with pytest.raises(grpc.RpcError) as raised:
        client.stub.ListOffers(pb.OffersRequest(), timeout=5)
    client.close()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    # The handshake never reaches Crucible's code; gRPC's TLS layer logs the reason.
    deadline = time.monotonic() + 10
    while "certificate has expired" not in aggregator.log("aggregator"):
        assert time.monotonic() < deadline, "no handshake failure logged"
        time.sleep(0.2)


def test_expired_certificate_is_named_as_the_reason_by_the_trust_check(
    aggregator: Federation,
):
    pem = (aggregator.root / "expired" / "org-late.crt").read_bytes()
    problem = certificates.trust_problem(
        pem, (aggregator.pki / "ca.crt").read_bytes(), now=dt.datetime.now(dt.UTC)
    )
    assert problem is not None and "expired" in problem


def test_two_processes_sharing_one_certificate_count_once_per_round(
    aggregator: Federation,
):
    run = open_run(aggregator, "shared-cert", ["org-a", "org-b"], rounds=1)
    twin = LightClient(aggregator.aggregator_address, aggregator.tls("org-a"))
    first, second = run.clients["org-a"], twin
    task = first.task(run.run_id, pb.TRAIN)
    weights = first.fetch(task)

    assert first.send(task, noisy(weights, 1)).accepted
    receipt = second.send(task, noisy(weights, 2))
    assert (receipt.accepted, receipt.reason) == (False, "Duplicate")
    status = run.status()
    assert dict(status.refused_updates) == {"Duplicate": 1}
    assert "Duplicate" in run.participant("org-a").message
    assert '"reason": "Duplicate"' in aggregator.log("aggregator")
    twin.close()
    run.close()


def update_chunk_with_claim(header: pb.UpdateHeader, claimed: str) -> bytes:
    """An UpdateChunk whose header carries an extra field naming ``claimed``."""
    extra = claimed.encode()
    # field 99, wire type 2 (length-delimited): tag 99 << 3 | 2 as a varint
    unknown = bytes([0x9A, 0x06, len(extra)]) + extra
    body = header.SerializeToString() + unknown
    return bytes([0x0A]) + _varint(len(body)) + body


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_payload_claiming_another_organization_counts_for_the_certificate_holder(
    aggregator: Federation,
):
    run = open_run(aggregator, "claimed-name", ["org-a", "org-b"], rounds=1)
    client = run.clients["org-a"]
    task = client.task(run.run_id, pb.TRAIN)
    weights = noisy(client.fetch(task), 3)
    header = pb.UpdateHeader(
        run_id=task.run_id,
        round=task.round,
        samples=10,
        base_digest=task.model_digest,
        metrics={"train_loss": 1.0},
        manifest=pb.Manifest(
            tensors=[
                pb.TensorInfo(name=k, dtype=str(v.dtype), shape=v.shape)
                for k, v in weights.items()
            ]
        ),
    )
    send = client.channel.stream_unary(
        "/crucible.v1.Federation/SendUpdate",
        request_serializer=None,
        response_deserializer=pb.UpdateReceipt.FromString,
    )
    data = [
        pb.UpdateChunk(data=v.tobytes()).SerializeToString() for v in weights.values()
    ]
    receipt = send(iter([update_chunk_with_claim(header, "org-b"), *data]), timeout=30)
    assert receipt.accepted, receipt.message

    states = {p.name: p.state for p in run.status().participants}
    assert states["org-a"] == "Reported"
    assert states["org-b"] != "Reported"
    other = run.clients["org-b"]
    other_task = other.task(run.run_id, pb.TRAIN)
    assert other.send(other_task, noisy(weights, 4)).accepted
    run.close()


def test_participant_certificate_on_the_admin_api_is_refused_and_audited(
    aggregator: Federation,
):
    aggregator.issue("org-a")
    with aggregator.admin("org-a") as admin, pytest.raises(Exception) as raised:
        admin.cancel_run("run-anything")
    assert "PERMISSION_DENIED" in str(raised.value)
    refused = [
        r
        for r in audit_records(aggregator)
        if r["action"] == "call_refused" and r["detail"].get("method") == "CancelRun"
    ]
    assert refused and refused[-1]["actor"] == "org-a (participant)"


def test_removed_organization_is_cut_off_from_the_next_round(aggregator: Federation):
    names = ["org-a", "org-b", "org-c"]
    run = open_run(
        aggregator, "removal", names, rounds=2, minParticipants=2, graceSeconds=30
    )
    tasks = {n: c.task(run.run_id, pb.TRAIN) for n, c in run.clients.items()}
    weights = run.clients["org-a"].fetch(tasks["org-a"])
    for seed, name in enumerate(names):
        assert run.clients[name].send(tasks[name], noisy(weights, seed)).accepted
    for client in run.clients.values():
        client.evaluate(client.task(run.run_id, pb.EVALUATE))

    with aggregator.admin() as admin:
        admin.update_participants(run.run_id, ["org-a", "org-b"])
    removed = run.clients["org-c"]
    with pytest.raises(grpc.RpcError) as raised:
        removed.task(run.run_id, pb.TRAIN)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "removed from run" in raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        removed.send(tasks["org-c"], weights)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # Round 2 closes on the two remaining participants alone.
    for seed, name in enumerate(["org-a", "org-b"]):
        client = run.clients[name]
        task = client.task(run.run_id, pb.TRAIN)
        assert task.round == 2
        assert client.send(task, noisy(client.fetch(task), 10 + seed)).accepted
    for name in ["org-a", "org-b"]:
        run.clients[name].evaluate(run.clients[name].task(run.run_id, pb.EVALUATE))
    with aggregator.admin() as admin:
        final = wait_for_phase(admin, run.run_id, ("Succeeded", "Failed"), timeout=30)
    assert final.phase == "Succeeded", final.message
    assert final.rounds[-1].participants == 2
    assert run.participant("org-c").state == "Removed"
    changes = [
        r
        for r in audit_records(aggregator)
        if r["action"] == "participants_removed" and r["run_id"] == run.run_id
    ]
    assert changes[0]["actor"] == "coordinator"
    assert changes[0]["detail"]["removed"] == ["org-c"]
    run.close()


def test_removal_below_the_quorum_is_refused_with_the_field(aggregator: Federation):
    run = open_run(aggregator, "removal-quorum", ["org-a", "org-b"], rounds=1)
    with aggregator.admin() as admin, pytest.raises(InputError) as raised:
        admin.update_participants(run.run_id, ["org-a"])
    assert "minParticipants" in str(raised.value)
    assert run.participant("org-b").state != "Removed"
    run.close()


def test_participant_with_an_expired_certificate_stops_with_the_reason(
    aggregator: Federation,
):
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    certificates.issue(
        aggregator.pki, "org-stale", role="participant", not_before=start, days=1
    )
    process = aggregator.start_participant("org-stale", {})
    assert process.wait(timeout=60) == 2
    log = aggregator.log("org-stale")
    assert "certificate expired" in log
    assert "the participant does not start" in log
