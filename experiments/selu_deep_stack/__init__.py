"""SELU's self-normalization in a deep stack, against the mean-field theory.

Run from the repo root: python -m experiments.selu_deep_stack (installed:
jaxrelu-selu-deep-stack). Its modules:

- `main`: the binary
- `stack`: the stacks, their simulation, the claim and results.md
- `figures`: the figures
"""
