from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.federation import Federation


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    running = Federation(tmp_path)
    try:
        yield running
    finally:
        running.stop()
