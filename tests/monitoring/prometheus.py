"""A real Prometheus on loopback for the monitoring tests, and where its tools are.

Prometheus and promtool come from Debian's ``prometheus`` package (``apt-get install
prometheus``); the variables PROMETHEUS and PROMTOOL name other binaries. The server
runs as a child process on a free 127.0.0.1 port with its own configuration and
storage in a temporary directory; the Debian service is never involved.

Targets come from a file (``file_sd``), so they can be written after the server
started, when the scraped services have announced their addresses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.federation import free_port

SCRAPE_SECONDS = 1


def tool(name: str) -> Path:
    """The binary ``name`` (prometheus or promtool): $NAME, PATH, or /usr/bin."""
    found = os.environ.get(name.upper()) or shutil.which(name)
    path = Path(found) if found else Path("/usr/bin") / name
    if not path.is_file():
        pytest.fail(
            f"monitoring tests: expected {name} from Debian's prometheus package, "
            f"found none on PATH or at {path}; install it with `apt-get install "
            f"prometheus` (the service need not run) or set {name.upper()}"
        )
    return path


@dataclass
class PrometheusServer:
    """A Prometheus scraping the targets in ``targets_file`` every second."""

    directory: Path
    startup_seconds: float = 60.0
    url: str = ""
    _process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def targets_file(self) -> Path:
        return self.directory / "targets.json"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.set_targets([])
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "evaluation_interval": f"{SCRAPE_SECONDS}s",
            },
            "scrape_configs": [
                {
                    "job_name": "crucible",
                    "file_sd_configs": [
                        {"files": [str(self.targets_file)], "refresh_interval": "1s"}
                    ],
                }
            ],
        }
        (self.directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self.directory / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                str(tool("prometheus")),
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()

    def set_targets(self, groups: list[dict]) -> None:
        """Replace the scraped targets: file_sd groups of targets and labels."""
        staging = self.targets_file.with_suffix(".tmp")
        staging.write_text(json.dumps(groups))
        staging.replace(self.targets_file)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self._process.returncode} while "
                    f"starting; see {self.directory / 'prometheus.log'}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"prometheus at {self.url}: not ready within {self.startup_seconds:.0f} s"
        )

    def api(self, path: str, **parameters: object) -> dict:
        """GET /api/v1/PATH; the answer's data, or an error naming the query."""
        query = urllib.parse.urlencode(parameters)
        with urllib.request.urlopen(
            f"{self.url}/api/v1/{path}?{query}", timeout=10
        ) as a:
            answer = json.load(a)
        if answer.get("status") != "success":
            raise AssertionError(f"prometheus {path} {parameters}: {answer}")
        return answer["data"]

    def query(self, expression: str) -> list[dict]:
        return self.api("query", query=expression)["result"]

    def query_range(
        self, expression: str, *, start: float, end: float, step: float = 1.0
    ) -> list[dict]:
        return self.api(
            "query_range", query=expression, start=start, end=end, step=step
        )["result"]

    def targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
