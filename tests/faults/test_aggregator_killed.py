"""The aggregator SIGKILLed at each point of a round loses nothing and counts nothing twice.

``CRUCIBLE_FAULT_AFTER`` makes the aggregator kill itself right after the named point
(services/aggregator/faults.py). Light participants keep retrying while it is away; the
restarted aggregator must finish the run with the same global model, byte for byte, as
a run without the kill.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from crucible import spec as specs
from crucible.tensors import file_digest, read_file
from services.aggregator.faults import POINTS
from tests.faults.participants import LightParticipant
from tests.federation import FEATURES, Federation, spec, wait_for_phase

pytestmark = pytest.mark.timeout(150)
NAMES = ["mill-a", "mill-b"]
BODY = specs.parse(spec(NAMES, rounds=3))


def start_run(federation: Federation) -> tuple[str, list[LightParticipant]]:
    with federation.admin() as admin:
        run_id = admin.start_run("uid-faults", BODY).run_id
    participants = [
        LightParticipant(
            federation.aggregator_address,
            federation.issue(name),
            name,
            run_id,
            FEATURES,
        )
        for name in NAMES
    ]
    for participant in participants:
        participant.start()
    return run_id, participants


def finish(federation: Federation, run_id: str, participants: list[LightParticipant]):
    with federation.admin() as admin:
        final = wait_for_phase(admin, run_id, ("Succeeded", "Failed"), timeout=90)
    for participant in participants:
        participant.join(timeout=30)
        assert participant.error is None, participant.error
    return final


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """The same run without a fault: the result every killed run must reproduce."""
    federation = Federation(tmp_path_factory.mktemp("reference"))
    try:
        federation.start_aggregator()
        run_id, participants = start_run(federation)
        final = finish(federation, run_id, participants)
    finally:
        federation.stop()
    assert final.phase == "Succeeded", final.message
    return final


def checkpoints_on_disk(state_dir: Path) -> dict[int, str]:
    """Recorded rounds and their checkpoint digests; every recorded file must be whole."""
    with sqlite3.connect(state_dir / "crucible.db") as db:
        rows = db.execute("SELECT round, path, digest FROM rounds").fetchall()
    for round_number, path, digest in rows:
        assert file_digest(Path(path)) == digest, f"round {round_number} checkpoint"
    for path in state_dir.glob("runs/*/global-*.safetensors"):
        read_file(path)  # raises on a truncated or corrupt file
    return {round_number: digest for round_number, _, digest in rows}


@pytest.mark.parametrize("point", POINTS)
def test_aggregator_killed_mid_round_resumes_without_loss_or_double_count(
    point: str, reference, tmp_path: Path
):
    federation = Federation(tmp_path)
    try:
        federation.start_aggregator(CRUCIBLE_FAULT_AFTER=point)
        run_id, participants = start_run(federation)
        assert federation.aggregator_process is not None
        assert federation.aggregator_process.wait(timeout=90) == -9

        recorded = checkpoints_on_disk(federation.state_dir)
        federation.start_aggregator()
        with federation.admin() as admin:
            resumed = admin.get_run(run_id)
        assert resumed.phase == "Running"
        # Rounds may complete already; every round recorded before the kill stays.
        assert recorded.items() <= {r.round: r.digest for r in resumed.rounds}.items()
        final = finish(federation, run_id, participants)
    finally:
        federation.stop()

    assert final.phase == "Succeeded", final.message
    assert "run_resumed" in federation.log("aggregator")
    assert [(r.round, r.participants) for r in final.rounds] == [(1, 2), (2, 2), (3, 2)]
    assert [r.digest for r in final.rounds] == [r.digest for r in reference.rounds]
    assert final.model_digest == reference.model_digest
    for participant in participants:
        # A send cut by the kill may be answered Duplicate or, once the round has
        # closed, StaleRound on retry; it is never accepted twice.
        assert all(n <= 1 for n in participant.accepted().values())
    assert not list(federation.state_dir.glob("runs/*/updates/*/*"))
