"""Fifty participants, twenty rounds, a ten-million-parameter model, bounded memory.

The aggregator's peak resident memory (VmHWM) with 50 participants must exceed its
peak with 5 by less than one model: updates are received a few at a time and streamed
to disk chunk by chunk, aggregated from disk one by one, the current global model is
served from one copy, tensors travel in small chunks (gRPC keeps memory per peer that
grows with message size), and glibc's malloc arenas are capped so that freed chunks do
not pile up per thread.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.load.swarm import HIDDEN, parameters, run_swarm

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]
# The container image's malloc setting (Dockerfile), which the aggregator runs with.
IMAGE = {"MALLOC_ARENA_MAX": "2"}


def test_fifty_participants_finish_twenty_rounds_within_one_model_of_five(
    tmp_path: Path,
):
    model_bytes = parameters(HIDDEN) * 4
    assert parameters(HIDDEN) >= 10_000_000

    started = time.monotonic()
    few = run_swarm(tmp_path / "five", participants=5, rounds=20, environment=IMAGE)
    many = run_swarm(tmp_path / "fifty", participants=50, rounds=20, environment=IMAGE)
    print(
        f"5 participants: peak {few.peak_rss_bytes / 2**20:.0f} MiB; 50 participants: "
        f"peak {many.peak_rss_bytes / 2**20:.0f} MiB, "
        f"{many.seconds:.0f} s for 20 rounds; total {time.monotonic() - started:.0f} s"
    )

    assert (few.phase, few.completed_rounds) == ("Succeeded", 20)
    assert (many.phase, many.completed_rounds) == ("Succeeded", 20)
    growth = many.peak_rss_bytes - few.peak_rss_bytes
    assert growth < model_bytes, (
        f"peak memory with 50 participants exceeds the peak with 5 by "
        f"{growth / 2**20:.0f} MiB, more than one model ({model_bytes / 2**20:.0f} MiB)"
    )
