"""A whole run over the real services: aggregator and participants as processes."""

from __future__ import annotations

import pytest

from crucible import spec as specs
from crucible.tensors import file_digest
from tests.federation import Federation, organization_tables, spec, wait_for_phase

pytestmark = pytest.mark.timeout(180)


def test_run_over_mutual_tls_succeeds_with_metrics_and_digest(federation: Federation):
    names = ["mill-a", "mill-b"]
    tables = organization_tables(federation.root, names)
    federation.start_aggregator()
    for name in names:
        federation.start_participant(name, {"default": {"train": str(tables[name])}})

    with federation.admin() as admin:
        status = admin.start_run("uid-1", specs.parse(spec(names)))
        final = wait_for_phase(admin, status.run_id, ("Succeeded", "Failed"))

    assert final.phase == "Succeeded", final.message
    assert final.completed_rounds == 3
    assert [r.round for r in final.rounds] == [1, 2, 3]
    assert all(r.participants == 2 and r.eval_rmse > 0 for r in final.rounds)
    assert final.model_digest == file_digest(final.model_path)
    assert {p.name: p.state for p in final.participants} == {
        "mill-a": "Reported",
        "mill-b": "Reported",
    }
