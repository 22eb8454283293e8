"""Crucible: federated learning of creep rupture life across organizations.

The shared core: protocol, specs, data, models, strategies, certificates, settings and
telemetry that the aggregator, the participant and the operator all use. The core never
imports the services or the operator; only :mod:`crucible.cli` composes them.
"""

__version__ = "0.1.0"
