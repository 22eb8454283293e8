"""The audit trail: who started, changed and cancelled runs, who joined, who was refused."""

from __future__ import annotations

import json
import sqlite3

import grpc
import numpy as np
import pytest

from crucible import spec as specs
from crucible.protocol import pb
from services.aggregator.store import AUDIT_FILE, Store
from tests.abuse.conftest import audit_records, open_run
from tests.federation import Federation, spec
from tests.lightclient import LightClient

pytestmark = pytest.mark.timeout(90)


def actions_of(federation: Federation, run_id: str) -> list[tuple[str, str]]:
    return [
        (r["actor"], r["action"])
        for r in audit_records(federation)
        if r["run_id"] == run_id
    ]


def test_audit_trail_records_who_started_changed_cancelled_joined_and_was_refused(
    aggregator: Federation,
):
    names = ["org-a", "org-b", "org-c"]
    with aggregator.admin() as admin:
        run_id = admin.start_run(
            "audited", specs.parse(spec(names, minParticipants=1))
        ).run_id
    clients = {
        n: LightClient(aggregator.aggregator_address, aggregator.issue(n))
        for n in [*names, "intruder"]
    }
    clients["org-a"].join(run_id)
    clients["org-b"].join(run_id, accept=False, reason="policy: runs of tests/* only")
    with pytest.raises(grpc.RpcError):
        clients["intruder"].join(run_id)
    with aggregator.admin() as admin:
        admin.update_participants(run_id, ["org-a", "org-b"])
        admin.cancel_run(run_id)
    for client in clients.values():
        client.close()

    assert actions_of(aggregator, run_id) == [
        ("coordinator", "run_started"),
        ("org-a", "participant_joined"),
        ("org-b", "participant_refused_run"),
        ("coordinator", "participants_removed"),
        ("coordinator", "run_cancelled"),
    ]
    refused = [
        r
        for r in audit_records(aggregator)
        if r["actor"] == "intruder" and r["action"] == "call_refused"
    ]
    assert refused[0]["detail"]["method"] == "Join"
    assert "does not name organization 'intruder'" in refused[0]["detail"]["why"]
    started = next(r for r in audit_records(aggregator) if r["action"] == "run_started")
    assert started["detail"]["participants"] == names
    assert isinstance(started["time"], float)


def test_refused_update_is_audited_with_its_reason(aggregator: Federation):
    run = open_run(aggregator, "audited-update", ["org-a", "org-b"], rounds=1)
    client = run.clients["org-a"]
    task = client.task(run.run_id, pb.TRAIN)
    weights = {k: np.full_like(v, np.nan) for k, v in client.fetch(task).items()}
    assert client.send(task, weights).reason == "NotFinite"
    record = next(
        r
        for r in audit_records(aggregator)
        if r["run_id"] == run.run_id and r["action"] == "update_refused"
    )
    assert record["actor"] == "org-a"
    assert record["detail"]["reason"] == "NotFinite"
    run.close()


def test_audit_file_and_table_hold_the_same_records(aggregator: Federation):
    database = sqlite3.connect(aggregator.state_dir / "crucible.db")
    rows = database.execute("SELECT actor, action, run_id FROM audit").fetchall()
    database.close()
    in_file = [
        (r["actor"], r["action"], r["run_id"]) for r in audit_records(aggregator)
    ]
    assert rows == in_file


def test_audit_records_cannot_be_changed_or_deleted(tmp_path):
    store = Store(tmp_path)
    store.audit(actor="coordinator", action="run_started", run_id="run-1", key="k")
    for statement in ("UPDATE audit SET actor='someone'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.execute(statement)
    assert [r["actor"] for r in store.audit_records("run-1")] == ["coordinator"]
    line = json.loads((tmp_path / AUDIT_FILE).read_text())
    assert (line["actor"], line["detail"]) == ("coordinator", {"key": "k"})
