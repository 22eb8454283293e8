"""Folds by heat: no heat on both sides, every organization in every fold, seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crucible.demo import folds
from crucible.errors import InputError

pytestmark = pytest.mark.timeout(30)


def table() -> tuple[pd.Series, pd.Series]:
    heats, owners = [], []
    for organization, count in (("mill", 12), ("forge", 7), ("lab", 5)):
        for heat in range(count):
            rows = 1 + (heat * 7) % 5
            heats += [f"{organization}-{heat}"] * rows
            owners += [organization] * rows
    return pd.Series(heats), pd.Series(owners)


def test_every_heat_falls_in_exactly_one_fold():
    heats, owners = table()
    fold_of_row = folds.assign(heats, owners, folds=5, seed=1)

    per_heat = pd.Series(fold_of_row).groupby(heats.to_numpy()).nunique()
    assert (per_heat == 1).all()
    assert set(fold_of_row) == {1, 2, 3, 4, 5}


def test_every_organization_with_enough_heats_has_rows_in_every_fold():
    heats, owners = table()
    fold_of_row = folds.assign(heats, owners, folds=5, seed=1)

    for organization in ("mill", "forge", "lab"):
        mine = fold_of_row[(owners == organization).to_numpy()]
        assert set(mine) == {1, 2, 3, 4, 5}


def test_the_same_seed_gives_the_same_folds_and_another_may_differ():
    heats, owners = table()
    first = folds.assign(heats, owners, folds=5, seed=3)
    again = folds.assign(heats, owners, folds=5, seed=3)

    assert np.array_equal(first, again)


def test_a_heat_held_by_two_organizations_is_refused():
    heats = pd.Series(["h1", "h1", "h2"])
    owners = pd.Series(["mill", "forge", "mill"])

    with pytest.raises(InputError, match="h1"):
        folds.assign(heats, owners, folds=2, seed=0)


def test_validation_heats_are_whole_heats_of_about_the_asked_share():
    heats, owners = table()
    held = folds.validation_heats(heats, owners, share=0.2, seed=5)

    per_heat = pd.Series(held).groupby(heats.to_numpy()).nunique()
    assert (per_heat == 1).all()
    assert 0.1 < held.mean() < 0.35
