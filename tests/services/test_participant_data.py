"""A participant refuses a run its table cannot serve, and the run shows why."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from crucible import spec as specs
from tests.federation import CREEP, Federation, spec

pytestmark = pytest.mark.timeout(120)


def participant_message(
    federation: Federation, run_id: str, name: str
) -> tuple[str, str]:
    deadline = time.monotonic() + 90
    with federation.admin() as admin:
        while time.monotonic() < deadline:
            status = admin.get_run(run_id)
            state = {p.name: (p.state, p.message) for p in status.participants}[name]
            if state[0] == "Refused":
                return state
            time.sleep(0.3)
    raise AssertionError(f"{name} never refused: {federation.log(name)[-2000:]}")


def test_csv_missing_a_feature_column_is_refused_naming_column_and_file(
    federation: Federation,
):
    table = federation.root / "plant_b.csv"
    pd.read_csv(CREEP).drop(columns=["stress_MPa"]).head(200).to_csv(table, index=False)
    federation.start_aggregator()
    federation.start_participant("plant-b", {"default": {"train": str(table)}})
    with federation.admin() as admin:
        run_id = admin.start_run("uid-missing", specs.parse(spec(["plant-b"]))).run_id
    _state, message = participant_message(federation, run_id, "plant-b")
    assert "stress_MPa" in message
    assert str(table) in message


def test_non_numeric_cell_is_refused_naming_column_and_row(federation: Federation):
    table = federation.root / "plant_c.csv"
    frame = pd.read_csv(CREEP).head(200)
    frame["stress_MPa"] = frame["stress_MPa"].astype(object)
    frame.loc[16, "stress_MPa"] = "ND"
    frame.to_csv(table, index=False)
    federation.start_aggregator()
    federation.start_participant("plant-c", {"default": {"train": str(table)}})
    with federation.admin() as admin:
        run_id = admin.start_run("uid-nd", specs.parse(spec(["plant-c"]))).run_id
    _, message = participant_message(federation, run_id, "plant-c")
    assert "stress_MPa" in message and "row 17" in message and "'ND'" in message


def test_table_below_min_rows_is_refused_by_policy(federation: Federation):
    table = federation.root / "tiny.csv"
    pd.read_csv(CREEP).head(5).to_csv(table, index=False)
    federation.start_aggregator()
    federation.start_participant("tiny", {"default": {"train": str(table)}})
    with federation.admin() as admin:
        run_id = admin.start_run("uid-tiny", specs.parse(spec(["tiny"]))).run_id
    _, message = participant_message(federation, run_id, "tiny")
    assert "minRows 20" in message
