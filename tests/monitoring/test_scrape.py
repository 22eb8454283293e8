"""A real Prometheus scrapes a held demo; every dashboard query returns data.

The demo (``crucible demo --hold``) runs the real aggregator and participants and
writes ``endpoints.json``, each service's /metrics address by name. Prometheus is
started first and given those addresses the moment they appear, through a scrape
configuration generated from that file, so it sees the rounds as they happen.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.monitoring.dashboard import queries
from tests.monitoring.prometheus import PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
DEMO_SECONDS = 420
# A short demo: one fold, a few rounds; enough for every series to move.
DEMO_ARGUMENTS = ["--max-folds", "1", "--rounds", "3"]


def scrape_targets(endpoints: dict[str, str]) -> list[dict]:
    """file_sd groups for the demo's services, labelled like the chart's monitors."""
    groups = []
    for name, address in sorted(endpoints.items()):
        component = "aggregator" if name == "aggregator" else "participant"
        labels = {"service": name, "component": component}
        if component == "participant":
            labels["organization"] = name
        groups.append({"targets": [address], "labels": labels})
    return groups


@pytest.fixture
def held_demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    output = tmp_path / "demo"
    log = (tmp_path / "demo.log").open("wb")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIBLE_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crucible.cli",
            "demo",
            "--hold",
            "--output",
            str(output),
            *DEMO_ARGUMENTS,
        ],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        yield process, output
    finally:
        # SIGINT is the demo's Ctrl-C: it stops the services it started.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def wait_for(
    description: str,
    condition: Callable[[], object],
    *,
    seconds: float,
    process: subprocess.Popen | None = None,
) -> object:
    """The condition's first truthy value; fails if the demo exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"demo exited with {process.returncode} while waiting for {description}"
            )
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"expected {description} within {seconds:.0f} s")


def has_number(result: list[dict]) -> bool:
    """True when a range query's result holds at least one finite sample."""
    return any(
        math.isfinite(float(value))
        for series in result
        for _, value in series.get("values", [])
    )


@pytest.mark.slow
@pytest.mark.timeout(DEMO_SECONDS + 180)
def test_prometheus_scrapes_the_demo_and_every_dashboard_query_returns_data(
    prometheus: PrometheusServer,
    promtool: Path,
    held_demo: tuple[subprocess.Popen, Path],
) -> None:
    process, output = held_demo
    started = time.time()
    endpoints_file = output / "endpoints.json"

    wait_for(
        "endpoints.json", endpoints_file.is_file, seconds=DEMO_SECONDS, process=process
    )
    endpoints = json.loads(endpoints_file.read_text())
    prometheus.set_targets(scrape_targets(endpoints))
    # The participants start their /metrics once torch is loaded: seconds, or more
    # on a busy machine.
    try:
        wait_for(
            f"{len(endpoints)} targets up",
            lambda: (
                all(t["health"] == "up" for t in prometheus.targets())
                and len(prometheus.targets()) == len(endpoints)
            ),
            seconds=DEMO_SECONDS,
            process=process,
        )
    except AssertionError as error:
        down = [
            f"{t['labels'].get('service')}: {t['health']} {t['lastError']}"
            for t in prometheus.targets()
            if t["health"] != "up"
        ]
        raise AssertionError(f"{error}; not up: {down}") from error
    wait_for(
        "the demo's report (training finished)",
        (output / "report.json").is_file,
        seconds=DEMO_SECONDS,
        process=process,
    )
    wait_for(
        "completed rounds in Prometheus",
        lambda: prometheus.query("crucible_rounds_completed_total > 0"),
        seconds=30,
    )

    for name, address in endpoints.items():
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
            exposition = answer.read()
        lint = subprocess.run(
            [str(promtool), "check", "metrics"],
            input=exposition,
            capture_output=True,
            timeout=30,
            check=False,
        )
        findings = (lint.stdout + lint.stderr).decode()
        assert lint.returncode == 0, f"{name}: {findings}"
        assert findings.strip() == "", f"{name}: {findings}"

    empty = []
    for title, expression in queries():
        result = prometheus.query_range(expression, start=started, end=time.time())
        if not has_number(result):
            empty.append(f"{title}: {expression}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
