"""Tensors cross the protocol intact, in chunks, whatever gRPC's message limit."""

from __future__ import annotations

import numpy as np
import pytest

from crucible import spec as specs
from crucible.client import pull_model
from crucible.protocol import pb
from crucible.tensors import read_file
from crucible.transport import MAX_MESSAGE_BYTES
from tests.federation import Federation, spec, wait_for_phase
from tests.lightclient import LightClient

pytestmark = pytest.mark.timeout(180)


def test_model_larger_than_a_grpc_message_round_trips_bit_for_bit(
    federation: Federation,
):
    body = spec(["org-a"], rounds=1, model={"hidden": [2560, 2560]})
    federation.start_aggregator()
    client = LightClient(federation.aggregator_address, federation.issue("org-a"))
    with federation.admin() as admin:
        run_id = admin.start_run("uid-large", specs.parse(body)).run_id
        client.join(run_id)
        client.report_statistics(run_id, body["task"]["features"])
        task = client.task(run_id, pb.TRAIN)
        start = client.fetch(task)
        size = sum(v.nbytes for v in start.values())
        assert size > 2 * MAX_MESSAGE_BYTES

        rng = np.random.default_rng(11)
        sent = {
            k: rng.normal(size=v.shape).astype(np.float32) for k, v in start.items()
        }
        assert client.send(task, sent, samples=5).accepted
        client.evaluate(client.task(run_id, pb.EVALUATE))
        assert wait_for_phase(admin, run_id, ("Succeeded",)).phase == "Succeeded"

    output = federation.root / "large.safetensors"
    pull_model(federation.aggregator_address, federation.tls("org-a"), run_id, output)
    received = read_file(output)
    assert set(received) == set(sent)
    for name, array in sent.items():
        np.testing.assert_array_equal(received[name], array)
    client.close()
