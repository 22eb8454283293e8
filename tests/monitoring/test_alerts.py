"""The alert rules: valid for promtool, firing on trouble, reading real metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.monitoring.dashboard import ALERTS, exported_series_names, metric_names

UNIT_TESTS = Path(__file__).parent / "alerts_test.yaml"
REQUIRED_ALERTS = {
    "CrucibleRoundDeadlineExceeded",
    "CrucibleParticipantLost",
    "CrucibleUpdatesRefused",
    "CrucibleRunFailed",
}


def promtool_run(promtool: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(promtool), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_check_rules_passes(promtool: Path) -> None:
    result = promtool_run(promtool, "check", "rules", str(ALERTS))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_each_alert_fires_on_trouble_and_stays_quiet_otherwise(promtool: Path) -> None:
    result = promtool_run(promtool, "test", "rules", str(UNIT_TESTS))

    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_deadlines_lost_participants_refused_updates_failed_runs() -> None:
    names = {rule["alert"] for rule in rules()}

    assert names >= REQUIRED_ALERTS


def test_every_alert_reads_metrics_the_aggregator_exports() -> None:
    exported = exported_series_names()

    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']}: {sorted(names - exported)}"


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
