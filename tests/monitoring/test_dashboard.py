"""The dashboard shows what platform teams watch, with metrics the services export."""

from __future__ import annotations

import json

from tests.monitoring.dashboard import (
    DASHBOARD,
    exported_series_names,
    metric_names,
    panels,
    queries,
)

REQUIRED_PANELS = {
    "Round duration (p50, p95)",
    "Global loss per round",
    "Evaluation RMSE per round",
    "Participants connected and reporting",
    "Update bytes per second",
    "Refused updates by reason",
    "Local training time per participant (p50, p95)",
    "Rounds completed and failed",
}


def test_dashboard_has_every_panel_platform_teams_need() -> None:
    titles = {panel["title"] for panel in panels()}

    assert titles >= REQUIRED_PANELS


def test_every_panel_query_reads_metrics_the_services_export() -> None:
    exported = exported_series_names()

    for title, expression in queries():
        names = metric_names(expression)
        assert names, f"{title}: no crucible_ metric in {expression}"
        assert names <= exported, f"{title}: {sorted(names - exported)} not exported"


def test_round_duration_panel_shows_the_median_and_the_95th_percentile() -> None:
    (panel,) = [p for p in panels() if p["title"] == "Round duration (p50, p95)"]

    expressions = [target["expr"] for target in panel["targets"]]
    assert expressions[0].startswith("histogram_quantile(0.50,")
    assert expressions[1].startswith("histogram_quantile(0.95,")
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"


def test_dashboard_is_importable_with_a_stable_uid_and_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    assert dashboard["uid"] == "crucible-federation"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}"
