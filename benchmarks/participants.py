"""Round time and bytes moved at 5, 20 and 50 participants, side by side.

A benchmark, not a test: it asserts nothing. Each size runs the real aggregator over
mutual TLS on loopback with light participants (tests/load/swarm.py) that download the
global model and upload a synthetic update every round, as real participants do.
Numbers are relative to the 5-participant run of the same invocation, so machines can
be compared by their ratios.

    .venv/bin/python benchmarks/participants.py [--rounds 3] [--hidden 3200 3200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.load.swarm import HIDDEN, parameters, run_swarm

SIZES = (5, 20, 50)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hidden", type=int, nargs="+", default=HIDDEN)
    args = parser.parse_args()

    model_bytes = parameters(args.hidden) * 4
    print(
        f"model: {parameters(args.hidden):,} float32 parameters "
        f"({model_bytes / 2**20:.1f} MiB); {args.rounds} rounds per size"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="crucible-bench-") as root:
        for size in SIZES:
            results.append(
                run_swarm(
                    Path(root) / f"p{size}",
                    participants=size,
                    rounds=args.rounds,
                    hidden=args.hidden,
                    fetch=True,
                )
            )

    base = results[0]
    base_round = statistics.median(base.round_seconds)
    base_bytes = base.update_bytes + base.model_bytes_sent
    print(
        f"{'participants':>12} {'round s (median)':>17} {'x':>6} {'MiB moved/round':>16} "
        f"{'x':>6} {'MiB/s':>7} {'peak RSS MiB':>13}"
    )
    for result in results:
        round_seconds = statistics.median(result.round_seconds)
        moved = result.update_bytes + result.model_bytes_sent
        per_round = moved / result.rounds / 2**20
        print(
            f"{result.participants:>12} {round_seconds:>17.2f} "
            f"{round_seconds / base_round:>6.2f} {per_round:>16.0f} "
            f"{moved / base_bytes:>6.2f} {per_round / round_seconds:>7.0f} "
            f"{result.peak_rss_bytes / 2**20:>13.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
