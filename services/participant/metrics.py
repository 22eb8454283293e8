"""The participant's Prometheus metrics, all in one place."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LOCAL_TRAINING = Histogram(
    "crucible_local_training_seconds",
    "Local training time per round.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
LOCAL_LOSS = Gauge("crucible_local_loss", "Local training loss of the last round.")
LOCAL_EVALUATION_RMSE = Gauge(
    "crucible_local_evaluation_rmse",
    "RMSE of the last global model on this organization's held-out rows.",
)
ROUNDS = Counter("crucible_participant_rounds_total", "Updates this participant sent.")
RUNS_REFUSED = Counter(
    "crucible_participant_runs_refused_total", "Runs refused under the local policy."
)
CONNECTED = Gauge(
    "crucible_participant_connected",
    "1 while the last call to the aggregator succeeded.",
)
RECONNECTS = Counter(
    "crucible_participant_reconnects_total", "Retries after a failed call."
)
for _metric in (RUNS_REFUSED, RECONNECTS):
    _metric.inc(0)
