"""The FederationRound operator: Kubernetes resources in, aggregator runs out.

It reconciles ``federationrounds.crucible.dev``: validates each spec, starts its run on
the aggregator keyed by the resource's UID, mirrors the run's progress into ``.status``
and Events, and cancels the run when the resource is deleted. It talks to the aggregator
only through the Admin protocol (:mod:`crucible.client`) and imports nothing from the
services.
"""
