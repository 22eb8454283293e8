"""Other projects' CRDs that the chart's options need, from their own published sources.

Each comes from its project's Go module, fetched through the Go module proxy at test
time (``go mod download``) into the Go module cache, never committed here:

- prometheus-operator: ServiceMonitor, PodMonitor, PrometheusRule (plain YAML in
  ``example/prometheus-operator-crd/``);
- cert-manager: Certificate, which cert-manager publishes inside its Helm chart; it is
  rendered with ``crds.enabled=true``, the way cert-manager's release builds its
  static manifest;
- Gateway API: TLSRoute (standard channel).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.chart.conftest import Helm

PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.90.1"
CERT_MANAGER = "github.com/cert-manager/cert-manager@v1.21.2"
GATEWAY_API = "sigs.k8s.io/gateway-api@v1.6.3"


def module_directory(module: str) -> Path:
    """The module's files in the Go module cache, downloaded first if needed."""
    environment = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    with tempfile.TemporaryDirectory() as empty:
        result = subprocess.run(
            ["go", "mod", "download", "-json", module],
            cwd=empty,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    answer = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in answer:
        raise RuntimeError(
            f"go mod download {module}: expected the module's directory, found "
            f"{answer.get('Error') or result.stderr.strip()}"
        )
    return Path(answer["Dir"])


def prometheus_operator_crds() -> list[Path]:
    directory = (
        module_directory(PROMETHEUS_OPERATOR) / "example/prometheus-operator-crd"
    )
    return [
        directory / f"monitoring.coreos.com_{plural}.yaml"
        for plural in ("servicemonitors", "podmonitors", "prometheusrules")
    ]


def cert_manager_crds(helm: Helm, work: Path) -> Path:
    """cert-manager's Certificate CRD, rendered from its chart into ``work``."""
    chart = work / "cert-manager-chart"
    shutil.copytree(
        module_directory(CERT_MANAGER) / "deploy/charts/cert-manager",
        chart,
        dirs_exist_ok=True,
    )
    for path in [chart, *chart.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the module cache is read-only
    result = helm.run(
        "template",
        "cert-manager",
        str(chart),
        "--set=crds.enabled=true",
        "--show-only=templates/crd-cert-manager.io_certificates.yaml",
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm template of cert-manager's CRDs: {result.stderr}")
    rendered = work / "cert-manager-certificates.yaml"
    rendered.write_text(result.stdout)
    return rendered


def gateway_api_crds() -> list[Path]:
    directory = module_directory(GATEWAY_API) / "config/crd/standard"
    return [directory / "gateway.networking.k8s.io_tlsroutes.yaml"]
