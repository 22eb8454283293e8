"""A SIGKILLed aggregator resumes where it stopped and ends with the same model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from crucible import spec as specs
from crucible.tensors import read_file
from tests.federation import Federation, organization_tables, spec, wait_for_phase

pytestmark = pytest.mark.timeout(300)
NAMES = ["mill-a", "mill-b"]


def start(federation: Federation) -> None:
    tables = organization_tables(federation.root, NAMES)
    federation.start_aggregator()
    for name in NAMES:
        federation.start_participant(name, {"default": {"train": str(tables[name])}})


def wait_for_completed_round(federation: Federation, run_id: str, n: int) -> None:
    deadline = time.monotonic() + 120
    with federation.admin() as admin:
        while time.monotonic() < deadline:
            if admin.get_run(run_id).completed_rounds >= n:
                return
            time.sleep(0.05)
    raise AssertionError(f"round {n} never completed")


def test_aggregator_killed_after_round_2_resumes_at_round_3_with_same_model(
    tmp_path: Path,
):
    body = specs.parse(spec(NAMES, rounds=5))

    reference = Federation(tmp_path / "reference")
    try:
        start(reference)
        with reference.admin() as admin:
            run_id = admin.start_run("uid-resume", body).run_id
            expected = wait_for_phase(admin, run_id, ("Succeeded",))
    finally:
        reference.stop()

    killed = Federation(tmp_path / "killed")
    try:
        start(killed)
        with killed.admin() as admin:
            run_id = admin.start_run("uid-resume", body).run_id
        wait_for_completed_round(killed, run_id, 2)
        killed.kill_aggregator()
        killed.start_aggregator()
        with killed.admin() as admin:
            resumed = admin.get_run(run_id)
            assert resumed.completed_rounds >= 2
            assert resumed.phase == "Running"
            final = wait_for_phase(admin, run_id, ("Succeeded", "Failed"))
    finally:
        killed.stop()

    assert final.phase == "Succeeded", final.message
    assert [r.round for r in final.rounds] == [1, 2, 3, 4, 5]
    assert "run_resumed" in killed.log("aggregator")
    a, b = read_file(Path(expected.model_path)), read_file(Path(final.model_path))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-7)
    assert final.model_digest == expected.model_digest


def test_restarted_aggregator_deletes_half_written_files_and_keeps_whole_ones(
    tmp_path: Path,
):
    federation = Federation(tmp_path)
    try:
        federation.start_aggregator()
        federation.kill_aggregator()
        updates = federation.state_dir / "runs" / "run-x" / "updates" / "0003"
        updates.mkdir(parents=True)
        half = updates / ".mill-a.safetensors.tmp-41-42"
        half.write_bytes(b"\0" * 1024)
        whole = updates / "mill-b.safetensors"
        whole.write_bytes(b"kept")

        federation.start_aggregator()
        assert not half.exists()
        assert whole.read_bytes() == b"kept"
        assert "temporary_file_removed" in federation.log("aggregator")
    finally:
        federation.stop()
