"""Experiment binaries; run from the repo root: python -m experiments.NAME.

Each binary is a package (dying_relu, born_dead, compare_variants,
selu_deep_stack, calibrate_self_normalization, benchmark_activations,
benchmark_unit_stats): its main.py holds the flags and exit status, its
other modules its own claims, tables and figures. The modules at this
level are the engine they share (store, sweep, cli, model, stats, report,
plots, dense_mlp); no binary imports another's package.

Installed from the wheel they are console scripts (jaxrelu-selu-deep-stack,
...), and need the 'experiments' extra.
"""

try:
  import absl  # noqa: F401
  import optax  # noqa: F401
except ImportError:  # optional dependencies: the 'experiments' extra.
  raise ImportError(
    "jaxrelu's experiments need their extra: pip install 'jaxrelu[experiments]'"
  ) from None
