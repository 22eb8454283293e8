"""An organization's table, read against a run's task, and the federation's scaling.

A participant reads its CSV or Parquet table with pandas, checks it against the task
(feature columns, target, fill rule, transforms) and turns it into numbers. Every
refusal names the file, the column and the row. Rows never leave this module: what goes
to the aggregator are per-column counts, sums and sums of squares, from which
:func:`combine` derives the same scaling for every organization.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crucible.errors import InputError
from crucible.spec import Task

VARIANCE_FLOOR = 1e-12


@dataclass
class Prepared:
    """A table's features (NaN where the fill rule says 'mean') and transformed target."""

    columns: list[str]
    features: np.ndarray
    target: np.ndarray
    source: str

    @property
    def rows(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class Scaling:
    """Global per-column mean and scale; the target's are last."""

    columns: list[str]
    mean: list[float]
    scale: list[float]
    dropped: list[str]

    @property
    def features(self) -> list[str]:
        return self.columns[:-1]


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet table; refuses unknown formats, unreadable and empty files."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            frame = pd.read_csv(path)
        else:
            raise InputError(
                f"{path}: expected a .csv or .parquet file, found suffix {path.suffix!r}"
            )
    except InputError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: cannot be read as a table: {error}") from error
    if frame.empty:
        raise InputError(f"{path}: expected at least one row, found an empty table")
    return frame


def _numeric(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"{column} in {source} row {row + 1}: expected a number, found "
            f"{raw.iloc[row]!r}; the table is refused"
        )
    return values.astype(float)


def _transform(
    values: pd.Series, transform: str, column: str, source: str
) -> pd.Series:
    if transform == "log10":
        bad = values <= 0
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"{column} in {source} row {row + 1}: log10 needs a positive number, "
                f"found {float(values.iloc[row])!r}; the table is refused"
            )
        return np.log10(values)
    if transform == "reciprocal_kelvin":
        return 1000.0 / (values + 273.15)
    return values


def prepare(frame: pd.DataFrame, task: Task, *, source: str) -> Prepared:
    """Check ``frame`` against ``task`` and return its numbers.

    Blank feature cells follow the fill rule: 'zero' fills 0 (an alloying element not
    reported), 'mean' leaves NaN for the global mean, 'refuse' refuses the table.
    """
    needed = [*task.features, task.target]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(
            f"{source}: expected column(s) {missing} named by the task, found columns "
            f"{list(frame.columns)[:12]}{'...' if len(frame.columns) > 12 else ''}; "
            "the table is refused",
            reason="MissingColumn",
        )
    transforms = {t.column: t.transform for t in task.transforms}

    target = _numeric(frame, task.target, source)
    if target.isna().any():
        row = int(np.flatnonzero(target.isna().to_numpy())[0])
        raise InputError(
            f"{task.target} in {source} row {row + 1}: expected a number, found a blank "
            "target; the table is refused"
        )
    if task.target_transform == "log10":
        target = _transform(target, "log10", task.target, source)

    columns: list[np.ndarray] = []
    for column in task.features:
        values = _numeric(frame, column, source)
        rule = task.fill.columns.get(column, task.fill.default)
        blank = values.isna()
        if blank.any() and rule == "refuse":
            row = int(np.flatnonzero(blank.to_numpy())[0])
            raise InputError(
                f"{column} in {source} row {row + 1}: expected a number (the fill rule "
                "is 'refuse'), found a blank; the table is refused"
            )
        if rule == "zero":
            values = values.fillna(0.0)
        values = _transform(values, transforms.get(column, ""), column, source)
        columns.append(values.to_numpy(dtype=float))
    return Prepared(
        columns=list(task.features),
        features=np.column_stack(columns),
        target=target.to_numpy(dtype=float),
        source=source,
    )


@dataclass(frozen=True)
class ColumnSums:
    count: int
    sum: float
    sum_squares: float


def statistics(prepared: Prepared) -> dict[str, ColumnSums]:
    """Per-column counts of non-blank values, sums and sums of squares; target last."""
    sums: dict[str, ColumnSums] = {}
    matrix = np.column_stack([prepared.features, prepared.target])
    for index, column in enumerate([*prepared.columns, "__target__"]):
        values = matrix[:, index]
        present = values[~np.isnan(values)]
        sums[column] = ColumnSums(
            int(present.size), float(present.sum()), float((present**2).sum())
        )
    return sums


def combine(reports: list[dict[str, ColumnSums]], columns: list[str]) -> Scaling:
    """The federation's scaling from every participant's sums; drops flat features."""
    means: list[float] = []
    scales: list[float] = []
    kept: list[str] = []
    dropped: list[str] = []
    for column in [*columns, "__target__"]:
        count = sum(r[column].count for r in reports)
        total = sum(r[column].sum for r in reports)
        squares = sum(r[column].sum_squares for r in reports)
        mean = total / count if count else 0.0
        variance = max(squares / count - mean**2, 0.0) if count else 0.0
        if column != "__target__" and variance <= VARIANCE_FLOOR * max(1.0, mean**2):
            dropped.append(column)
            continue
        kept.append(column)
        means.append(mean)
        scales.append(float(np.sqrt(variance)) or 1.0)
    return Scaling(columns=kept, mean=means, scale=scales, dropped=dropped)


def design(prepared: Prepared, scaling: Scaling) -> tuple[np.ndarray, np.ndarray]:
    """Scaled float32 inputs and target; blanks left for 'mean' become the global mean."""
    index = [prepared.columns.index(c) for c in scaling.features]
    raw = prepared.features[:, index]
    mean = np.asarray(scaling.mean[:-1])
    scale = np.asarray(scaling.scale[:-1])
    raw = np.where(np.isnan(raw), mean, raw)
    inputs = (raw - mean) / scale
    target = (prepared.target - scaling.mean[-1]) / scaling.scale[-1]
    return inputs.astype(np.float32), target.astype(np.float32)


def unscale_target(values: np.ndarray, scaling: Scaling) -> np.ndarray:
    return values * scaling.scale[-1] + scaling.mean[-1]
