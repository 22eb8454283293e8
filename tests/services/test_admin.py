"""The administration API: idempotent start, get, watch and cancel."""

from __future__ import annotations

import pytest

from crucible import spec as specs
from crucible.errors import InputError
from tests.federation import Federation, spec, wait_for_phase

pytestmark = pytest.mark.timeout(90)


def test_starting_twice_with_one_key_gives_one_run(federation: Federation):
    federation.start_aggregator()
    with federation.admin() as admin:
        first = admin.start_run("uid-same", specs.parse(spec(["org-a"])))
        second = admin.start_run("uid-same", specs.parse(spec(["org-a"])))
        assert first.run_id == second.run_id
        assert len(admin.list_runs()) == 1


def test_watch_follows_a_run_and_cancel_ends_it(federation: Federation):
    federation.start_aggregator()
    with federation.admin() as admin:
        run_id = admin.start_run("uid-cancel", specs.parse(spec(["org-a"]))).run_id
        stream = admin.watch_run(run_id, timeout=30)
        assert next(stream).phase in ("Pending", "Running")
        cancelled = admin.cancel_run(run_id)
        assert cancelled.phase == "Cancelled"
        final = wait_for_phase(admin, run_id, ("Cancelled",), timeout=30)
        assert final.reason == "Cancelled"


def test_spec_with_quorum_above_participants_is_refused_with_the_field(
    federation: Federation,
):
    federation.start_aggregator()
    body = spec(["org-a"])
    message = specs.to_proto(specs.parse(body))
    message.min_participants = 3
    with federation.admin() as admin, pytest.raises(InputError) as raised:
        admin.start_run("uid-bad", message)
    assert "minParticipants" in str(raised.value)
    assert "INVALID_ARGUMENT" in str(raised.value)


def test_unknown_run_is_not_found(federation: Federation):
    federation.start_aggregator()
    with federation.admin() as admin, pytest.raises(InputError) as raised:
        admin.get_run("run-doesnotexist")
    assert "NOT_FOUND" in str(raised.value)
