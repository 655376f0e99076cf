"""Calibrates `jaxrelu.self_normalization`'s test by simulation: its
false-positive rate and its power.

Run from the repo root: python -m experiments.calibrate_self_normalization
(installed: jaxrelu-calibrate-self-normalization). Its modules:

- `main`: the binary
- `rates`: the rates and the claims on them
- `tables`: results.md's tables
"""
