"""The FederationRound CRD as the API server enforces it: defaults, ranges, CEL."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from .conftest import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "federationround.yaml"


def example(namespace: str, **spec: object) -> dict:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["namespace"] = namespace
    document["spec"].update(copy.deepcopy(spec))
    return document


def refusal(kubectl: Kubectl, document: dict) -> str:
    result = kubectl.apply(document, check=False)
    assert result.returncode != 0, "the API server accepted an invalid FederationRound"
    return result.stderr


def mark_started(kubectl: Kubectl, namespace: str, name: str) -> None:
    """Set status.runId as the operator does once the aggregator started the run."""
    kubectl.run(
        "patch",
        "federationround",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"runId": "r-test"}}',
    )


def test_example_is_accepted_and_defaults_fill_the_spec(
    kubectl: Kubectl, crd: str, namespace: str
):
    document = example(namespace)
    del document["spec"]["model"], document["spec"]["strategy"]
    kubectl.apply(document)

    stored = kubectl.get("fr", "creep-rupture-9cr", namespace)["spec"]
    assert stored["model"] == {
        "architecture": "mlp",
        "hidden": [64, 64],
        "activation": "silu",
        "dropout": 0,
    }
    assert stored["strategy"] == {"name": "fedavg"}
    assert stored["task"]["dataset"] == ""


def test_min_participants_above_the_participants_is_refused_naming_the_field(
    kubectl: Kubectl, crd: str, namespace: str
):
    message = refusal(kubectl, example(namespace, minParticipants=4))

    assert "spec.minParticipants: expected at most the number of spec.participants" in (
        message
    )


def test_negative_rounds_are_refused_naming_the_field(
    kubectl: Kubectl, crd: str, namespace: str
):
    message = refusal(kubectl, example(namespace, rounds=-1))

    assert "spec.rounds" in message
    assert "greater than or equal to 1" in message


def test_unknown_strategy_is_refused_listing_the_allowed_names(
    kubectl: Kubectl, crd: str, namespace: str
):
    message = refusal(kubectl, example(namespace, strategy={"name": "fedsgd"}))

    assert "spec.strategy.name" in message
    assert '"fedavg"' in message and '"krum"' in message


def test_target_listed_as_a_feature_is_refused(
    kubectl: Kubectl, crd: str, namespace: str
):
    document = example(namespace)
    document["spec"]["task"]["features"].append("rupture_time_h")

    assert "spec.task.target" in refusal(kubectl, document)


def test_rounds_changed_after_the_start_are_refused(
    kubectl: Kubectl, crd: str, namespace: str
):
    kubectl.apply(example(namespace))
    mark_started(kubectl, namespace, "creep-rupture-9cr")

    message = refusal(kubectl, example(namespace, rounds=50))

    assert "spec.rounds: cannot change after the run started" in message


def test_rounds_may_change_before_the_start(kubectl: Kubectl, crd: str, namespace: str):
    kubectl.apply(example(namespace))

    kubectl.apply(example(namespace, rounds=50))

    assert kubectl.get("fr", "creep-rupture-9cr", namespace)["spec"]["rounds"] == 50


def test_participants_may_be_removed_but_not_added_after_the_start(
    kubectl: Kubectl, crd: str, namespace: str
):
    kubectl.apply(example(namespace))
    mark_started(kubectl, namespace, "creep-rupture-9cr")

    kubectl.apply(example(namespace, participants=["plant_a", "plant_b"]))
    message = refusal(
        kubectl, example(namespace, participants=["plant_a", "plant_b", "plant_d"])
    )

    assert "spec.participants: after the run started" in message


def test_kubectl_get_shows_ready_rounds_reporting_rmse_and_age(
    kubectl: Kubectl, crd: str, namespace: str
):
    kubectl.apply(example(namespace))
    status = {
        "roundsSummary": "2/5",
        "participantsReporting": "3/3",
        "latestEvalRmse": 0.21,
        "conditions": [
            {
                "type": "Succeeded",
                "status": "Unknown",
                "reason": "Running",
                "message": "round 3 of 5 in progress",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    kubectl.run(
        "patch",
        "fr",
        "creep-rupture-9cr",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )

    table = kubectl.run("get", "fr", "-n", namespace).stdout.splitlines()

    assert table[0].split() == [
        "NAME",
        "READY",
        "REASON",
        "ROUNDS",
        "REPORTING",
        "RMSE",
        "AGE",
    ]
    assert table[1].split()[:6] == [
        "creep-rupture-9cr",
        "Unknown",
        "Running",
        "2/5",
        "3/3",
        "0.21",
    ]
