"""The operator against a real API server, aggregator and participants over mutual TLS.

The operator runs as ``crucible operator`` with a token of the chart's ServiceAccount,
so the chart's Role is what it may do. Tests wait on watch streams (the resource's, its
Events' and the run's), never on fixed sleeps.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as kubernetes
from kubernetes import config as kubeconfig
from kubernetes import watch

from crucible.tensors import file_digest
from tests.federation import Federation, organization_tables

from .conftest import RELEASE, Kubectl, Operator, operator_rbac
from .controlplane import ControlPlane, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "federationround.yaml"
NAME = "creep-rupture-9cr"
PARTICIPANTS = ["plant_a", "plant_b", "plant_c"]


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[kubernetes.ApiClient]:
    client = kubeconfig.new_client_from_config(str(control_plane.admin_kubeconfig))
    yield client
    client.close()


def example(namespace: str, **spec: object) -> dict:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["namespace"] = namespace
    document["spec"].update(copy.deepcopy(spec))
    return document


def start_participants(federation: Federation) -> dict[str, subprocess.Popen]:
    tables = organization_tables(federation.root, PARTICIPANTS)
    return {
        name: federation.start_participant(
            name, {"default": {"train": str(tables[name])}}
        )
        for name in PARTICIPANTS
    }


def wait_for(
    api: kubernetes.ApiClient,
    namespace: str,
    predicate: Callable[[dict], bool],
    *,
    timeout: int = 180,
) -> dict:
    """The FederationRound once ``predicate`` holds, from its watch stream."""
    custom = kubernetes.CustomObjectsApi(api)
    stream = watch.Watch()
    last: dict = {}
    for event in stream.stream(
        custom.list_namespaced_custom_object,
        "crucible.dev",
        "v1alpha1",
        namespace,
        "federationrounds",
        field_selector=f"metadata.name={NAME}",
        timeout_seconds=timeout,
    ):
        last = event["object"]
        if predicate(last):
            stream.stop()
            return last
    raise AssertionError(f"{NAME} never matched; last status: {last.get('status')}")


def wait_for_event(
    api: kubernetes.ApiClient, namespace: str, reason: str, *, timeout: int = 120
) -> kubernetes.CoreV1Event:
    """The first Event with ``reason`` about the FederationRound."""
    stream = watch.Watch()
    for event in stream.stream(
        kubernetes.CoreV1Api(api).list_namespaced_event,
        namespace,
        field_selector=f"involvedObject.name={NAME}",
        timeout_seconds=timeout,
    ):
        if event["object"].reason == reason:
            stream.stop()
            return event["object"]
    raise AssertionError(f"no Event with reason {reason} about {NAME}")


def condition(resource: dict, kind: str) -> dict:
    for entry in resource.get("status", {}).get("conditions", []):
        if entry["type"] == kind:
            return entry
    return {}


def completed(rounds: int) -> Callable[[dict], bool]:
    return lambda r: r.get("status", {}).get("completedRounds", 0) >= rounds


def test_example_run_succeeds_with_metrics_participants_and_the_model_digest(
    kubectl: Kubectl,
    api: kubernetes.ApiClient,
    federation: Federation,
    operator: Operator,
    namespace: str,
):
    federation.start_aggregator()
    start_participants(federation)
    operator.start()

    kubectl.apply(example(namespace))
    kubectl.run(
        "wait",
        "--for=condition=Succeeded",
        f"fr/{NAME}",
        "-n",
        namespace,
        "--timeout=240s",
    )

    status = kubectl.get("fr", NAME, namespace)["status"]
    assert status["roundsSummary"] == "5/5"
    assert [r["round"] for r in status["rounds"]] == [1, 2, 3, 4, 5]
    assert all(r["evalRmse"] > 0 and r["participants"] >= 2 for r in status["rounds"])
    assert {p["name"]: p["state"] for p in status["participants"]} == dict.fromkeys(
        PARTICIPANTS, "Reported"
    )
    assert status["model"]["digest"] == file_digest(Path(status["model"]["location"]))
    assert condition({"status": status}, "Accepted")["status"] == "True"
    assert condition({"status": status}, "Failed")["status"] == "False"
    assert wait_for_event(api, namespace, "RunSucceeded").type == "Normal"
    assert wait_for_event(api, namespace, "RoundCompleted").type == "Normal"
    samples = operator.metrics()
    assert samples['crucible_operator_reconciles_total{handler="follow"}'] >= 1
    assert samples["crucible_operator_status_patch_seconds_count"] >= 5
    assert (
        samples['crucible_operator_errors_total{handler="follow",kind="permanent"}']
        == 0
    )


def test_an_operator_killed_mid_run_resumes_the_same_run_to_success(
    kubectl: Kubectl,
    api: kubernetes.ApiClient,
    federation: Federation,
    operator: Operator,
    namespace: str,
):
    federation.start_aggregator()
    start_participants(federation)
    operator.start()
    kubectl.apply(example(namespace, rounds=10))
    resource = wait_for(api, namespace, completed(1))

    operator.kill()
    operator.start()
    kubectl.run(
        "wait",
        "--for=condition=Succeeded",
        f"fr/{NAME}",
        "-n",
        namespace,
        "--timeout=240s",
    )

    with federation.admin() as admin:
        runs = [r for r in admin.list_runs() if r.key == resource["metadata"]["uid"]]
    assert len(runs) == 1
    assert runs[0].phase == "Succeeded"
    assert kubectl.get("fr", NAME, namespace)["status"]["runId"] == runs[0].run_id


def test_a_lost_participant_shows_lost_and_the_run_goes_on_while_quorum_holds(
    kubectl: Kubectl,
    api: kubernetes.ApiClient,
    federation: Federation,
    operator: Operator,
    namespace: str,
):
    federation.start_aggregator()
    participants = start_participants(federation)
    operator.start()
    kubectl.apply(
        example(namespace, rounds=40, minParticipants=2, graceSeconds=0, localEpochs=1)
    )
    wait_for(api, namespace, completed(1))

    participants["plant_c"].kill()
    lost = wait_for(
        api,
        namespace,
        lambda r: any(
            p["name"] == "plant_c" and p["state"] == "Lost"
            for p in r.get("status", {}).get("participants", [])
        ),
    )

    assert condition(lost, "Degraded")["reason"] == "ParticipantLost"
    assert wait_for_event(api, namespace, "ParticipantLost").type == "Warning"
    done = wait_for(
        api,
        namespace,
        lambda r: condition(r, "Succeeded").get("status") in ("True", "False"),
    )
    assert condition(done, "Succeeded")["status"] == "True", done["status"]


def test_a_lost_participant_below_quorum_fails_the_run_with_quorum_not_met(
    kubectl: Kubectl,
    api: kubernetes.ApiClient,
    federation: Federation,
    operator: Operator,
    namespace: str,
):
    federation.start_aggregator()
    participants = start_participants(federation)
    operator.start()
    kubectl.apply(
        example(
            namespace,
            rounds=40,
            minParticipants=3,
            graceSeconds=0,
            roundTimeoutSeconds=25,
            maxRoundRetries=0,
        )
    )
    wait_for(api, namespace, completed(1))

    participants["plant_c"].kill()
    failed = wait_for(
        api, namespace, lambda r: condition(r, "Failed").get("status") == "True"
    )

    assert condition(failed, "Failed")["reason"] == "QuorumNotMet"
    assert condition(failed, "Succeeded")["status"] == "False"
    assert wait_for_event(api, namespace, "RunFailed").type == "Warning"


def test_deleting_mid_run_cancels_the_run_and_removes_the_finalizer(
    kubectl: Kubectl,
    api: kubernetes.ApiClient,
    federation: Federation,
    operator: Operator,
    namespace: str,
):
    federation.start_aggregator()
    start_participants(federation)
    operator.start()
    kubectl.apply(example(namespace, rounds=500))
    running = wait_for(api, namespace, completed(1))
    assert "crucible.dev/cancel-run" in running["metadata"]["finalizers"]

    kubectl.run("delete", "fr", NAME, "-n", namespace, "--timeout=60s")

    with federation.admin() as admin:
        run = admin.get_run(running["status"]["runId"])
    assert run.phase == "Cancelled"
    assert run.completed_rounds < 500
    gone = kubectl.run("get", "fr", NAME, "-n", namespace, check=False)
    assert "NotFound" in gone.stderr


def test_an_unreachable_aggregator_is_said_in_degraded_and_retried(
    kubectl: Kubectl,
    api: kubernetes.ApiClient,
    federation: Federation,
    operator: Operator,
    namespace: str,
):
    federation.aggregator_address = f"127.0.0.1:{free_port()}"
    federation.aggregator_metrics = f"127.0.0.1:{free_port()}"
    operator.start()
    kubectl.apply(example(namespace))

    degraded = wait_for(
        api, namespace, lambda r: condition(r, "Degraded").get("status") == "True"
    )
    assert condition(degraded, "Degraded")["reason"] == "AggregatorUnavailable"
    assert condition(degraded, "Accepted")["status"] == "Unknown"
    assert wait_for_event(api, namespace, "AggregatorUnavailable").type == "Warning"

    federation.start_aggregator()
    started = wait_for(api, namespace, lambda r: "runId" in r.get("status", {}))
    assert condition(started, "Accepted")["status"] == "True"


def test_the_chart_role_grants_the_operator_only_what_it_uses(
    kubectl: Kubectl, operator_account: Path, namespace: str
):
    account = f"system:serviceaccount:{namespace}:{RELEASE}-operator"

    def allowed(verb: str, resource: str) -> bool:
        result = kubectl.run(
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            namespace,
            f"--as={account}",
            check=False,
        )
        return result.stdout.strip() == "yes"

    assert allowed("watch", "federationrounds.crucible.dev")
    assert allowed("patch", "federationrounds.crucible.dev/status")
    assert allowed("create", "events")
    assert not allowed("delete", "federationrounds.crucible.dev")
    assert not allowed("create", "federationrounds.crucible.dev")
    assert not allowed("get", "secrets")
    assert not allowed("list", "pods")


def test_without_status_patch_permission_the_operator_reports_forbidden(
    kubectl: Kubectl,
    api: kubernetes.ApiClient,
    tools: dict[str, Path],
    federation: Federation,
    operator: Operator,
    namespace: str,
):
    role = next(
        d
        for d in yaml.safe_load_all(operator_rbac(tools["HELM"], namespace))
        if d and d["kind"] == "Role"
    )
    role["rules"] = [
        rule
        for rule in role["rules"]
        if "federationrounds/status" not in rule["resources"]
    ]
    kubectl.apply(role)
    federation.start_aggregator()
    operator.start()

    kubectl.apply(example(namespace))
    event = wait_for_event(api, namespace, "Forbidden")

    assert event.type == "Warning"
    assert "patch federationrounds/status" in event.message
    assert "kubernetes_forbidden" in operator.log()
    assert "status" not in kubectl.get("fr", NAME, namespace)
