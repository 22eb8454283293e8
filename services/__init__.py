"""Crucible's long-running services: the aggregator and the participant."""
