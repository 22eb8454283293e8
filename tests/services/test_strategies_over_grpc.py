"""Each strategy, run by the real aggregator, equals a hand computation in numpy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crucible import spec as specs
from crucible.client import pull_model
from crucible.protocol import pb
from crucible.tensors import read_file
from tests.federation import Federation, spec, wait_for_phase
from tests.lightclient import LightClient

pytestmark = pytest.mark.timeout(120)
NAMES = ["org-a", "org-b", "org-c"]
SAMPLES = [10, 30, 60]


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = Federation(tmp_path_factory.mktemp("strategies"))
    federation.start_aggregator()
    yield federation
    federation.stop()


def one_round(
    federation: Federation, key: str, strategy: dict
) -> tuple[dict, list, dict]:
    """Run one round where participant i sends global + (i+1)·delta_i; return all."""
    body = spec(NAMES, rounds=1, strategy=strategy, minParticipants=3)
    clients = [
        LightClient(federation.aggregator_address, federation.issue(n)) for n in NAMES
    ]
    with federation.admin() as admin:
        run_id = admin.start_run(key, specs.parse(body)).run_id
        for client in clients:
            client.join(run_id)
            client.report_statistics(run_id, body["task"]["features"])
        rng = np.random.default_rng(3)
        sent = []
        global_weights = None
        for client, samples in zip(clients, SAMPLES, strict=True):
            task = client.task(run_id, pb.TRAIN)
            global_weights = client.fetch(task)
            local = {
                k: (v + rng.normal(size=v.shape)).astype(np.float32)
                for k, v in global_weights.items()
            }
            receipt = client.send(task, local, samples=samples)
            assert receipt.accepted, receipt.message
            sent.append(local)
        for client in clients:
            client.evaluate(client.task(run_id, pb.EVALUATE))
        final = wait_for_phase(admin, run_id, ("Succeeded", "Failed"), timeout=60)
        assert final.phase == "Succeeded", final.message
        output = federation.root / f"{key}.safetensors"
        pull_model(
            federation.aggregator_address, federation.tls("org-a"), run_id, output
        )
    for client in clients:
        client.close()
    return global_weights, sent, read_file(Path(output))


def close(a: dict, b: dict) -> None:
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_fedavg_is_the_sample_weighted_mean(aggregator: Federation):
    _, sent, result = one_round(aggregator, "fedavg", {"name": "fedavg"})
    total = sum(SAMPLES)
    close(
        result,
        {
            k: sum(
                n * w[k].astype(np.float64) for n, w in zip(SAMPLES, sent, strict=True)
            )
            / total
            for k in result
        },
    )


def test_mean_weighs_every_participant_equally(aggregator: Federation):
    _, sent, result = one_round(aggregator, "mean", {"name": "mean"})
    close(result, {k: np.mean([w[k] for w in sent], axis=0) for k in result})


def test_fedprox_aggregates_like_fedavg_and_sends_mu(aggregator: Federation):
    _, sent, result = one_round(
        aggregator, "fedprox", {"name": "fedprox", "parameters": {"mu": 0.5}}
    )
    total = sum(SAMPLES)
    close(
        result,
        {
            k: sum(
                n * w[k].astype(np.float64) for n, w in zip(SAMPLES, sent, strict=True)
            )
            / total
            for k in result
        },
    )


def test_fedadam_applies_one_server_adam_step(aggregator: Federation):
    parameters = {"eta": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 0.001}
    start, sent, result = one_round(
        aggregator, "fedadam", {"name": "fedadam", "parameters": parameters}
    )
    total = sum(SAMPLES)
    expected = {}
    for k in result:
        mean = (
            sum(n * w[k].astype(np.float64) for n, w in zip(SAMPLES, sent, strict=True))
            / total
        )
        delta = mean - start[k]
        m = (1 - parameters["beta1"]) * delta
        v = (1 - parameters["beta2"]) * delta**2
        expected[k] = start[k] + parameters["eta"] * m / (
            np.sqrt(v) + parameters["tau"]
        )
    close(result, expected)


def test_median_is_coordinatewise(aggregator: Federation):
    _, sent, result = one_round(aggregator, "median", {"name": "median"})
    close(result, {k: np.median([w[k] for w in sent], axis=0) for k in result})
