"""Robust and evaluation-weighted aggregation, alone and through the service."""

from __future__ import annotations

import numpy as np
import pytest

from crucible.client import pull_model
from crucible.errors import InputError
from crucible.protocol import pb
from crucible.spec import Strategy as StrategySpec
from crucible.strategies import Update, create, screening
from crucible.strategies.robust import EvaluationWeighted, Krum
from crucible.tensors import read_file
from tests.abuse.conftest import open_run
from tests.federation import Federation, wait_for_phase

pytestmark = pytest.mark.timeout(90)


def updates_with(key: str, values: list[float]) -> list[Update]:
    return [Update(f"org-{i}", 10, lambda: {}, {key: v}) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("parameters", "key", "values", "expected"),
    [
        ({}, "validation_loss", [0.5, 1.0, 2.0], [4 / 7, 2 / 7, 1 / 7]),
        (
            {"metric_is_r2": 1},
            "validation_r2",
            [0.9, 0.5, -0.2],
            [0.9 / 1.4, 0.5 / 1.4, 0],
        ),
        ({"higher_is_better": 1}, "validation_loss", [3.0, 1.0], [0.75, 0.25]),
        ({"metric_is_r2": 1}, "validation_r2", [-0.1, -0.5], [0.5, 0.5]),
        ({}, "validation_loss", [0.0, -1.0, 2.0], [0.0, 0.0, 1.0]),
    ],
    ids=["losses", "scores", "higher-is-better", "no-positive-score", "bad-losses"],
)
def test_evaluation_weights_sum_to_one_for_losses_and_scores(
    parameters, key, values, expected
):
    weights = EvaluationWeighted(parameters).weights(updates_with(key, values))
    assert sum(weights) == pytest.approx(1.0)
    assert weights == pytest.approx(expected)


def test_update_without_the_evaluation_metric_weighs_nothing():
    updates = [*updates_with("validation_loss", [1.0, 1.0]), Update("x", 10, dict)]
    assert EvaluationWeighted({}).weights(updates) == pytest.approx([0.5, 0.5, 0.0])


def test_norm_screening_excludes_only_the_boosted_update():
    base = {"w": np.zeros(4, dtype=np.float32)}
    locals_ = {
        f"org-{i}": {"w": np.full(4, 0.1 * (i + 1), np.float32)} for i in range(4)
    }
    locals_["boosted"] = {"w": np.full(4, 50.0, np.float32)}
    outliers = screening.norm_outliers(
        base, [(n, lambda w=w: w) for n, w in locals_.items()], max_ratio=10
    )
    assert [o.participant for o in outliers] == ["boosted"]
    assert outliers[0].ratio > 10


def test_norm_screening_needs_three_updates_and_a_ratio():
    base = {"w": np.zeros(2, dtype=np.float32)}
    two = [("a", lambda: {"w": np.ones(2)}), ("b", lambda: {"w": 99 * np.ones(2)})]
    assert screening.norm_outliers(base, two, max_ratio=2) == []
    assert screening.norm_outliers(base, two * 2, max_ratio=0) == []


def test_norm_ratio_below_one_is_refused_with_the_parameter():
    with pytest.raises(InputError) as raised:
        create(StrategySpec(name="median", parameters={"max_norm_ratio": 0.5}))
    assert "max_norm_ratio" in str(raised.value)
    create(StrategySpec(name="krum", parameters={"max_norm_ratio": 10, "f": 1}))


def test_krum_picks_an_update_from_the_honest_cluster():
    rng = np.random.default_rng(1)
    honest = [
        {"w": (1 + 0.01 * rng.normal(size=8)).astype(np.float32)} for _ in range(4)
    ]
    bad = {"w": np.full(8, -20.0, np.float32)}
    updates = [Update(str(i), 1, lambda w=w: w) for i, w in enumerate([*honest, bad])]
    result, _ = Krum({"f": 1, "m": 3}).aggregate(
        {"w": np.zeros(8, np.float32)}, updates, {}
    )
    assert np.allclose(result["w"], 1, atol=0.05)


def test_evaluation_weighted_run_averages_with_weights_summing_to_one(
    aggregator: Federation,
):
    names = ["org-a", "org-b", "org-c"]
    losses = {"org-a": 0.5, "org-b": 1.0, "org-c": 2.0}
    strategy = {"name": "evaluation_weighted"}
    run = open_run(
        aggregator, "evaluation-weighted", names, rounds=1, strategy=strategy
    )
    rng = np.random.default_rng(8)
    sent = {}
    for name, client in run.clients.items():
        task = client.task(run.run_id, pb.TRAIN)
        sent[name] = {
            k: (v + rng.normal(size=v.shape)).astype(np.float32)
            for k, v in client.fetch(task).items()
        }
        metrics = {"train_loss": 1.0, "validation_loss": losses[name]}
        assert client.send(task, sent[name], metrics=metrics).accepted
    for client in run.clients.values():
        client.evaluate(client.task(run.run_id, pb.EVALUATE))
    with aggregator.admin() as admin:
        final = wait_for_phase(admin, run.run_id, ("Succeeded", "Failed"), timeout=30)
    assert final.phase == "Succeeded", final.message

    output = aggregator.root / "evaluation-weighted.safetensors"
    pull_model(
        aggregator.aggregator_address, aggregator.tls("org-a"), run.run_id, output
    )
    inverse = {n: 1 / loss for n, loss in losses.items()}
    weights = {n: v / sum(inverse.values()) for n, v in inverse.items()}
    assert sum(weights.values()) == pytest.approx(1.0)
    for tensor, array in read_file(output).items():
        expected = sum(weights[n] * sent[n][tensor].astype(np.float64) for n in names)
        np.testing.assert_allclose(array, expected, rtol=1e-5, atol=1e-6)
    run.close()
