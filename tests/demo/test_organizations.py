"""The shipped consortium: every test has one owner; features known before the test."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crucible.demo import DATA, organizations
from crucible.errors import InputError

pytestmark = pytest.mark.timeout(30)

AFTER_THE_TEST = {
    "elongation_pct",
    "reduction_area_pct",
    "min_creep_rate_pct_per_h",
    "rupture_time_h",
    "log10_rupture_time_h",
}


def test_the_shipped_split_gives_every_test_exactly_one_of_at_least_four_owners():
    consortium = organizations.load(DATA / "organizations.yaml")
    frame = pd.read_csv(DATA / "netl_9cr_creep_rupture.csv")

    owners = organizations.assign(frame, consortium, source="creep").organization

    assert len(consortium.names) >= 4
    assert owners.notna().all()
    assert set(owners) == set(consortium.names)
    heats = frame.groupby("alloy_id")["grade"].nunique()
    assert (heats == 1).all(), "a heat would be split between owners"


def test_features_exclude_results_of_the_test_and_the_iron_balance():
    consortium = organizations.load(DATA / "organizations.yaml")
    features = set(consortium.task.features)

    assert not features & AFTER_THE_TEST
    assert "Fe" not in features
    assert {"test_temp_C", "stress_MPa", "Cr", "normalize_C"} <= features


def test_a_grade_that_no_organization_holds_is_refused_by_name(tmp_path: Path):
    consortium = organizations.load(DATA / "organizations.yaml")
    frame = pd.DataFrame({"grade": ["Gr.91", "Unobtainium 9"]})

    with pytest.raises(InputError, match="Unobtainium 9"):
        organizations.assign(frame, consortium, source="new.csv")


def test_a_grade_held_by_two_organizations_is_refused(tmp_path: Path):
    text = (DATA / "organizations.yaml").read_text()
    path = tmp_path / "organizations.yaml"
    path.write_text(
        text.replace(
            "grades: [STBA 26, KA-STBA 27]", "grades: [STBA 26, KA-STBA 27, Gr.91]"
        )
    )

    with pytest.raises(InputError, match=r"Gr\.91"):
        organizations.load(path)
