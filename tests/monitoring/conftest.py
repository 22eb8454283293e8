"""Fixtures of the monitoring tests: promtool, and a Prometheus on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.monitoring.prometheus import PrometheusServer, tool


@pytest.fixture(scope="session")
def promtool() -> Path:
    return tool("promtool")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path / "prometheus")
    server.start()
    try:
        yield server
    finally:
        server.stop()
