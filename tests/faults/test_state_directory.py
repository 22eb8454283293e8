"""A full state directory: the aggregator says so, refuses new work, keeps what it has.

The state directory is a small tmpfs mounted for the test (root only; skipped
otherwise), with ``min_free_bytes`` at half its size. A filler file in that tmpfs takes
the free space below the line, and removing it gives the space back; the real disk is
never filled.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from crucible import spec as specs
from crucible.errors import TemporaryError
from crucible.protocol import pb
from tests.faults.participants import LightParticipant, local_update
from tests.federation import FEATURES, Federation, free_port, spec, wait_for_phase
from tests.lightclient import LightClient

pytestmark = pytest.mark.timeout(120)
SIZE = 64 << 20
NAMES = ["plant-a", "plant-b"]


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Federation]:
    federation = Federation(tmp_path)
    federation.state_dir.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", federation.state_dir],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        federation.aggregator_address = f"127.0.0.1:{free_port()}"
        federation.aggregator_metrics = f"127.0.0.1:{free_port()}"
        env = federation._env(
            "aggregator",
            CRUCIBLE_LISTEN=federation.aggregator_address,
            CRUCIBLE_METRICS_LISTEN=federation.aggregator_metrics,
            CRUCIBLE_STATE_DIR=str(federation.state_dir),
            CRUCIBLE_MIN_FREE_BYTES=str(SIZE // 2),
        )
        federation.aggregator_process = federation._spawn(
            "aggregator", ["aggregator"], env
        )
        federation.wait_ready()
        yield federation
    finally:
        federation.stop()
        subprocess.run(["umount", "-l", federation.state_dir], check=False)


def writable(federation: Federation) -> float:
    url = f"http://{federation.aggregator_metrics}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("crucible_state_writable "):
                return float(line.split()[-1])
    raise AssertionError("crucible_state_writable not exported")


def test_full_state_directory_refuses_new_work_keeps_rounds_and_recovers(small_state):
    federation = small_state
    body = specs.parse(spec(NAMES, rounds=2))
    with federation.admin() as admin:
        run_id = admin.start_run("uid-full", body).run_id
    clients = {
        n: LightClient(federation.aggregator_address, federation.issue(n))
        for n in NAMES
    }
    for client in clients.values():
        client.join(run_id)
        client.report_statistics(run_id, FEATURES)
    tasks = {n: c.task(run_id, pb.TRAIN) for n, c in clients.items()}
    weights = clients["plant-a"].fetch(tasks["plant-a"])
    updates = {n: local_update(weights, n, 1) for n in NAMES}
    assert clients["plant-a"].send(tasks["plant-a"], updates["plant-a"]).accepted

    # The space goes below min_free_bytes.
    filler = federation.state_dir / "filler"
    filler.write_bytes(b"\0" * (SIZE // 2 + (4 << 20)))
    with pytest.raises(grpc.RpcError) as refused:
        clients["plant-b"].send(tasks["plant-b"], updates["plant-b"])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "StateUnwritable" in refused.value.details()
    with federation.admin() as admin, pytest.raises(TemporaryError) as new_run:
        admin.start_run("uid-while-full", body)
    assert "state directory" in str(new_run.value)
    with federation.admin() as admin:
        status = admin.get_run(run_id)
    assert status.phase == "Running"
    assert status.message.startswith("state directory unwritable")
    assert writable(federation) == 0
    assert "state_unwritable" in federation.log("aggregator")
    assert (federation.state_dir / "runs" / run_id / "global-0000.safetensors").exists()

    # Space returns: the refused update is sent again and the run goes on.
    filler.unlink()
    assert clients["plant-b"].send(tasks["plant-b"], updates["plant-b"]).accepted
    assert writable(federation) == 1
    for client in clients.values():
        client.close()
    finishing = [
        LightParticipant(
            federation.aggregator_address, federation.tls(n), n, run_id, FEATURES
        )
        for n in NAMES
    ]
    for participant in finishing:
        participant.start()
    with federation.admin() as admin:
        final = wait_for_phase(admin, run_id, ("Succeeded", "Failed"), timeout=60)
        assert admin.start_run("uid-after-full", body).phase in ("Pending", "Running")
    assert final.phase == "Succeeded", final.message
    assert [(r.round, r.participants) for r in final.rounds] == [(1, 2), (2, 2)]
    assert not final.message.startswith("state directory")
    assert dict(final.refused_updates) == {"StateUnwritable": 1}
