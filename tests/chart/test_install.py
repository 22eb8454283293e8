"""helm install of a coordinator and two members into a real Kubernetes API server.

Every option is on: cert-manager Certificates, ServiceMonitor or PodMonitor,
PrometheusRule, the Grafana dashboard, exposure and NetworkPolicies. The API server
validates each object against its schema, the upstream CRDs included, which
``helm template`` cannot. There is no kubelet, so nothing waits for pods (no --wait).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from crucible import certificates
from tests.chart import upstream
from tests.chart.conftest import CHART, EXAMPLES, Helm, set_arguments
from tests.e2e.controlplane import (
    ControlPlane,
    ToolsMissingError,
    environment,
    running,
    tool_paths,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

ISSUER = {
    "certificates.certManager.enabled": "true",
    "certificates.certManager.issuerRef.name": "crucible-federation-ca",
}
DASHBOARD = {"monitoring.dashboard.enabled": "true"}
# namespace: (example values file, extra values)
RELEASES = {
    "consortium": ("coordinator", {}),
    "plant-a": ("member-a", {**ISSUER, **DASHBOARD}),
    "plant-b": ("member-b", DASHBOARD),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    try:
        tools = tool_paths()
    except ToolsMissingError as error:
        pytest.fail(str(error), pytrace=False)
    with running(tmp_path_factory.mktemp("chart-cluster"), tools) as plane:
        yield plane


def kubectl(cluster: ControlPlane, *arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["kubectl", *arguments],
        capture_output=True,
        text=True,
        env=environment(cluster.admin_kubeconfig),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(arguments)}: {result.stderr}"
    return result


def get(cluster: ControlPlane, kind: str, namespace: str) -> list[dict]:
    listed = kubectl(cluster, "get", kind, "-n", namespace, "-o", "json")
    return json.loads(listed.stdout)["items"]


@pytest.fixture(scope="module")
def upstream_crds(
    cluster: ControlPlane, helm: Helm, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """prometheus-operator's, cert-manager's and Gateway API's CRDs, established."""
    work = tmp_path_factory.mktemp("upstream-crds")
    files = [
        *upstream.prometheus_operator_crds(),
        upstream.cert_manager_crds(helm, work),
        *upstream.gateway_api_crds(),
    ]
    for path in files:
        kubectl(cluster, "apply", "--server-side", "-f", str(path))
    kubectl(
        cluster, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"
    )


@pytest.fixture(scope="module")
def releases(cluster: ControlPlane, helm: Helm, upstream_crds: None) -> dict[str, dict]:
    """The three releases installed, by namespace: helm's status of each."""
    installed = {}
    for namespace, (example, values) in RELEASES.items():
        result = helm.run(
            "install",
            "crucible",
            str(CHART),
            f"--kubeconfig={cluster.admin_kubeconfig}",
            f"--namespace={namespace}",
            "--create-namespace",
            f"--values={EXAMPLES / f'{example}-values.yaml'}",
            *set_arguments(values),
            timeout=300,
        )
        assert result.returncode == 0, f"helm install in {namespace}: {result.stderr}"
        status = helm.run(
            "status",
            "crucible",
            f"--kubeconfig={cluster.admin_kubeconfig}",
            f"--namespace={namespace}",
            "--output=json",
        )
        assert status.returncode == 0, status.stderr
        installed[namespace] = json.loads(status.stdout)
    return installed


def test_coordinator_and_members_install_and_are_deployed(
    releases: dict[str, dict],
) -> None:
    assert {ns: r["info"]["status"] for ns, r in releases.items()} == {
        "consortium": "deployed",
        "plant-a": "deployed",
        "plant-b": "deployed",
    }


