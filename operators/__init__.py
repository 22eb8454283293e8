"""The FederationRound operator: Kubernetes resources in, aggregator runs out.

It reconciles ``federationrounds.crucible.dev``: validates each spec, starts its run on
the aggregator keyed by the resource's UID, mirrors the run's progress into ``.status``
and Events, and cancels the run when the resource is deleted. It talks to the aggregator
only through the Admin protocol (:mod:`crucible.client`) and imports nothing from the
services.

Limitations:

- One replica. Peering is off; a second replica would start no second run (runs are
  keyed by UID) but would patch every status twice.
- A spec the aggregator refuses ends the resource ``Failed`` for good; the operator
  tries again only for a newer generation after it restarts. Apply a corrected spec as
  a new FederationRound.
- The CRD must be installed before the operator starts: it does not watch CRDs or
  namespaces (so its Role needs no cluster-wide reads).
- ``spec.initialModel`` names a FederationRound in the same namespace; the operator
  waits (retrying) until that one has succeeded.
- Participants removed in the instant between the run's start and the first status
  patch reach the aggregator only after the next change of ``spec.participants``.
"""
