"""The aggregator: runs, rounds, update checks, aggregation, checkpoints, admin API."""
