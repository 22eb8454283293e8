"""FederationRounds through the Kubernetes API: read them, patch status, post Events.

Direct calls with the ``kubernetes`` client where kopf's machinery would hide what
happens: status patches are merge patches of the status subresource, timed for the
``crucible_operator_status_patch_seconds`` histogram; Events are core/v1 Events about
the resource, so ``kubectl describe fr`` lists them.

A call the API server refuses for lack of permission raises :class:`ForbiddenError`,
naming the verb and resource to grant, so a Role that is too narrow reads as such in
the operator's log and the resource's Events.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import urllib3
from kubernetes import client as kubernetes
from kubernetes.client.exceptions import ApiException

from crucible.errors import CrucibleError, InputError, TemporaryError
from operators import metrics

GROUP = "crucible.dev"
VERSION = "v1alpha1"
PLURAL = "federationrounds"
KIND = "FederationRound"
COMPONENT = "crucible-operator"


class ForbiddenError(CrucibleError):
    """The operator's Role lacks a verb on a resource; grant it and the retry passes."""

    reason = "Forbidden"


class FederationRounds:
    """The API calls the operator makes about FederationRounds."""

    def __init__(self, api: kubernetes.ApiClient, *, timeout_seconds: float) -> None:
        self.custom = kubernetes.CustomObjectsApi(api)
        self.core = kubernetes.CoreV1Api(api)
        self.timeout = timeout_seconds

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The resource, or None when it does not exist."""
        try:
            return self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=self.timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translated(error, verb="get", resource=PLURAL) from error
        except urllib3.exceptions.HTTPError as error:
            raise _unreachable(error, verb="get", resource=PLURAL) from error

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch ``status`` onto the status subresource."""
        started = time.perf_counter()
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
                field_manager=COMPONENT,
                _content_type="application/merge-patch+json",
                _request_timeout=self.timeout,
            )
        except ApiException as error:
            raise _translated(
                error, verb="patch", resource=f"{PLURAL}/status"
            ) from error
        except urllib3.exceptions.HTTPError as error:
            raise _unreachable(
                error, verb="patch", resource=f"{PLURAL}/status"
            ) from error
        finally:
            metrics.STATUS_PATCH_SECONDS.observe(time.perf_counter() - started)

    def post_event(
        self,
        body: Any,
        *,
        kind: str,
        reason: str,
        message: str,
    ) -> None:
        """Post an Event about the resource ``body``; ``kind`` is Normal or Warning."""
        meta = body["metadata"]
        now = (
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{meta['name']}.",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(
                meta["namespace"], event, _request_timeout=self.timeout
            )
        except ApiException as error:
            raise _translated(error, verb="create", resource="events") from error
        except urllib3.exceptions.HTTPError as error:
            raise _unreachable(error, verb="create", resource="events") from error
        metrics.EVENTS.labels(kind).inc()


def _translated(error: ApiException, *, verb: str, resource: str) -> CrucibleError:
    """A ForbiddenError, InputError or TemporaryError for an API server refusal."""
    what = f"{verb} {resource}"
    if error.status == 403:
        return ForbiddenError(
            f"{what}: forbidden by RBAC ({error.reason}); grant the operator's Role "
            f"'{verb}' on '{resource}' in group "
            f"'{'' if resource == 'events' else GROUP}'; retrying with backoff"
        )
    if error.status in (400, 404, 409, 422):
        return InputError(
            f"{what}: the API server refused it with {error.status} {error.reason}: "
            f"{(error.body or '')[:500]}",
            reason="StatusRefused",
        )
    return TemporaryError(
        f"{what}: the API server answered {error.status} {error.reason}; "
        "retrying with backoff",
        reason="KubernetesUnavailable",
    )


def _unreachable(error: Exception, *, verb: str, resource: str) -> TemporaryError:
    return TemporaryError(
        f"{verb} {resource}: the API server is unreachable ({error}); retrying",
        reason="KubernetesUnavailable",
    )
