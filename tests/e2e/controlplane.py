"""A real Kubernetes control plane on loopback for the cluster tests.

etcd and kube-apiserver run as child processes on free 127.0.0.1 ports, configured the
way controller-runtime's envtest configures them: a throwaway CA signs the API server's
serving certificate and an administrator's client certificate (group
``system:masters``), a service-account key pair signs tokens, and authorization is RBAC,
so a ServiceAccount token is held to its Role exactly as in a cluster.

What this does not do: there is no kubelet, scheduler or controller manager, so pods
never run, namespaces are never finalized and garbage collection never happens. The
tests run the Crucible services as local processes instead.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
TOOLS_SCRIPT = ROOT / "scripts" / "test-tools.sh"


class ToolsMissingError(RuntimeError):
    """The control plane's programs have not been built on this machine."""


def tool_paths() -> dict[str, Path]:
    """Paths of kube-apiserver, etcd and helm, as the build script reports them.

    The script is asked only to report (``--check``), never to build here: a cold
    build takes many minutes and belongs to ``make tools``.
    """
    result = subprocess.run(
        ["bash", str(TOOLS_SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    paths = {}
    for line in result.stdout.splitlines():
        name, _, value = line.partition("=")
        if value:
            paths[name] = Path(value)
    missing = [
        f"{name} at {path}" for name, path in paths.items() if not path.is_file()
    ]
    if result.returncode != 0 or missing or not paths:
        raise ToolsMissingError(
            "cluster tests: expected kube-apiserver, etcd and helm built by "
            f"scripts/test-tools.sh, found none for {', '.join(missing) or 'all'}; "
            "run `make tools` first (a cold build takes tens of minutes); "
            f"the cluster tests cannot run. {result.stderr.strip()}"
        )
    return paths


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    usages: list[x509.ObjectIdentifier],
    alt_names: list[x509.GeneralName] = (),
) -> bytes:
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=1))
        .add_extension(
            x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if alt_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(alt_names), critical=False
        )
    certificate = builder.sign(issuer_key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM)


def write_pki(directory: Path) -> None:
    """CA, serving certificate, admin client certificate and service-account keys."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crucible-test-ca")])
    files = {
        "ca.crt": _certificate(subject=ca_name, key=ca_key, issuer=None, usages=[])
    }

    serving_key = ec.generate_private_key(ec.SECP256R1())
    files["apiserver.key"] = _pem_key(serving_key)
    files["apiserver.crt"] = _certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        key=serving_key,
        issuer=(ca_name, ca_key),
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        alt_names=[
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
        ],
    )

    admin_key = ec.generate_private_key(ec.SECP256R1())
    files["admin.key"] = _pem_key(admin_key)
    files["admin.crt"] = _certificate(
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "crucible-test-admin"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            ]
        ),
        key=admin_key,
        issuer=(ca_name, ca_key),
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )

    signing_key = ec.generate_private_key(ec.SECP256R1())
    files["sa.key"] = _pem_key(signing_key)
    files["sa.pub"] = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for name, data in files.items():
        (directory / name).write_bytes(data)


def kubeconfig(
    server: str,
    ca: Path,
    *,
    user: str,
    certificate: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> dict:
    """A kubeconfig document for one user of the test cluster."""
    credentials: dict[str, str] = {}
    if token is not None:
        credentials["token"] = token
    if certificate is not None and key is not None:
        credentials["client-certificate"] = str(certificate)
        credentials["client-key"] = str(key)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "crucible-test",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {
                "name": user,
                "context": {
                    "cluster": "crucible-test",
                    "user": user,
                    "namespace": namespace,
                },
            }
        ],
        "current-context": user,
    }


@dataclass
class ControlPlane:
    """etcd and kube-apiserver started in ``directory``; stop() ends both."""

    directory: Path
    kube_apiserver: Path
    etcd: Path
    startup_seconds: float = 90.0
    server: str = ""
    _processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.directory / "admin.kubeconfig"

    def start(self) -> None:
        write_pki(self.pki)
        etcd_url = self._start_etcd()
        self._start_apiserver(etcd_url)
        self._wait_ready()
        self.admin_kubeconfig.write_text(
            yaml.safe_dump(
                kubeconfig(
                    self.server,
                    self.pki / "ca.crt",
                    user="crucible-test-admin",
                    certificate=self.pki / "admin.crt",
                    key=self.pki / "admin.key",
                )
            )
        )

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._processes.append(process)
        return process

    def _start_etcd(self) -> str:
        client, peer = (
            f"http://127.0.0.1:{free_port()}",
            f"http://127.0.0.1:{free_port()}",
        )
        self._spawn(
            "etcd",
            [
                str(self.etcd),
                "--name=crucible-test",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=crucible-test={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        return client

    def _start_apiserver(self, etcd_url: str) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                str(self.kube_apiserver),
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--etcd-servers={etcd_url}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={self.server}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                f"--cert-dir={self.directory / 'certs'}",
                "--v=1",
            ],
        )

    def _wait_ready(self) -> None:
        """Poll /readyz until it answers ok; a dead process fails at once."""
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        deadline = time.monotonic() + self.startup_seconds
        last = "no answer"
        while time.monotonic() < deadline:
            for process in self._processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{process.args[0]} exited with {process.returncode} while "
                        f"starting; see its log in {self.directory}"
                    )
            try:
                with urllib.request.urlopen(
                    f"{self.server}/readyz", context=context, timeout=5
                ) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError) as error:
                last = str(error)
            time.sleep(0.25)
        raise RuntimeError(
            f"kube-apiserver at {self.server}: expected /readyz to answer ok within "
            f"{self.startup_seconds:.0f} s, found {last}; see logs in {self.directory}"
        )

    def stop(self) -> None:
        """Stop the API server, then etcd; kill whichever does not end in time."""
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        self._processes.clear()


@contextmanager
def running(directory: Path, tools: dict[str, Path]) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver started in ``directory``; a failed start fails the test."""
    import pytest

    plane = ControlPlane(
        directory=directory,
        kube_apiserver=tools["KUBE_APISERVER"],
        etcd=tools["ETCD"],
    )
    try:
        plane.start()
    except RuntimeError as error:
        plane.stop()
        pytest.fail(str(error), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


def environment(kubeconfig_path: Path) -> dict[str, str]:
    """The process environment for kubectl and clients talking to the test cluster."""
    return {**os.environ, "KUBECONFIG": str(kubeconfig_path)}
