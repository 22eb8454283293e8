"""Random bytes and malformed messages on the aggregator's port never take it down.

Property-based, bounded in count and time: each property tries a few dozen inputs.
The last test proves the point: after all of it the aggregator still answers its
health check and completes a run.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crucible.protocol import pb
from crucible.transport import channel
from tests.abuse.conftest import open_run
from tests.federation import Federation, wait_for_phase

pytestmark = pytest.mark.timeout(300)
BOUNDED = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
UNARY = {
    "Federation": [
        "ListOffers",
        "Join",
        "GetTask",
        "ReportStatistics",
        "ReportEvaluation",
        "Heartbeat",
    ],
    "Admin": ["StartRun", "GetRun", "ListRuns", "CancelRun", "UpdateParticipants"],
}
STREAMING = {
    "Federation": ["FetchModel", "PullModel"],
    "Admin": ["WatchRun"],
}
DTYPES = ["float32", "float64", "int64", "object", "<U8", "V16", "", "float32\x00"]


def host_port(federation: Federation) -> tuple[str, int]:
    host, _, port = federation.aggregator_address.rpartition(":")
    return host, int(port)


def alive(federation: Federation) -> None:
    assert federation.aggregator_process is not None
    assert federation.aggregator_process.poll() is None, "the aggregator exited"


@BOUNDED
@given(payload=st.binary(max_size=4096))
def test_random_bytes_before_the_handshake_do_not_crash_the_aggregator(
    aggregator: Federation, payload: bytes
):
    with socket.create_connection(host_port(aggregator), timeout=2) as raw:
        raw.sendall(payload)
        raw.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            raw.recv(1024)
    alive(aggregator)


@BOUNDED
@given(payload=st.binary(min_size=1, max_size=4096))
def test_random_bytes_after_the_handshake_do_not_crash_the_aggregator(
    aggregator: Federation, payload: bytes
):
    files = aggregator.issue("org-fuzz")
    context = ssl.create_default_context(cafile=str(files.ca))
    context.check_hostname = False
    context.load_cert_chain(str(files.certificate), str(files.key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(host_port(aggregator), timeout=2) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(payload)
        with contextlib.suppress(OSError):
            tls.recv(1024)
    alive(aggregator)


@pytest.fixture(scope="module")
def channels(aggregator: Federation):
    participant = channel(aggregator.aggregator_address, aggregator.issue("org-fuzz"))
    operator = channel(aggregator.aggregator_address, aggregator.tls("coordinator"))
    yield {"Federation": participant, "Admin": operator}
    participant.close()
    operator.close()


ANSWERS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
}


@BOUNDED
@given(
    method=st.sampled_from([(s, m) for s, ms in UNARY.items() for m in ms]),
    payload=st.binary(max_size=2048),
)
def test_malformed_unary_requests_get_an_error_not_a_crash(
    aggregator: Federation, channels, method, payload
):
    service, name = method
    call = channels[service].unary_unary(f"/crucible.v1.{service}/{name}")
    try:
        call(payload, timeout=3)
    except grpc.RpcError as error:
        assert error.code() in ANSWERS, (name, error.code(), error.details())
    alive(aggregator)


@BOUNDED
@given(
    method=st.sampled_from([(s, m) for s, ms in STREAMING.items() for m in ms]),
    payload=st.binary(max_size=2048),
)
def test_malformed_streaming_requests_get_an_error_not_a_crash(
    aggregator: Federation, channels, method, payload
):
    service, name = method
    call = channels[service].unary_stream(f"/crucible.v1.{service}/{name}")
    try:
        for _ in call(payload, timeout=3):
            pass
    except grpc.RpcError as error:
        assert error.code() in ANSWERS, (name, error.code(), error.details())
    alive(aggregator)


@BOUNDED
@given(chunks=st.lists(st.binary(max_size=2048), max_size=6))
def test_malformed_update_streams_get_an_error_not_a_crash(
    aggregator: Federation, channels, chunks
):
    call = channels["Federation"].stream_unary("/crucible.v1.Federation/SendUpdate")
    try:
        call(iter(chunks), timeout=5)
    except grpc.RpcError as error:
        assert error.code() in ANSWERS, (error.code(), error.details())
    alive(aggregator)


@pytest.fixture(scope="module")
def training(aggregator: Federation):
    """A run in round 1 whose participant org-a sends hostile updates."""
    run = open_run(aggregator, "fuzz-updates", ["org-a", "org-b"], rounds=1)
    client = run.clients["org-a"]
    yield client, client.task(run.run_id, pb.TRAIN)
    run.close()


tensors = st.lists(
    st.builds(
        pb.TensorInfo,
        name=st.sampled_from(
            ["0.weight", "0.bias", "2.weight", "2.bias", "", "x" * 300]
        ),
        dtype=st.sampled_from(DTYPES),
        shape=st.lists(st.integers(-(2**40), 2**62), max_size=4),
    ),
    max_size=6,
)


@BOUNDED
@given(
    manifest=tensors,
    samples=st.integers(-(2**63), 2**63 - 1),
    metric=st.floats(allow_nan=True, allow_infinity=True),
    data=st.lists(st.binary(max_size=4096), max_size=4),
)
def test_hostile_update_headers_are_refused_without_a_crash(
    aggregator: Federation, training, manifest, samples, metric, data
):
    client, task = training
    header = pb.UpdateHeader(
        run_id=task.run_id,
        round=task.round,
        samples=samples,
        metrics={"train_loss": metric},
        base_digest=task.model_digest,
        manifest=pb.Manifest(tensors=manifest),
    )
    chunks = [pb.UpdateChunk(header=header), *(pb.UpdateChunk(data=d) for d in data)]
    try:
        receipt = client.send(task, {}, chunks=iter(chunks))
        assert not receipt.accepted
        assert receipt.reason and receipt.message
    except grpc.RpcError as error:
        assert error.code() in ANSWERS, (error.code(), error.details())
    alive(aggregator)


def test_after_fuzzing_the_aggregator_answers_health_and_completes_a_run(
    aggregator: Federation,
):
    with channel(aggregator.aggregator_address, aggregator.tls("coordinator")) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    run = open_run(aggregator, "after-fuzzing", ["org-a", "org-b"], rounds=1)
    for client in run.clients.values():
        task = client.task(run.run_id, pb.TRAIN)
        local = {k: (v + np.float32(0.01)) for k, v in client.fetch(task).items()}
        assert client.send(task, local).accepted
    for client in run.clients.values():
        client.evaluate(client.task(run.run_id, pb.EVALUATE))
    with aggregator.admin() as admin:
        final = wait_for_phase(admin, run.run_id, ("Succeeded", "Failed"), timeout=30)
    assert final.phase == "Succeeded", final.message
    alive(aggregator)
    run.close()
