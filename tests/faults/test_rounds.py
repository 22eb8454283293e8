"""Round lifecycle under stragglers: late updates are refused, stored updates go away.

One aggregator serves every test in this module; each test starts its own run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from crucible import spec as specs
from crucible.protocol import pb
from tests.faults.participants import LightParticipant, local_update
from tests.federation import FEATURES, Federation, spec, wait_for_phase
from tests.lightclient import LightClient

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    running = Federation(tmp_path_factory.mktemp("rounds"))
    try:
        running.start_aggregator()
        yield running
    finally:
        running.stop()


def test_late_update_for_a_closed_round_is_refused_with_its_reason(federation):
    names = ["fast-mill", "slow-mill"]
    body = specs.parse(spec(names, rounds=2, minParticipants=1, graceSeconds=0))
    with federation.admin() as admin:
        run_id = admin.start_run("uid-straggler", body).run_id
    fast, slow = (
        LightClient(federation.aggregator_address, federation.issue(n)) for n in names
    )
    for client in (fast, slow):
        client.join(run_id)
        client.report_statistics(run_id, FEATURES)
    fast_task, slow_task = fast.task(run_id, pb.TRAIN), slow.task(run_id, pb.TRAIN)
    weights = fast.fetch(fast_task)

    # Quorum is one and there is no grace: the fast update closes round 1.
    assert fast.send(fast_task, local_update(weights, "fast-mill", 1)).accepted
    fast.task(run_id, pb.EVALUATE)
    receipt = slow.send(slow_task, local_update(weights, "slow-mill", 1))

    assert (receipt.accepted, receipt.reason) == (False, "StaleRound")
    assert "round 1" in receipt.message and "refused" in receipt.message
    with federation.admin() as admin:
        status = admin.get_run(run_id)
    assert dict(status.refused_updates) == {"StaleRound": 1}
    assert [(r.round, r.participants) for r in status.rounds] == [(1, 1)]
    assert (
        "StaleRound"
        in next(p for p in status.participants if p.name == "slow-mill").message
    )

    # The straggler is still in the run: its next task is round 1's evaluation or round 2.
    assert slow.task(run_id).kind in (pb.EVALUATE, pb.TRAIN)
    fast.close()
    slow.close()


def test_stored_updates_are_deleted_once_their_round_is_recorded(federation):
    names = ["mill-x", "mill-y"]
    body = specs.parse(spec(names, rounds=3))
    with federation.admin() as admin:
        run_id = admin.start_run("uid-cleanup", body).run_id
    participants = [
        LightParticipant(
            federation.aggregator_address, federation.issue(n), n, run_id, FEATURES
        )
        for n in names
    ]
    for participant in participants:
        participant.start()
    seen_rounds = set()
    with federation.admin() as admin:
        for status in admin.watch_run(run_id, timeout=60):
            # Files go right after the record, not in the same step: by the time the
            # next round is recorded, none of an earlier round's updates is left.
            for recorded in status.rounds[:-1]:
                seen_rounds.add(recorded.round)
                folder = federation.state_dir / "runs" / run_id / "updates"
                assert not list(folder.glob(f"{recorded.round:04d}/*"))
            if status.phase in ("Succeeded", "Failed"):
                break
        final = wait_for_phase(admin, run_id, ("Succeeded", "Failed"))
    for participant in participants:
        participant.join(timeout=30)

    assert final.phase == "Succeeded", final.message
    assert seen_rounds == {1, 2}
    assert not list((federation.state_dir / "runs" / run_id).glob("updates/*/*"))
    with sqlite3.connect(federation.state_dir / "crucible.db") as db:
        left = db.execute("SELECT COUNT(*) FROM updates WHERE run_id=?", (run_id,))
        assert left.fetchone()[0] == 0
    assert sorted(
        p.name for p in (federation.state_dir / "runs" / run_id).glob("global-*")
    ) == [f"global-{n:04d}.safetensors" for n in range(4)]
