"""Experiment binaries; run from the repo root: python -m experiments.NAME.

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
