"""Real Helm for the chart tests, and rendering the chart into Kubernetes objects.

Helm is the binary that scripts/test-tools.sh builds from its Go module into
``~/.cache/crucible/tools/helm-VERSION/helm``; the environment variable ``HELM`` names
another one.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "crucible"
EXAMPLES = ROOT / "examples"
TOOLS_SCRIPT = ROOT / "scripts" / "test-tools.sh"


def helm_path() -> Path:
    """$HELM, or where scripts/test-tools.sh puts helm (asked with --check)."""
    if os.environ.get("HELM"):
        return Path(os.environ["HELM"])
    # --check builds nothing; it prints every tool's path, and fails when any is
    # missing, which matters here only for helm.
    report = subprocess.run(
        ["bash", str(TOOLS_SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    paths = dict(
        line.split("=", 1) for line in report.stdout.splitlines() if "=" in line
    )
    return Path(paths.get("HELM", "helm-not-reported-by-scripts/test-tools.sh"))


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.binary), *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="session")
def helm() -> Helm:
    binary = helm_path()
    if not binary.is_file():
        pytest.fail(
            f"chart tests: expected helm at {binary}, found nothing; run `make tools` "
            "(scripts/test-tools.sh builds it from its Go module) or set HELM"
        )
    return Helm(binary)


def set_arguments(values: dict[str, str] | None) -> list[str]:
    return [f"--set={key}={value}" for key, value in (values or {}).items()]


Render = Callable[..., list[dict]]


@pytest.fixture(scope="session")
def render(helm: Helm) -> Render:
    """Render the chart with example files and --set values; the objects, parsed."""

    def rendering(
        *examples: str,
        values: dict[str, str] | None = None,
        namespace: str = "crucible",
    ) -> list[dict]:
        files = [f"--values={EXAMPLES / f'{name}-values.yaml'}" for name in examples]
        result = helm.run(
            "template",
            "crucible",
            str(CHART),
            f"--namespace={namespace}",
            *files,
            *set_arguments(values),
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return rendering


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    """The rendered objects of one kind, optionally with one name."""
    return [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def only(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
