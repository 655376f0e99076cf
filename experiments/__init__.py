"""Experiment binaries; run from the repo root: python -m experiments.NAME."""
