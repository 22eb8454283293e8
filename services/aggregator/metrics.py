"""The aggregator's Prometheus metrics, all in one place.

Names carry the ``crucible_`` prefix and base units; counters end in ``_total``; labels
are bounded (run IDs, refusal reasons from a fixed list). Series that alerts read are
created at zero, so an alert sees "0" rather than "no data".
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REFUSAL_REASONS = (
    "NotFinite",
    "WrongShape",
    "WrongDtype",
    "TooLarge",
    "Truncated",
    "Malformed",
    "StaleRound",
    "Duplicate",
    "NotParticipant",
    "NormOutlier",
    "StateUnwritable",
    "WrongBase",
)

ROUND_DURATION = Histogram(
    "crucible_round_duration_seconds",
    "Time from a round's broadcast to its recorded checkpoint.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
ROUNDS_COMPLETED = Counter(
    "crucible_rounds_completed_total", "Rounds aggregated and recorded."
)
ROUNDS_FAILED = Counter(
    "crucible_rounds_failed_total", "Round attempts closed below quorum."
)
RUNS = Gauge("crucible_runs", "Runs known to the aggregator, by phase.", ["phase"])
GLOBAL_LOSS = Gauge(
    "crucible_global_loss",
    "Sample-weighted local training loss of the last round.",
    ["run"],
)
EVALUATION_RMSE = Gauge(
    "crucible_evaluation_rmse",
    "RMSE of the global model on all participants' held-out rows (target units).",
    ["run"],
)
CURRENT_ROUND = Gauge("crucible_current_round", "Round in progress.", ["run"])
PARTICIPANTS_CONNECTED = Gauge(
    "crucible_participants_connected", "Participants heard from recently.", ["run"]
)
PARTICIPANTS_REPORTING = Gauge(
    "crucible_participants_reporting",
    "Participants whose update counts this round.",
    ["run"],
)
PARTICIPANTS_LOST = Gauge(
    "crucible_participants_lost",
    "Participants silent for longer than allowed.",
    ["run"],
)
UPDATE_BYTES = Counter("crucible_update_bytes_total", "Bytes of accepted updates.")
MODEL_BYTES_SENT = Counter(
    "crucible_model_bytes_sent_total", "Bytes of global models sent to participants."
)
UPDATES_ACCEPTED = Counter("crucible_updates_accepted_total", "Updates accepted.")
UPDATES_REFUSED = Counter(
    "crucible_updates_refused_total", "Updates refused, by reason.", ["reason"]
)
DEADLINES_EXCEEDED = Counter(
    "crucible_round_deadline_exceeded_total",
    "Round attempts that reached roundTimeoutSeconds before every participant reported.",
)
STATE_WRITABLE = Gauge(
    "crucible_state_writable", "1 when the state directory accepts writes, else 0."
)

for _reason in REFUSAL_REASONS:
    UPDATES_REFUSED.labels(reason=_reason)
for _phase in ("Pending", "Running", "Succeeded", "Failed", "Cancelled"):
    RUNS.labels(phase=_phase)
STATE_WRITABLE.set(1)
