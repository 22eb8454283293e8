"""Following one FederationRound's run: start it, mirror its progress, end with it.

A :class:`RunFollower` lives in a kopf daemon thread, one per FederationRound. It starts
the run on the aggregator keyed by the resource's UID, so a restarted operator or a
replayed event finds the same run instead of starting a second one; it then reads the
aggregator's watch stream and turns each status into a status patch and, on change,
Events (round completed, participant lost, run finished). It returns once the run
reached a terminal phase or the spec was refused.

Errors split as everywhere in Crucible: an :class:`~crucible.errors.InputError` (the
spec is refused) ends the resource ``Failed`` with no retry; a
:class:`~crucible.errors.TemporaryError` (aggregator unreachable) is said in the
``Degraded`` condition and an Event, then retried with a doubling delay.

What it does not do: change a started run's spec, other than removing participants
(see :mod:`operators.handlers`). A refused spec is final for that generation; the
operator tries again only after a restart that finds a newer generation.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import grpc

from crucible import spec as specs
from crucible.client import AdminClient
from crucible.errors import CrucibleError, InputError, TemporaryError
from crucible.protocol import pb
from crucible.telemetry import logger
from operators import metrics
from operators.federationrounds import FederationRounds, ForbiddenError
from operators.operating import Operating
from operators.status import (
    TERMINAL_PHASES,
    announced_rounds,
    condition,
    has_ended,
    merge_conditions,
    status_of,
    timestamp,
)

EVENTS_PER_UPDATE = 5


def now() -> str:
    return timestamp(dt.datetime.now(dt.UTC).timestamp())


class RunFollower:
    """Starts and follows the run of one FederationRound until it ends."""

    def __init__(self, operating: Operating, body: Any, stopped: Any) -> None:
        self.operating = operating
        self.settings = operating.settings
        self.resources: FederationRounds = operating.resources
        self.body = body
        self.stopped = stopped
        meta = body["metadata"]
        self.namespace, self.name, self.uid = (
            meta["namespace"],
            meta["name"],
            meta["uid"],
        )
        self.previous: dict[str, Any] = dict(body.get("status") or {})
        # Rounds announced by an Event; after a restart, those the status shows.
        self.announced = max(
            (r["round"] for r in self.previous.get("rounds") or () if "evalRmse" in r),
            default=0,
        )
        self.delay = self.settings.retry_seconds
        self.log = logger("operator", namespace=self.namespace, name=self.name)

    def follow(self) -> None:
        """Start the run if needed and mirror it until it ends or the daemon stops."""
        client = self.operating.admin_client()
        finished = threading.Event()
        threading.Thread(
            target=self._closing_on_stop,
            args=(client, finished),
            name=f"closer-{self.namespace}-{self.name}",
            daemon=True,
        ).start()
        metrics.RUNS_FOLLOWED.inc()
        try:
            self._following(client)
        finally:
            metrics.RUNS_FOLLOWED.dec()
            finished.set()
            client.close()

    def _closing_on_stop(self, client: AdminClient, finished: threading.Event) -> None:
        # The watch stream blocks its thread; closing the channel is what ends it
        # promptly when kopf stops the daemon (resource deleted, operator exiting).
        while not finished.is_set():
            if self.stopped.wait(1.0):
                client.close()
                return

    def _following(self, client: AdminClient) -> None:
        run_id = self.previous.get("runId", "")
        while not self.stopped:
            try:
                if not run_id:
                    run_id = self._start(client)
                if self._watch(client, run_id):
                    return
            except InputError as error:
                self._refused(error)
                return
            except ForbiddenError as error:
                self._forbidden(error)
            except TemporaryError as error:
                if self.stopped:
                    return
                if _deadline_passed(error):
                    self.log.debug("run_watch_reopened", run=run_id)
                    continue
                self._unavailable(error, started=bool(run_id))
            self.stopped.wait(self.delay)
            self.delay = min(self.delay * 2, self.settings.retry_max_seconds)

    def _start(self, client: AdminClient) -> str:
        """Start (or find again) the run keyed by the resource's UID."""
        spec = self._run_spec()
        run = client.start_run(self.uid, spec)
        self.log = self.log.bind(run=run.run_id)
        self.log.info("run_started", phase=run.phase, rounds=run.total_rounds)
        if not self.previous.get("runId"):
            self._announce(
                "Normal",
                "RunStarted",
                f"the aggregator runs this FederationRound as {run.run_id}",
            )
        self._mirror(run)
        return run.run_id

    def _run_spec(self) -> specs.RunSpec:
        data = {key: value for key, value in self.body["spec"].items()}
        initial = data.pop("initialModel", None)
        if initial:
            data["initialModelRun"] = self._initial_model_run(
                initial["fromFederationRound"]
            )
        data["name"] = f"{self.namespace}/{self.name}"
        return specs.parse(data, source=f"FederationRound {self.namespace}/{self.name}")

    def _initial_model_run(self, name: str) -> str:
        """The run key (UID) of the FederationRound whose model starts this one."""
        field = "spec.initialModel.fromFederationRound"
        source = self.resources.get(self.namespace, name)
        if source is None:
            raise TemporaryError(
                f"{field}: expected a FederationRound {self.namespace}/{name}, found "
                "none; waiting for it",
                reason="InitialModelNotFound",
            )
        conditions = {
            c.get("type"): c.get("status")
            for c in (source.get("status") or {}).get("conditions") or ()
        }
        if conditions.get("Failed") == "True":
            raise InputError(
                f"{field}: expected a FederationRound that succeeded, found "
                f"{self.namespace}/{name} failed; this run cannot start from it",
                reason="InitialModelFailed",
            )
        if conditions.get("Succeeded") != "True":
            raise TemporaryError(
                f"{field}: {self.namespace}/{name} has not succeeded yet; waiting",
                reason="InitialModelNotReady",
            )
        return source["metadata"]["uid"]

    def _watch(self, client: AdminClient, run_id: str) -> bool:
        """Mirror the run's statuses; True once it reached a terminal phase."""
        stream = client.watch_run(run_id, timeout=self.settings.run_watch_seconds)
        for run in stream:
            self._mirror(run)
            self.delay = self.settings.retry_seconds
            if run.phase in TERMINAL_PHASES:
                self.log.info("run_finished", phase=run.phase, reason=run.reason)
                return True
        return False

    def _mirror(self, run: pb.RunStatus) -> None:
        """Patch the status from ``run`` and announce what changed since last time."""
        status = status_of(
            run,
            previous_conditions=self.previous.get("conditions") or (),
            generation=self.body["metadata"].get("generation", 1),
            participants=len(self.body["spec"]["participants"]),
            now=now(),
        )
        if status == self.previous:
            return
        self.resources.patch_status(self.namespace, self.name, status)
        before, self.previous = self.previous, status
        self._announce_changes(run, before, status)

    def _announce_changes(
        self, run: pb.RunStatus, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        fresh = [r for r in announced_rounds(run) if r.round > self.announced]
        for metrics_ in fresh[-EVENTS_PER_UPDATE:]:
            self.announced = metrics_.round
            self.log.info(
                "round_completed",
                round=metrics_.round,
                train_loss=metrics_.train_loss,
                eval_rmse=metrics_.eval_rmse,
                participants=metrics_.participants,
                seconds=metrics_.seconds,
            )
            rmse = metrics_.eval_rmse
            self._announce(
                "Normal",
                "RoundCompleted",
                f"round {metrics_.round}/{run.total_rounds}: train loss "
                f"{metrics_.train_loss:.4f}, evaluation RMSE "
                f"{f'{rmse:.4f}' if rmse > 0 else 'not reported'}, "
                f"{metrics_.participants} participants, {metrics_.seconds:.1f} s",
            )

        lost_before = {
            p["name"] for p in before.get("participants") or () if p["state"] == "Lost"
        }
        for participant in run.participants:
            if participant.state == "Lost" and participant.name not in lost_before:
                self.log.warning("participant_lost", participant=participant.name)
                self._announce(
                    "Warning",
                    "ParticipantLost",
                    f"participant {participant.name} lost: "
                    f"{participant.message or 'no contact'}; the run goes on while "
                    f"{run.spec.min_participants or 1} participants report",
                )

        if has_ended(after) and not has_ended(before):
            if run.phase == "Succeeded":
                self._announce(
                    "Normal",
                    "RunSucceeded",
                    f"run {run.run_id} succeeded after {run.completed_rounds} rounds; "
                    f"global model sha256 {run.model_digest} at {run.model_path}",
                )
            else:
                self._announce(
                    "Warning",
                    f"Run{run.phase}",
                    f"run {run.run_id} {run.phase.lower()}: "
                    f"{run.reason}: {run.message}",
                )

    def _refused(self, error: InputError) -> None:
        """The spec was refused: the resource ends Failed; no retry."""
        metrics.ERRORS.labels("follow", "permanent").inc()
        self.log.error(
            "run_refused",
            reason=error.reason,
            error=str(error),
            next="resource ends Failed; fix the spec in a new FederationRound",
        )
        message = f"{error}; fix the spec and apply it as a new FederationRound"
        self._patch_conditions(
            [
                condition("Accepted", "False", error.reason, message),
                condition("Running", "False", error.reason, message),
                condition("Succeeded", "False", error.reason, message),
                condition("Failed", "True", error.reason, message),
            ]
        )
        self._announce("Warning", error.reason, message)

    def _unavailable(self, error: TemporaryError, *, started: bool) -> None:
        """Say in Degraded (and Accepted, before the start) that we retry, and when."""
        metrics.ERRORS.labels("follow", "temporary").inc()
        self.log.warning(
            "aggregator_unavailable",
            reason=error.reason,
            error=str(error),
            retry_in_seconds=self.delay,
        )
        message = f"{error}; retrying in {self.delay:.0f} s"
        wanted = [condition("Degraded", "True", error.reason, message)]
        if not started:
            wanted.append(condition("Accepted", "Unknown", error.reason, message))
        first = not any(
            c.get("type") == "Degraded" and c.get("reason") == error.reason
            for c in self.previous.get("conditions") or ()
        )
        self._patch_conditions(wanted)
        if first:
            self._announce("Warning", error.reason, message)

    def _forbidden(self, error: ForbiddenError) -> None:
        """RBAC refused a call: say so where it can be seen, then retry."""
        metrics.ERRORS.labels("follow", "forbidden").inc()
        self.log.error(
            "kubernetes_forbidden",
            error=str(error),
            next=f"retry in {self.delay:.0f} s",
        )
        self._announce("Warning", "Forbidden", str(error))

    def _patch_conditions(self, wanted: list[dict[str, Any]]) -> None:
        conditions = merge_conditions(
            self.previous.get("conditions") or (),
            wanted,
            generation=self.body["metadata"].get("generation", 1),
            now=now(),
        )
        status = {
            "observedGeneration": self.body["metadata"].get("generation", 1),
            "conditions": conditions,
        }
        try:
            self.resources.patch_status(self.namespace, self.name, status)
        except CrucibleError as error:
            self.log.error("status_patch_failed", error=str(error), next="retry later")
            return
        self.previous = {**self.previous, **status}

    def _announce(self, kind: str, reason: str, message: str) -> None:
        try:
            self.resources.post_event(
                self.body, kind=kind, reason=reason, message=message
            )
        except CrucibleError as error:
            self.log.warning("event_not_posted", reason=reason, error=str(error))


def _deadline_passed(error: TemporaryError) -> bool:
    """True when a watch stream ended only because its deadline passed."""
    cause = error.__cause__
    return (
        isinstance(cause, grpc.RpcError)
        and hasattr(cause, "code")
        and cause.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    )
