"""What the dead-unit tracer costs inside a training step.

Run from the repo root: python -m experiments.benchmark_unit_stats (installed:
jaxrelu-benchmark-unit-stats). Its modules:

- `main`: the binary
"""
