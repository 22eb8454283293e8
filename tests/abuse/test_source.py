"""No code path deserializes received bytes with pickle or anything built on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)
REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["crucible", "services", "operators"]
# Loaders that can run code from the bytes they read.
UNSAFE = re.compile(
    r"\bimport\s+(pickle|cPickle|dill|shelve|marshal|joblib|cloudpickle)\b"
    r"|\bfrom\s+(pickle|dill|shelve|marshal|joblib|cloudpickle)\b"
    r"|\btorch\.load\s*\("
    r"|\bpickle\.loads?\s*\("
    r"|allow_pickle\s*=\s*True"
    r"|\bnp\.load\s*\("
    r"|\bnumpy\.load\s*\("
    r"|\byaml\.load\s*\("
    r"|\byaml\.unsafe_load\b"
    r"|\bUnpickler\b"
)


def shipped_sources() -> list[Path]:
    return sorted(p for top in SHIPPED for p in (REPO / top).rglob("*.py"))


def test_no_shipped_module_uses_a_code_running_deserializer():
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in shipped_sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if UNSAFE.search(line)
    ]
    assert found == []


def test_the_source_scan_would_see_a_pickle_load():
    assert UNSAFE.search("weights = pickle.loads(data)")
    assert UNSAFE.search("state = torch.load(path)")
    assert UNSAFE.search("np.load(handle, allow_pickle=True)")
    assert len(shipped_sources()) > 20
