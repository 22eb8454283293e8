"""The operator's Prometheus metrics, served on ``metrics_listen``.

Every series a dashboard may query exists from the start at zero, so a missing series
means a missing operator, not a quiet one. Labels are bounded: handler names and error
kinds, never resource names.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HANDLERS = ("follow", "update_participants", "cancel")
ERROR_KINDS = ("permanent", "temporary", "forbidden")

RECONCILES = Counter(
    "crucible_operator_reconciles_total",
    "Handler invocations for FederationRounds, by handler.",
    ["handler"],
)
ERRORS = Counter(
    "crucible_operator_errors_total",
    "Handler errors, by handler and kind: permanent (the resource ends Failed), "
    "temporary (retried with backoff), forbidden (RBAC refused a call; retried).",
    ["handler", "kind"],
)
STATUS_PATCH_SECONDS = Histogram(
    "crucible_operator_status_patch_seconds",
    "Latency of patching a FederationRound's status subresource.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RUNS_FOLLOWED = Gauge(
    "crucible_operator_runs_followed",
    "FederationRounds whose run the operator is following now.",
)
EVENTS = Counter(
    "crucible_operator_events_total",
    "Kubernetes Events posted, by type (Normal or Warning).",
    ["type"],
)

for _handler in HANDLERS:
    RECONCILES.labels(_handler)
    for _kind in ERROR_KINDS:
        ERRORS.labels(_handler, _kind)
for _type in ("Normal", "Warning"):
    EVENTS.labels(_type)
