"""The chart, linted and rendered by real Helm: roles, security, network, certificates.

Objects are checked as parsed YAML, so a test states what a cluster would receive. The
release is called ``crucible``, so objects are named ``crucible-COMPONENT``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from crucible.settings import AggregatorSettings, OperatorSettings, ParticipantSettings
from tests.chart.conftest import (
    CHART,
    EXAMPLES,
    Helm,
    Render,
    find,
    only,
    set_arguments,
)

EXAMPLE_NAMES = ("coordinator", "member-a", "member-b")
MEMBER = {
    "role": "member",
    "organization": "plant_c",
    "participant.aggregator.address": "aggregator.consortium.example:443",
    "participant.aggregator.cidrs[0]": "203.0.113.10/32",
    "participant.data.name": "creep-tests",
}
COORDINATOR = {"organization": "consortium"}


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_lint_strict_passes_for_each_example(helm: Helm, example: str) -> None:
    result = helm.run(
        "lint",
        "--strict",
        str(CHART),
        f"--values={EXAMPLES / f'{example}-values.yaml'}",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", [COORDINATOR, MEMBER], ids=["coordinator", "member"])
def test_lint_strict_passes_for_both_roles_with_defaults(
    helm: Helm, values: dict[str, str]
) -> None:
    result = helm.run("lint", "--strict", str(CHART), *set_arguments(values))

    assert result.returncode == 0, result.stdout + result.stderr


def test_coordinator_runs_aggregator_and_operator_but_no_participant(
    render: Render,
) -> None:
    objects = render("coordinator")

    names = {d["metadata"]["name"] for d in find(objects, "Deployment")}
    assert names == {"crucible-aggregator", "crucible-operator"}
    assert find(objects, "PersistentVolumeClaim")
    assert only(objects, "ServiceAccount")["metadata"]["name"] == "crucible-operator"


@pytest.mark.parametrize("example", ["member-a", "member-b"])
def test_member_runs_only_a_participant(render: Render, example: str) -> None:
    objects = render(example)

    names = {d["metadata"]["name"] for d in find(objects, "Deployment")}
    assert names == {"crucible-participant"}
    assert not find(objects, "PersistentVolumeClaim")
    assert not find(objects, "ServiceAccount")
    assert not find(objects, "PrometheusRule")


@pytest.mark.parametrize("example", ["member-a", "member-b"])
def test_participant_has_no_service_for_training(render: Render, example: str) -> None:
    objects = render(example)

    ports = [port for s in find(objects, "Service") for port in s["spec"]["ports"]]
    assert all(port["name"] == "metrics" for port in ports)
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [port["name"] for port in container["ports"]] == ["metrics"]


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_every_pod_runs_non_root_read_only_without_privileges(
    render: Render, example: str
) -> None:
    for deployment in find(render(example), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("name", ["crucible-aggregator", "crucible-operator"])
def test_coordinator_components_run_one_replica_replaced_by_recreate(
    render: Render, name: str
) -> None:
    deployment = only(render("coordinator"), "Deployment", name)

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_aggregator_keeps_state_on_its_claim_across_uninstall(render: Render) -> None:
    objects = render("coordinator")

    claim = only(objects, "PersistentVolumeClaim")
    pod = only(objects, "Deployment", "crucible-aggregator")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes["state"]["persistentVolumeClaim"]["claimName"]
        == claim["metadata"]["name"]
    )
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["state"] == "/var/lib/crucible"


def test_aggregator_uses_an_existing_claim_without_creating_one(render: Render) -> None:
    objects = render(
        values={**COORDINATOR, "aggregator.persistence.existingClaim": "old"}
    )

    pod = only(objects, "Deployment", "crucible-aggregator")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "old"
    assert not find(objects, "PersistentVolumeClaim")


def test_operator_runs_as_the_service_account_its_role_binds(render: Render) -> None:
    objects = render("coordinator")

    pod = only(objects, "Deployment", "crucible-operator")["spec"]["template"]["spec"]
    bindings = find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding")
    subjects = {s["name"] for b in bindings for s in b["subjects"]}
    assert pod["serviceAccountName"] == "crucible-operator"
    assert pod["serviceAccountName"] in subjects


@pytest.mark.parametrize(
    ("source", "volume_key", "name_key"),
    [
        ("persistentVolumeClaim", "persistentVolumeClaim", "claimName"),
        ("secret", "secret", "secretName"),
        ("configMap", "configMap", "name"),
    ],
)
def test_participant_mounts_the_organization_data_read_only(
    render: Render, source: str, volume_key: str, name_key: str
) -> None:
    objects = render(values={**MEMBER, "participant.data.source": source})

    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    data = {v["name"]: v for v in pod["volumes"]}["data"]
    mount = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}["data"]
    assert data[volume_key][name_key] == "creep-tests"
    assert mount["readOnly"] is True
    assert mount["mountPath"] == "/data"


def test_participant_may_reach_only_dns_and_the_aggregator(render: Render) -> None:
    policy = only(render("member-a"), "NetworkPolicy")

    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    dns, aggregator = policy["spec"]["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {
        (53, "UDP"),
        (53, "TCP"),
    }
    assert aggregator["to"] == [{"ipBlock": {"cidr": "203.0.113.10/32"}}]
    assert aggregator["ports"] == [{"port": 7443, "protocol": "TCP"}]
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [
        "metrics"
    ]


def test_aggregator_accepts_only_its_grpc_and_metrics_ports(render: Render) -> None:
    policy = only(render("coordinator"), "NetworkPolicy", "crucible-aggregator")

    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["grpc", "metrics"]
    metrics_rule = policy["spec"]["ingress"][1]
    assert metrics_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_network_policies_can_be_switched_off(render: Render) -> None:
    objects = render(
        values={
            **MEMBER,
            "networkPolicy.enabled": "false",
            "participant.aggregator.cidrs": "null",
        }
    )

    assert not find(objects, "NetworkPolicy")


def test_cert_manager_certificates_carry_organization_and_role(render: Render) -> None:
    certificates = {
        c["metadata"]["name"]: c["spec"]
        for c in find(render("coordinator"), "Certificate")
    }

    assert set(certificates) == {"crucible-aggregator", "crucible-operator"}
    for component, spec in certificates.items():
        role = component.removeprefix("crucible-")
        assert spec["commonName"] == "consortium"
        assert spec["subject"] == {
            "organizations": ["consortium"],
            "organizationalUnits": [role],
        }
        assert spec["secretName"] == f"{component}-tls"
        assert spec["issuerRef"]["name"] == "crucible-federation-ca"
    assert "server auth" in certificates["crucible-aggregator"]["usages"]
    assert "server auth" not in certificates["crucible-operator"]["usages"]


def test_aggregator_certificate_names_its_service_and_public_hostname(
    render: Render,
) -> None:
    spec = only(render("coordinator"), "Certificate", "crucible-aggregator")["spec"]

    assert spec["dnsNames"] == [
        "crucible-aggregator",
        "crucible-aggregator.crucible",
        "crucible-aggregator.crucible.svc",
        "crucible-aggregator.crucible.svc.cluster.local",
        "aggregator.consortium.example",
    ]


def test_operator_dials_a_name_in_the_aggregator_certificate(render: Render) -> None:
    objects = render("coordinator")

    config = yaml.safe_load(
        only(objects, "ConfigMap", "crucible-operator-config")["data"]["config.yaml"]
    )
    host = config["aggregator"].rsplit(":", 1)[0]
    certificate = only(objects, "Certificate", "crucible-aggregator")["spec"]
    assert host in certificate["dnsNames"]


def test_existing_secret_is_mounted_when_cert_manager_is_off(render: Render) -> None:
    objects = render("member-a")

    assert not find(objects, "Certificate")
    tls = {
        v["name"]: v
        for v in only(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }["tls"]
    sources = tls["projected"]["sources"]
    assert sources[0]["secret"]["name"] == "crucible-participant-tls"
    assert {i["key"] for i in sources[0]["secret"]["items"]} == {
        "tls.crt",
        "tls.key",
        "ca.crt",
    }


def test_ca_secret_replaces_the_issuer_ca(render: Render) -> None:
    objects = render("member-b")

    tls = {
        v["name"]: v
        for v in only(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }["tls"]
    own, ca = tls["projected"]["sources"]
    assert {i["key"] for i in own["secret"]["items"]} == {"tls.crt", "tls.key"}
    assert ca["secret"] == {
        "name": "crucible-federation-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    assert only(objects, "Certificate")["spec"]["subject"]["organizationalUnits"] == [
        "participant"
    ]


def test_load_balancer_exposes_only_the_grpc_port(render: Render) -> None:
    service = only(render("coordinator"), "Service", "crucible-aggregator-external")

    assert service["spec"]["type"] == "LoadBalancer"
    assert [p["name"] for p in service["spec"]["ports"]] == ["grpc"]
    assert service["spec"]["loadBalancerSourceRanges"] == [
        "198.51.100.0/28",
        "192.0.2.64/28",
    ]


def test_gateway_exposure_routes_tls_through_to_the_aggregator(render: Render) -> None:
    objects = render(
        values={
            **COORDINATOR,
            "aggregator.exposure.type": "Gateway",
            "aggregator.exposure.hostname": "aggregator.consortium.example",
            "aggregator.exposure.gateway.parentRefs[0].name": "edge",
            "aggregator.exposure.gateway.parentRefs[0].sectionName": "tls-passthrough",
        }
    )

    route = only(objects, "TLSRoute")
    assert route["spec"]["hostnames"] == ["aggregator.consortium.example"]
    assert route["spec"]["parentRefs"] == [
        {"name": "edge", "sectionName": "tls-passthrough"}
    ]
    assert route["spec"]["rules"] == [
        {"backendRefs": [{"name": "crucible-aggregator", "port": 7443}]}
    ]
    assert not find(objects, "Service", "crucible-aggregator-external")


def test_ingress_exposure_asks_for_tls_passthrough(render: Render) -> None:
    objects = render(
        values={
            **COORDINATOR,
            "aggregator.exposure.type": "Ingress",
            "aggregator.exposure.hostname": "aggregator.consortium.example",
        }
    )

    ingress = only(objects, "Ingress")
    assert (
        ingress["metadata"]["annotations"][
            "nginx.ingress.kubernetes.io/ssl-passthrough"
        ]
        == "true"
    )
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "aggregator.consortium.example"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "crucible-aggregator",
        "port": {"name": "grpc"},
    }


def test_prometheus_rule_carries_the_alerts_file_unchanged(render: Render) -> None:
    rule = only(render("coordinator"), "PrometheusRule")

    alerts = yaml.safe_load(
        (CHART / "files/prometheus/crucible-alerts.rules.yaml").read_text()
    )
    assert rule["spec"] == alerts
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboard_config_map_has_the_sidecar_label_and_the_dashboard(
    render: Render,
) -> None:
    config_map = only(render("coordinator"), "ConfigMap", "crucible-dashboard")

    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["crucible-dashboard.json"])
    assert dashboard == json.loads(
        (CHART / "files/grafana/crucible-dashboard.json").read_text()
    )


def test_dashboard_sidecar_label_is_configurable(render: Render) -> None:
    objects = render(
        values={
            **COORDINATOR,
            "monitoring.dashboard.enabled": "true",
            "monitoring.dashboard.labels.grafana_dashboard": "null",
            "monitoring.dashboard.labels.dashboards": "crucible",
            "monitoring.dashboard.namespace": "grafana",
        }
    )

    config_map = only(objects, "ConfigMap", "crucible-dashboard")
    assert config_map["metadata"]["namespace"] == "grafana"
    assert config_map["metadata"]["labels"]["dashboards"] == "crucible"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]


@pytest.mark.parametrize(
    ("example", "component", "settings_class"),
    [
        ("coordinator", "aggregator", AggregatorSettings),
        ("coordinator", "operator", OperatorSettings),
        ("member-a", "participant", ParticipantSettings),
        ("member-b", "participant", ParticipantSettings),
    ],
)
def test_configuration_file_loads_into_the_component_settings(
    render: Render,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    example: str,
    component: str,
    settings_class: type,
) -> None:
    objects = render(example)
    config_map = only(objects, "ConfigMap", f"crucible-{component}-config")
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"])
    for name in list(os.environ):
        if name.startswith("CRUCIBLE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CRUCIBLE_CONFIG_FILE", str(path))

    settings = settings_class.load()

    container = only(objects, "Deployment", f"crucible-{component}")["spec"][
        "template"
    ]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.metrics_listen == f"0.0.0.0:{ports['metrics']}"
    assert str(settings.tls.certificate) == "/etc/crucible/tls/tls.crt"
    assert {
        "name": "CRUCIBLE_CONFIG_FILE",
        "value": "/etc/crucible/config/config.yaml",
    } in container["env"]
    if component == "aggregator":
        assert settings.listen == f"0.0.0.0:{ports['grpc']}"
    if component == "participant":
        assert settings.aggregator == "aggregator.consortium.example:7443"
        assert settings.datasets["default"].train.is_relative_to("/data")
    if example == "member-b":
        assert settings.policy.accepted_runs == ["crucible/creep-*"]
        assert settings.torch_threads == 2


def test_changed_settings_roll_the_pods(render: Render) -> None:
    before = only(render("member-a"), "Deployment")
    after = only(
        render("member-a", values={"participant.policy.minRows": "99"}), "Deployment"
    )

    annotation = "checksum/config"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][annotation]
        != after["spec"]["template"]["metadata"]["annotations"][annotation]
    )


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({**COORDINATOR, "role": "observer"}, "/role", "value must be one of"),
        ({"role": "coordinator"}, "/organization", "minLength"),
        (
            {**MEMBER, "participant.aggregator.address": ""},
            "/participant/aggregator/address",
            "minLength",
        ),
        (
            {
                **MEMBER,
                "participant.aggregator.address": "aggregator.consortium.example",
            },
            "/participant/aggregator/address",
            "does not match pattern",
        ),
        (
            {**MEMBER, "participant.aggregator.cidrs": "null"},
            "/participant/aggregator",
            "missing property 'cidrs'",
        ),
        (
            {**MEMBER, "participant.data.name": ""},
            "/participant/data/name",
            "minLength",
        ),
        (
            {**MEMBER, "participant.data.source": "hostPath"},
            "/participant/data/source",
            "value must be one of",
        ),
        (
            {**COORDINATOR, "aggregator.exposure.type": "Ingress"},
            "/aggregator/exposure/hostname",
            "minLength",
        ),
        (
            {**COORDINATOR, "certificates.certManager.enabled": "true"},
            "/certificates/certManager/issuerRef/name",
            "minLength",
        ),
        (
            {
                **COORDINATOR,
                "monitoring.serviceMonitor.enabled": "true",
                "monitoring.podMonitor.enabled": "true",
            },
            "/monitoring/podMonitor/enabled",
            "value must be false",
        ),
        (
            {**COORDINATOR, "aggregator.replicas": "2"},
            "/aggregator",
            "additional properties 'replicas'",
        ),
    ],
    ids=[
        "unknown-role",
        "no-organization",
        "member-without-aggregator-address",
        "aggregator-address-without-port",
        "member-network-policy-without-cidrs",
        "member-without-data",
        "data-from-host-path",
        "ingress-without-hostname",
        "cert-manager-without-issuer",
        "service-and-pod-monitor",
        "aggregator-replicas",
    ],
)
def test_invalid_values_fail_with_the_schema_message_naming_the_field(
    helm: Helm, values: dict[str, str], field: str, message: str
) -> None:
    result = helm.run("template", "crucible", str(CHART), *set_arguments(values))

    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    line = next(
        (
            line
            for line in result.stderr.splitlines()
            if f"at '{field}'" in line and message in line
        ),
        None,
    )
    assert line is not None, result.stderr
