"""Specs and tables: every refusal names the field or file, expectation and finding."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from crucible import data as tables
from crucible import spec as specs
from crucible.errors import InputError
from crucible.settings import AggregatorSettings
from tests.federation import CREEP, spec


def test_unknown_strategy_is_refused_naming_the_field_and_choices():
    with pytest.raises(InputError) as raised:
        specs.parse(spec(["a"], strategy={"name": "fedsgd"}))
    assert "strategy.name" in str(raised.value)
    assert "fedavg" in str(raised.value) and "'fedsgd'" in str(raised.value)


def test_negative_rounds_are_refused():
    with pytest.raises(InputError, match="rounds"):
        specs.parse(spec(["a"], rounds=-1))


def test_spec_survives_the_wire_unchanged():
    parsed = specs.parse(
        spec(["a", "b"], strategy={"name": "fedprox", "parameters": {"mu": 0.1}})
    )
    assert specs.from_proto(specs.to_proto(parsed)) == parsed


def test_blank_composition_is_zero_and_blank_heat_treatment_takes_the_global_mean():
    task = specs.parse(spec(["a"])).task
    frame = pd.read_csv(CREEP)
    prepared = tables.prepare(frame, task, source="creep.csv")
    column = task.features.index("normalize_C")
    assert prepared.features[:, column].size == len(frame)
    assert (
        pd.isna(prepared.features[:, column]).sum() == frame["normalize_C"].isna().sum()
    )
    assert not pd.isna(prepared.features[:, task.features.index("Nb")]).any()

    scaling = tables.combine([tables.statistics(prepared)], task.features)
    inputs, _ = tables.design(prepared, scaling)
    assert not pd.isna(inputs).any()


def test_feature_without_variance_across_the_federation_is_dropped():
    task = specs.parse(spec(["a"])).task
    frame = pd.read_csv(CREEP).sample(300, random_state=0).assign(V=0.25)
    scaling = tables.combine(
        [tables.statistics(tables.prepare(frame, task, source="t.csv"))], task.features
    )
    assert scaling.dropped == ["V"]
    assert "V" not in scaling.features


def test_empty_table_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("C,Cr\n")
    with pytest.raises(
        InputError, match=re.escape(f"{path}: expected at least one row")
    ):
        tables.read_table(path)


def test_unknown_table_format_is_refused(tmp_path):
    path = tmp_path / "rows.xlsx"
    path.write_text("x")
    with pytest.raises(InputError, match=r"expected a \.csv or \.parquet file"):
        tables.read_table(path)


def test_parquet_tables_read_like_csv(tmp_path):
    path = tmp_path / "rows.parquet"
    pd.read_csv(CREEP).head(30).to_parquet(path)
    assert len(tables.read_table(path)) == 30


def test_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("CRUCIBLE_TLS__CERTIFICATE", "a")
    monkeypatch.setenv("CRUCIBLE_TLS__KEY", "b")
    monkeypatch.setenv("CRUCIBLE_TLS__CA", "c")
    monkeypatch.setenv("CRUCIBLE_MAX_UPDATE_BYTES", "lots")
    with pytest.raises(InputError, match="CRUCIBLE_MAX_UPDATE_BYTES"):
        AggregatorSettings.load()
