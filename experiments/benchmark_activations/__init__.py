"""Speed and memory of every public path of jaxrelu against its reference.

Run from the repo root: python -m experiments.benchmark_activations (installed:
jaxrelu-benchmark-activations). Its modules:

- `main`: the binary
- `paths`: the paths timed, each beside its reference
- `timing`: interleaved timing, ratios and verdicts
"""
