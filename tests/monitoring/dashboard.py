"""The Grafana dashboard's panel queries, and the metric names the services export."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm/crucible/files/grafana/crucible-dashboard.json"
ALERTS = ROOT / "helm/crucible/files/prometheus/crucible-alerts.rules.yaml"

# What Grafana puts in place of the dashboard's variables when everything is selected,
# and the rate window it would pick for a one-second scrape interval.
VARIABLES = {"$namespace": ".*", "$run": ".*", "$__rate_interval": "15s"}
SERVICE_METRICS = (
    "services.aggregator.metrics",
    "services.participant.metrics",
    "operators.metrics",
)
METRIC = re.compile(r"\bcrucible_[a-z_]+\b")


def panels() -> list[dict]:
    """Every panel with queries, rows' children included."""
    found = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        found += [panel, *panel.get("panels", [])]
    return [panel for panel in found if panel.get("targets")]


def queries() -> list[tuple[str, str]]:
    """(panel title and refId, PromQL with the variables filled in) for every query."""
    found = []
    for panel in panels():
        for target in panel["targets"]:
            expression = target["expr"]
            for variable, value in VARIABLES.items():
                expression = expression.replace(variable, value)
            found.append((f"{panel['title']} [{target['refId']}]", expression))
    return found


def exported_series_names() -> set[str]:
    """Names of the series the aggregator, participant and operator export."""
    for module in SERVICE_METRICS:
        importlib.import_module(module)  # registers the module's metrics

    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "gauge": [""],
    }
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("crucible_")
        for suffix in suffixes.get(family.type, [""])
    }


def metric_names(expression: str) -> set[str]:
    return set(METRIC.findall(expression))
