"""``crucible operator``: the FederationRound operator's process.

Builds what the handlers share (Kubernetes client, the aggregator's Admin client over
mutual TLS, metrics endpoint), configures kopf and runs it until a signal stops it.
The Kubernetes credentials come from the pod's ServiceAccount in a cluster, or from
``KUBECONFIG`` outside one.

Meant to run as one replica: kopf's peering, which would let replicas take turns, is
off (``standalone``), so a second replica would follow the same runs twice; runs are
keyed by UID, so it would start nothing twice, but it would patch every status twice.
"""

from __future__ import annotations

import logging

import kopf
from kubernetes import client as kubernetes
from kubernetes import config as kubeconfig
from prometheus_client import start_http_server

from crucible.client import AdminClient
from crucible.settings import OperatorSettings
from crucible.telemetry import logger
from operators.federationrounds import GROUP, FederationRounds
from operators.operating import Operating

FINALIZER = f"{GROUP}/cancel-run"


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf's settings: watch timeouts, state in annotations, no log lines as Events."""
    configured = kopf.OperatorSettings()
    configured.watching.server_timeout = settings.watch_timeout_seconds
    configured.watching.client_timeout = settings.watch_timeout_seconds + 15
    configured.watching.connect_timeout = settings.request_timeout_seconds
    configured.networking.request_timeout = settings.request_timeout_seconds
    configured.persistence.finalizer = FINALIZER
    configured.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=GROUP
    )
    configured.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # No watching of CRDs and namespaces: the CRD is installed before the operator
    # starts, and the Role need not grant cluster-wide reads of either.
    configured.scanning.disabled = True
    # The handlers post their own Events; kopf's would repeat every log line.
    configured.posting.enabled = False
    configured.execution.max_workers = 64
    return configured


def _serve_metrics(listen: str) -> None:
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")


def run(settings: OperatorSettings) -> None:
    """Run the operator until SIGINT or SIGTERM."""
    log = logger("operator")
    files = settings.tls.files()
    try:
        kubeconfig.load_incluster_config()
    except kubeconfig.ConfigException:
        kubeconfig.load_kube_config()
    resources = FederationRounds(
        kubernetes.ApiClient(), timeout_seconds=settings.request_timeout_seconds
    )
    admin = AdminClient(
        settings.aggregator,
        files,
        server_name=settings.server_name,
        timeout_seconds=settings.request_timeout_seconds,
    )
    _serve_metrics(settings.metrics_listen)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kopf").setLevel(logging.WARNING)

    import operators.handlers  # noqa: F401 - registers the handlers with kopf

    log.info(
        "operator_started",
        aggregator=settings.aggregator,
        namespace=settings.namespace or "*",
        metrics=settings.metrics_listen,
    )
    try:
        kopf.run(
            standalone=True,
            clusterwide=not settings.namespace,
            namespaces=[settings.namespace] if settings.namespace else (),
            settings=kopf_settings(settings),
            memo=Operating(
                settings=settings, files=files, resources=resources, admin=admin
            ),
        )
    finally:
        admin.close()
        log.info("operator_stopped")
