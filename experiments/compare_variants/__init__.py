"""The ReLU variants compared on real data.

Run from the repo root: python -m experiments.compare_variants (installed:
jaxrelu-compare-variants). Its modules:

- `main`: the binary
- `datasets`: the datasets, their splits and padding
- `training`: the sweep's cells and their trainer
- `claims`: the claims' tests and verdicts
- `tables`: cells.csv, summary.json and report.md's tables
- `figures`: the figures
"""
