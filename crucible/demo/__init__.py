"""``crucible demo`` and ``crucible predict``: the consortium on one machine.

``crucible demo`` starts the real aggregator and one participant per organization over
mutual TLS on loopback, trains a federated model per fold of the creep data, compares
it with each organization's local-only model, a centralized model and a Larson-Miller
fit, and writes a report, plots and the final global model into ``--output``.
``crucible predict`` applies such a global model to new rows.

Modules: :mod:`~crucible.demo.organizations` (who holds what),
:mod:`~crucible.demo.folds` (folds by heat), :mod:`~crucible.demo.baselines` and
:mod:`~crucible.demo.larson_miller` (the models compared with),
:mod:`~crucible.demo.federation` (the services as processes),
:mod:`~crucible.demo.comparison` (the experiment), :mod:`~crucible.demo.report`,
:mod:`~crucible.demo.plots`, :mod:`~crucible.demo.prediction`,
:mod:`~crucible.demo.progress`.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from crucible.demo.prediction import predict_main

DATA = Path(__file__).resolve().parents[2] / "data" / "creep"

__all__ = ["DATA", "demo_main", "predict_main"]


def demo_main(argv: list[str]) -> int:
    """``crucible demo``: run the comparison and write its report."""
    parser = argparse.ArgumentParser(
        prog="crucible demo",
        description="The federation on one machine: federated against local-only, "
        "centralized and Larson-Miller models of creep rupture life.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("demo-output"),
        help="directory for the report, plots and model (default: demo-output)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help=f"directory with the creep table and organizations.yaml (default: {DATA})",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="keep the services and their /metrics up after training; "
        "writes endpoints.json; Ctrl-C ends",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="override the rounds of organizations.yaml (every model's budget follows)",
    )
    parser.add_argument(
        "--max-folds", type=int, help="evaluate only the first N folds (quick checks)"
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds: expected at least 1")
    if args.max_folds is not None and args.max_folds < 1:
        parser.error("--max-folds: expected at least 1")

    from crucible.demo import comparison

    # Ctrl-C and SIGTERM both end the demo through KeyboardInterrupt, so the services
    # it started are always stopped; a shell may have left SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    comparison.check_data(args.data)
    args.output.mkdir(parents=True, exist_ok=True)
    comparison.run(
        comparison.Options(
            data=args.data,
            output=args.output,
            rounds=args.rounds,
            max_folds=args.max_folds,
            hold=args.hold,
        )
    )
    return 0
