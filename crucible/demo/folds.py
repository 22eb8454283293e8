"""Cross-validation folds grouped by heat, the same for every model of the comparison.

Creep tests of one heat (``alloy_id``) share composition and processing, so a heat seen
in training makes its other tests easy to predict. Every heat therefore falls in exactly
one fold. Within each organization the heats are dealt to the folds largest first, each
to the fold holding the fewest of that organization's rows so far, so that every
organization has training and held-out rows in every fold and the folds are of similar
size. The order is fixed by a seed: the same seed, the same folds.

Not done here: nested or repeated cross-validation. Tuning splits its validation heats
out of the training folds with :func:`validation_heats`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crucible.errors import InputError

HEAT_COLUMN = "alloy_id"


def assign(
    heats: pd.Series, organizations: pd.Series, *, folds: int, seed: int
) -> np.ndarray:
    """Fold numbers 1..``folds`` for each row; every heat in one fold only."""
    if len(heats) != len(organizations):
        raise InputError(
            f"folds: expected one organization per row, found {len(organizations)} for "
            f"{len(heats)} rows"
        )
    rows = pd.DataFrame(
        {"heat": heats.to_numpy(), "organization": organizations.to_numpy()}
    )
    owners = rows.groupby("heat")["organization"].nunique()
    shared = sorted(owners[owners > 1].index.astype(str))
    if shared:
        raise InputError(
            f"folds: heat(s) {shared[:5]} belong to more than one organization; a heat "
            "must stay with one owner"
        )

    random = np.random.default_rng(seed)
    fold_of_heat: dict[object, int] = {}
    for _, members in rows.groupby("organization", sort=True):
        sizes = members.groupby("heat").size()
        # A seeded shuffle first, then a stable sort by size: ties break by seed.
        order = sizes.index.to_numpy()[random.permutation(len(sizes))]
        order = sorted(order, key=lambda heat: -int(sizes[heat]))
        load = np.zeros(folds, dtype=int)
        for heat in order:
            fold = int(np.argmin(load))
            fold_of_heat[heat] = fold + 1
            load[fold] += int(sizes[heat])
    return rows["heat"].map(fold_of_heat).to_numpy(dtype=int)


def validation_heats(
    heats: pd.Series, organizations: pd.Series, *, share: float, seed: int
) -> np.ndarray:
    """A boolean mask of rows whose heat is held out for validation, per organization.

    About ``share`` of each organization's rows, whole heats only; used on the training
    folds alone, so that tuning never sees a test heat.
    """
    folds = max(2, round(1 / share))
    return assign(heats, organizations, folds=folds, seed=seed) == 1
