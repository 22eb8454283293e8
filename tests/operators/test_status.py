"""A FederationRound's status computed from the aggregator's RunStatus."""

from __future__ import annotations

import math

from crucible.protocol import pb
from operators.status import (
    ROUNDS_KEPT,
    announced_rounds,
    has_ended,
    is_finished,
    merge_conditions,
    status_of,
)

EARLIER = "2026-01-01T00:00:00Z"
NOW = "2026-01-01T01:00:00Z"


def run(**fields: object) -> pb.RunStatus:
    defaults = {
        "run_id": "r-1",
        "phase": "Running",
        "current_round": 2,
        "completed_rounds": 1,
        "total_rounds": 5,
        "spec": pb.RunSpec(min_participants=2),
    }
    return pb.RunStatus(**{**defaults, **fields})


def conditions_by_type(status: dict) -> dict[str, dict]:
    return {c["type"]: c for c in status["conditions"]}


def test_a_running_run_reads_running_with_success_unknown():
    status = status_of(
        run(), previous_conditions=[], generation=3, participants=3, now=NOW
    )

    conditions = conditions_by_type(status)
    assert conditions["Running"]["status"] == "True"
    assert conditions["Succeeded"]["status"] == "Unknown"
    assert conditions["Failed"]["status"] == "False"
    assert conditions["Accepted"]["reason"] == "RunStarted"
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert status["roundsSummary"] == "1/5"
    assert status["observedGeneration"] == 3


def test_a_failed_run_carries_the_aggregators_reason():
    failed = run(phase="Failed", reason="QuorumNotMet", message="round 2: 1 of 2")

    conditions = conditions_by_type(
        status_of(failed, previous_conditions=[], generation=1, participants=3, now=NOW)
    )

    assert conditions["Failed"] == {
        "type": "Failed",
        "status": "True",
        "reason": "QuorumNotMet",
        "message": "round 2: 1 of 2",
        "observedGeneration": 1,
        "lastTransitionTime": NOW,
    }
    assert conditions["Succeeded"]["status"] == "False"


def test_transition_time_moves_only_when_the_status_changes():
    previous = [
        {
            "type": "Running",
            "status": "True",
            "reason": "RoundInProgress",
            "message": "",
            "lastTransitionTime": EARLIER,
        },
        {
            "type": "Succeeded",
            "status": "Unknown",
            "reason": "Running",
            "message": "",
            "lastTransitionTime": EARLIER,
        },
    ]

    merged = merge_conditions(
        previous,
        [
            {"type": "Running", "status": "True", "reason": "R", "message": "m"},
            {"type": "Succeeded", "status": "True", "reason": "S", "message": "m"},
        ],
        generation=2,
        now=NOW,
    )

    times = {c["type"]: c["lastTransitionTime"] for c in merged}
    assert times == {"Running": EARLIER, "Succeeded": NOW}


def test_a_lost_participant_makes_the_resource_degraded():
    lost = run(
        participants=[
            pb.ParticipantStatus(name="plant_a", state="Reported", last_contact_unix=1),
            pb.ParticipantStatus(name="plant_c", state="Lost", message="silent 90 s"),
        ]
    )

    status = status_of(
        lost, previous_conditions=[], generation=1, participants=2, now=NOW
    )

    degraded = conditions_by_type(status)["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "ParticipantLost")
    assert "plant_c" in degraded["message"]
    assert status["participants"][0]["lastContact"] == "1970-01-01T00:00:01Z"
    assert status["participants"][1] == {
        "name": "plant_c",
        "state": "Lost",
        "message": "silent 90 s",
    }


def test_only_the_last_rounds_are_kept_and_non_finite_metrics_are_left_out():
    rounds = [
        pb.RoundMetrics(round=i, train_loss=0.5, eval_rmse=0.25, participants=3)
        for i in range(1, 80)
    ]
    rounds.append(pb.RoundMetrics(round=80, train_loss=math.nan, eval_rmse=0.2))

    status = status_of(
        run(rounds=rounds, completed_rounds=80, total_rounds=100),
        previous_conditions=[],
        generation=1,
        participants=3,
        now=NOW,
    )

    assert len(status["rounds"]) == ROUNDS_KEPT
    assert status["rounds"][-1] == {
        "round": 80,
        "evalRmse": 0.2,
        "participants": 0,
        "seconds": 0,
    }
    assert status["latestEvalRmse"] == 0.2
    assert status["participantsReporting"] == "0/3"


def test_a_succeeded_run_is_finished_for_its_generation_only():
    done = status_of(
        run(phase="Succeeded", model_digest="ab", model_path="/m", finished_unix=2),
        previous_conditions=[],
        generation=4,
        participants=3,
        now=NOW,
    )

    assert has_ended(done)
    assert is_finished(done, 4)
    assert not is_finished(done, 5)
    assert done["model"] == {"location": "/m", "digest": "ab"}
    assert done["completionTime"] == "1970-01-01T00:00:02Z"


def test_a_round_is_announced_once_evaluated_or_followed_by_another():
    rounds = [
        pb.RoundMetrics(round=1, eval_rmse=0.0),
        pb.RoundMetrics(round=2, eval_rmse=0.3),
        pb.RoundMetrics(round=3, eval_rmse=0.0),
    ]

    running = [r.round for r in announced_rounds(run(rounds=rounds))]
    ended = [r.round for r in announced_rounds(run(rounds=rounds, phase="Failed"))]

    assert running == [1, 2]
    assert ended == [1, 2, 3]
