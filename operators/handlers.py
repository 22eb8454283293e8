"""kopf handlers of FederationRounds: follow the run, remove participants, cancel.

- ``following`` (daemon, one per resource): starts the run and mirrors it into the
  status until it ends; see :mod:`operators.follower`. On an operator restart it starts
  again and finds the same run, since runs are keyed by the resource's UID.
- ``removing_participants`` (update of ``spec.participants``): tells the aggregator
  which participants left a started run. The CRD allows only removals.
- ``cancelling`` (delete, behind the finalizer ``crucible.dev/cancel-run``): cancels an
  unfinished run, then lets the resource go. An unreachable aggregator holds the
  resource, says so in ``Degraded`` and an Event, and is retried with backoff.

Importing this module registers the handlers with kopf's default registry.
"""

from __future__ import annotations

from typing import Any

import kopf

from crucible.client import AdminClient
from crucible.errors import CrucibleError, InputError, TemporaryError
from crucible.telemetry import logger
from operators import metrics
from operators.federationrounds import GROUP, PLURAL, VERSION
from operators.follower import RunFollower, now
from operators.operating import Operating
from operators.status import (
    TERMINAL_PHASES,
    condition,
    has_ended,
    is_finished,
    merge_conditions,
)

RESOURCE = (GROUP, VERSION, PLURAL)


@kopf.daemon(*RESOURCE, cancellation_backoff=2.0, cancellation_timeout=30.0)
def following(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: Operating, **_: Any
) -> None:
    metrics.RECONCILES.labels("follow").inc()
    status = body.get("status") or {}
    if is_finished(status, body["metadata"].get("generation", 1)):
        return
    RunFollower(memo, body, stopped).follow()


@kopf.on.update(*RESOURCE, field="spec.participants")
def removing_participants(
    body: kopf.Body,
    old: list[str] | None,
    new: list[str] | None,
    memo: Operating,
    retry: int,
    **_: Any,
) -> None:
    metrics.RECONCILES.labels("update_participants").inc()
    meta = body["metadata"]
    log = logger("operator", namespace=meta["namespace"], name=meta["name"])
    run_id = (body.get("status") or {}).get("runId")
    if not run_id or is_finished(body.get("status") or {}, meta.get("generation", 1)):
        # Not started: the follower starts the run with the current list.
        return
    removed = sorted(set(old or ()) - set(new or ()))
    log = log.bind(run=run_id)
    try:
        memo.admin.update_participants(run_id, list(new or ()))
    except InputError as error:
        metrics.ERRORS.labels("update_participants", "permanent").inc()
        log.error("participants_not_removed", error=str(error), next="no retry")
        _announce(memo, body, "Warning", error.reason, str(error))
        return
    except TemporaryError as error:
        metrics.ERRORS.labels("update_participants", "temporary").inc()
        delay = _backoff(memo, retry)
        log.warning("aggregator_unavailable", error=str(error), retry_in_seconds=delay)
        raise kopf.TemporaryError(str(error), delay=delay) from error
    log.info("participants_removed", removed=removed)
    _announce(
        memo,
        body,
        "Normal",
        "ParticipantsRemoved",
        f"removed from run {run_id}: {', '.join(removed) or 'none'}",
    )


@kopf.on.delete(*RESOURCE)
def cancelling(body: kopf.Body, memo: Operating, retry: int, **_: Any) -> None:
    metrics.RECONCILES.labels("cancel").inc()
    meta = body["metadata"]
    status = body.get("status") or {}
    log = logger("operator", namespace=meta["namespace"], name=meta["name"])
    if has_ended(status):
        return

    try:
        run_id = status.get("runId") or _run_keyed(memo.admin, meta["uid"])
        if not run_id:
            log.info("run_not_started", next="finalizer removed")
            return
        log = log.bind(run=run_id)
        # kopf may call this again once the follower has stopped: cancel only once.
        if memo.admin.get_run(run_id).phase in TERMINAL_PHASES:
            log.debug("run_already_over", next="finalizer removed")
            return
        run = memo.admin.cancel_run(run_id)
    except InputError as error:
        # Not found or already over: nothing is left to cancel.
        log.warning("run_not_cancelled", error=str(error), next="finalizer removed")
        return
    except TemporaryError as error:
        metrics.ERRORS.labels("cancel", "temporary").inc()
        delay = _backoff(memo, retry)
        message = (
            f"cancel the run before deletion: {error}; the resource stays until the "
            f"aggregator answers, retrying in {delay:.0f} s"
        )
        log.warning("aggregator_unavailable", error=str(error), retry_in_seconds=delay)
        _degraded(memo, body, error.reason, message)
        _announce(memo, body, "Warning", error.reason, message)
        raise kopf.TemporaryError(message, delay=delay) from error

    log.info("run_cancelled", phase=run.phase)
    _announce(
        memo,
        body,
        "Normal",
        "RunCancelled",
        f"run {run_id} cancelled on deletion after {run.completed_rounds} rounds",
    )


def _run_keyed(client: AdminClient, key: str) -> str:
    """The run started for ``key`` when its id never reached the status, or ''."""
    for run in client.list_runs():
        if run.key == key:
            return run.run_id
    return ""


def _backoff(memo: Operating, retry: int) -> float:
    settings = memo.settings
    return min(settings.retry_seconds * 2 ** min(retry, 20), settings.retry_max_seconds)


def _degraded(memo: Operating, body: kopf.Body, reason: str, message: str) -> None:
    meta = body["metadata"]
    generation = meta.get("generation", 1)
    conditions = merge_conditions(
        (body.get("status") or {}).get("conditions") or (),
        [condition("Degraded", "True", reason, message)],
        generation=generation,
        now=now(),
    )
    try:
        memo.resources.patch_status(
            meta["namespace"], meta["name"], {"conditions": conditions}
        )
    except CrucibleError as error:
        logger("operator").warning("status_patch_failed", error=str(error))


def _announce(
    memo: Operating, body: kopf.Body, kind: str, reason: str, message: str
) -> None:
    try:
        memo.resources.post_event(body, kind=kind, reason=reason, message=message)
    except CrucibleError as error:
        logger("operator").warning("event_not_posted", reason=reason, error=str(error))
