"""Dying ReLU: what kills units, and what saves them, measured in training.

Run from the repo root: python -m experiments.dying_relu (installed:
jaxrelu-dying-relu). Its modules:

- `main`: the binary (flags, the sweep, exit status)
- `teacher`: its task (a random teacher network's labels) and trainer grid
- `effects`: a cell's dead fractions, and each claim's effect and test
- `claims`: the verdicts and report.md's claim sections
- `tables`: cells.csv and summary.json
- `figures`: the heatmaps, curves and recovery figures
"""
