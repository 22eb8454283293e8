"""A FederationRound's ``.status``, computed from the aggregator's view of its run.

Pure functions: a :class:`~crucible.protocol.pb.RunStatus` and the conditions already on
the resource go in, the status document to merge-patch comes out. Conditions follow the
Kubernetes conventions (type, status, CamelCase reason, message, lastTransitionTime,
observedGeneration); ``lastTransitionTime`` moves only when a condition's status does.

Condition types and what they mean:

- ``Accepted``: the spec passed the operator's checks; the aggregator started the run.
- ``Running``: a training round is in progress.
- ``Succeeded``: True once every round completed; Unknown while the run goes on; False
  when it failed or was cancelled (so ``kubectl get fr`` reads like Tekton's).
- ``Failed``: True when the run ended without a model (the reason says why, for example
  ``QuorumNotMet``), or the spec was refused.
- ``Degraded``: True while something is wrong but the run goes on: a participant lost or
  refusing, or the aggregator unreachable.

Not done here: talking to the Kubernetes API (see :mod:`operators.federationrounds`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from crucible.protocol import pb

CONDITION_TYPES = ("Accepted", "Running", "Succeeded", "Failed", "Degraded")
TERMINAL_PHASES = ("Succeeded", "Failed", "Cancelled")
ROUNDS_KEPT = 50
_NOT_CAMEL = re.compile(r"[^A-Za-z0-9]")

Condition = dict[str, Any]


def timestamp(unix: float) -> str:
    """RFC 3339 in UTC, to the second, as Kubernetes writes times."""
    moment = dt.datetime.fromtimestamp(unix, dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def camel(reason: str, default: str) -> str:
    """A reason fit for a condition: letters and digits only, starting with a letter."""
    cleaned = _NOT_CAMEL.sub("", reason or "")
    return cleaned if cleaned[:1].isalpha() else default


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _evaluated(rmse: float) -> float | None:
    """The RMSE if the round was evaluated: the aggregator sends 0 until then."""
    return rmse if math.isfinite(rmse) and rmse > 0 else None


def merge_conditions(
    previous: Iterable[Mapping[str, Any]],
    wanted: Iterable[Condition],
    *,
    generation: int,
    now: str,
) -> list[Condition]:
    """Previous conditions updated by ``wanted``; transition times kept if unchanged."""
    merged = {c["type"]: dict(c) for c in previous if c.get("type")}
    for condition in wanted:
        before = merged.get(condition["type"], {})
        changed = before.get("status") != condition["status"]
        merged[condition["type"]] = {
            **condition,
            "observedGeneration": generation,
            "lastTransitionTime": now if changed else before["lastTransitionTime"],
        }
    order = {kind: index for index, kind in enumerate(CONDITION_TYPES)}
    return sorted(merged.values(), key=lambda c: order.get(c["type"], len(order)))


def condition(kind: str, status: str, reason: str, message: str) -> Condition:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def phase_conditions(run: pb.RunStatus) -> list[Condition]:
    """Running, Succeeded and Failed for the run's phase."""
    phase = run.phase or "Pending"
    reason = camel(run.reason, default=f"Run{phase}")
    message = run.message or f"run {run.run_id} is {phase.lower()}"
    if phase == "Succeeded":
        return [
            condition("Running", "False", reason, message),
            condition("Succeeded", "True", reason, message),
            condition("Failed", "False", reason, message),
        ]
    if phase in ("Failed", "Cancelled"):
        return [
            condition("Running", "False", reason, message),
            condition("Succeeded", "False", reason, message),
            condition("Failed", "True", reason, message),
        ]
    if phase == "Running":
        progress = (
            f"round {run.current_round} of {run.total_rounds} in progress; "
            f"{run.completed_rounds} completed"
        )
        return [
            condition("Running", "True", "RoundInProgress", run.message or progress),
            condition("Succeeded", "Unknown", "Running", progress),
            condition("Failed", "False", "Running", progress),
        ]
    waiting = run.message or f"run {run.run_id} is waiting for participants to join"
    return [
        condition("Running", "False", "WaitingForParticipants", waiting),
        condition("Succeeded", "Unknown", "Pending", waiting),
        condition("Failed", "False", "Pending", waiting),
    ]