def test_coordinator_installs_its_crd_components_and_every_option(
    cluster: ControlPlane, releases: dict[str, dict]
) -> None:
    namespace = "consortium"

    kubectl(cluster, "get", "crd", "federationrounds.crucible.dev")
    deployments = {
        d["metadata"]["name"] for d in get(cluster, "deployments", namespace)
    }
    assert deployments == {"crucible-aggregator", "crucible-operator"}
    certificates = {
        c["metadata"]["name"]: c["spec"]["subject"]
        for c in get(cluster, "certificates.cert-manager.io", namespace)
    }
    assert certificates == {
        "crucible-aggregator": {
            "organizations": ["consortium"],
            "organizationalUnits": ["aggregator"],
        },
        "crucible-operator": {
            "organizations": ["consortium"],
            "organizationalUnits": ["operator"],
        },
    }
    services = {
        s["metadata"]["name"]: s["spec"] for s in get(cluster, "services", namespace)
    }
    assert services["crucible-aggregator-external"]["type"] == "LoadBalancer"
    assert len(get(cluster, "servicemonitors.monitoring.coreos.com", namespace)) == 1
    (rule,) = get(cluster, "prometheusrules.monitoring.coreos.com", namespace)
    assert {g["name"] for g in rule["spec"]["groups"]} == {
        "crucible.rounds",
        "crucible.updates",
        "crucible.runs",
    }
    policies = {
        p["metadata"]["name"] for p in get(cluster, "networkpolicies", namespace)
    }
    assert policies == {"crucible-aggregator", "crucible-operator"}
    (claim,) = get(cluster, "persistentvolumeclaims", namespace)
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    dashboards = kubectl(
        cluster,
        "get",
        "configmaps",
        "-n",
        namespace,
        "-l",
        "grafana_dashboard=1",
        "-o",
        "name",
    )
    assert dashboards.stdout.split() == ["configmap/crucible-dashboard"]


@pytest.mark.parametrize(
    ("namespace", "organization", "monitor"),
    [
        ("plant-a", "plant_a", "podmonitors.monitoring.coreos.com"),
        ("plant-b", "plant_b", "servicemonitors.monitoring.coreos.com"),
    ],
)
def test_member_installs_a_participant_with_every_option(
    cluster: ControlPlane,
    releases: dict[str, dict],
    namespace: str,
    organization: str,
    monitor: str,
) -> None:
    deployments = get(cluster, "deployments", namespace)
    assert [d["metadata"]["name"] for d in deployments] == ["crucible-participant"]
    (certificate,) = get(cluster, "certificates.cert-manager.io", namespace)
    assert certificate["spec"]["commonName"] == organization
    assert certificate["spec"]["subject"]["organizationalUnits"] == ["participant"]
    assert len(get(cluster, monitor, namespace)) == 1
    (policy,) = get(cluster, "networkpolicies", namespace)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert not get(cluster, "prometheusrules.monitoring.coreos.com", namespace)
    ports = [
        p["name"]
        for s in get(cluster, "services", namespace)
        for p in s["spec"]["ports"]
    ]
    assert set(ports) <= {"metrics"}


@pytest.mark.parametrize(
    ("exposure", "kind"),
    [
        (
            {
                "aggregator.exposure.type": "Gateway",
                "aggregator.exposure.gateway.parentRefs[0].name": "edge",
            },
            "TLSRoute",
        ),
        ({"aggregator.exposure.type": "Ingress"}, "Ingress"),
    ],
    ids=["gateway", "ingress"],
)
def test_gateway_and_ingress_exposures_pass_server_validation(
    cluster: ControlPlane,
    helm: Helm,
    upstream_crds: None,
    exposure: dict[str, str],
    kind: str,
) -> None:
    namespace = f"exposure-{kind.lower()}"
    rendered = helm.run(
        "template",
        "crucible",
        str(CHART),
        f"--namespace={namespace}",
        f"--values={EXAMPLES / 'coordinator-values.yaml'}",
        *set_arguments(exposure),
        "--show-only=templates/exposure-aggregator.yaml",
    )
    assert rendered.returncode == 0, rendered.stderr
    assert yaml.safe_load(rendered.stdout)["kind"] == kind

    manifest = Path(cluster.directory) / f"{namespace}.yaml"
    manifest.write_text(rendered.stdout)
    kubectl(cluster, "create", "namespace", namespace)
    kubectl(cluster, "apply", "--dry-run=server", "-f", str(manifest))


def test_secret_from_crucible_certs_is_accepted_by_the_api_server(
    cluster: ControlPlane, tmp_path: Path
) -> None:
    certificates.init_ca(tmp_path / "ca")
    certificates.issue(tmp_path / "ca", "plant_c", role="participant")
    kubectl(cluster, "create", "namespace", "plant-c")
    printed = subprocess.run(
        [
            sys.executable, "-m", "crucible.cli", "certs", "secret", "plant_c",
            "--dir", str(tmp_path / "ca"),
            "--secret-name", "crucible-participant-tls", "--namespace", "plant-c",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    manifest = tmp_path / "secret.yaml"
    manifest.write_text(printed.stdout)

    kubectl(cluster, "apply", "-f", str(manifest))

    (secret,) = [
        s
        for s in get(cluster, "secrets", "plant-c")
        if s["metadata"]["name"] == "crucible-participant-tls"
    ]
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