def degraded_condition(run: pb.RunStatus) -> Condition:
    """Degraded while participants are lost or refusing, otherwise not."""
    lost = sorted(p.name for p in run.participants if p.state == "Lost")
    refused = sorted(p.name for p in run.participants if p.state == "Refused")
    if lost:
        return condition(
            "Degraded",
            "True",
            "ParticipantLost",
            f"participants lost: {', '.join(lost)}; rounds go on while "
            f"{run.spec.min_participants or 1} of them report",
        )
    if refused:
        return condition(
            "Degraded",
            "True",
            "ParticipantRefused",
            f"participants refused the run: {', '.join(refused)}",
        )
    return condition("Degraded", "False", "AsExpected", "all participants in contact")


def participants_reporting(run: pb.RunStatus, participants: int) -> str:
    reporting = run.rounds[-1].participants if run.rounds else 0
    return f"{reporting}/{participants}"


def status_of(
    run: pb.RunStatus,
    *,
    previous_conditions: Iterable[Mapping[str, Any]],
    generation: int,
    participants: int,
    now: str,
) -> dict[str, Any]:
    """The ``.status`` document for ``run``, to merge-patch onto the resource."""
    accepted = condition(
        "Accepted", "True", "RunStarted", f"the aggregator runs it as {run.run_id}"
    )
    conditions = merge_conditions(
        previous_conditions,
        [accepted, *phase_conditions(run), degraded_condition(run)],
        generation=generation,
        now=now,
    )
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "runId": run.run_id,
        "conditions": conditions,
        "currentRound": run.current_round,
        "completedRounds": run.completed_rounds,
        "roundsSummary": f"{run.completed_rounds}/{run.total_rounds}",
        "participantsReporting": participants_reporting(run, participants),
        "participants": [_participant(p) for p in run.participants],
        "rounds": [_round(r) for r in run.rounds[-ROUNDS_KEPT:]],
    }
    evaluated = [r for r in run.rounds if _evaluated(r.eval_rmse) is not None]
    if evaluated:
        status["latestEvalRmse"] = evaluated[-1].eval_rmse
    if run.model_digest or run.model_path:
        status["model"] = {"location": run.model_path, "digest": run.model_digest}
    if run.started_unix > 0:
        status["startTime"] = timestamp(run.started_unix)
    if run.finished_unix > 0:
        status["completionTime"] = timestamp(run.finished_unix)
    return status


def _participant(participant: pb.ParticipantStatus) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": participant.name, "state": participant.state}
    if participant.last_contact_unix > 0:
        entry["lastContact"] = timestamp(participant.last_contact_unix)
    if participant.message:
        entry["message"] = participant.message
    return entry


def _round(metrics: pb.RoundMetrics) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "round": metrics.round,
        "participants": metrics.participants,
        "seconds": round(metrics.seconds, 3),
    }
    if (loss := _finite(metrics.train_loss)) is not None:
        entry["trainLoss"] = loss
    if (rmse := _evaluated(metrics.eval_rmse)) is not None:
        entry["evalRmse"] = rmse
    return entry


def announced_rounds(run: pb.RunStatus) -> list[pb.RoundMetrics]:
    """Rounds ready to announce: evaluated, followed by another, or the run over."""
    latest = run.rounds[-1].round if run.rounds else 0
    return [
        r
        for r in run.rounds
        if _evaluated(r.eval_rmse) is not None
        or r.round < latest
        or run.phase in TERMINAL_PHASES
    ]


def has_ended(status: Mapping[str, Any]) -> bool:
    """True when the status records the end of the run: Succeeded or Failed."""
    return any(
        entry.get("type") in ("Succeeded", "Failed") and entry.get("status") == "True"
        for entry in status.get("conditions") or ()
    )


def is_finished(status: Mapping[str, Any], generation: int) -> bool:
    """True when the status records the end of the run for this generation."""
    return status.get("observedGeneration") == generation and has_ended(status)
