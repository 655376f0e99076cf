"""Argument checks shared by the public functions.

Checks run in Python on concrete values only: a hyperparameter that is a
tracer (an argument of an enclosing `jax.jit`, or a value under `vmap`/`grad`)
has no value at trace time and passes unchecked. Each public docstring says
what a bad traced value does instead.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def concrete_scalar(value: Any) -> float | None:
  """Returns `value` as a Python float when it is a concrete scalar, else None.

  Python numbers, NumPy scalars and 0-d arrays, and concrete 0-d jax Arrays
  are concrete; tracers and non-scalar arrays are not.
  """
  if isinstance(value, jax.core.Tracer):
    return None
  if isinstance(value, bool | np.bool_):
    return float(value)
  if isinstance(value, int | float | np.number):
    return float(value)
  if isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 0:
    return float(np.asarray(value))
  return None


def check_finite(fn: str, name: str, value: Any) -> None:
  """Raises ValueError if a concrete scalar `value` is NaN or infinite."""
  v = concrete_scalar(value)
  if v is not None and not math.isfinite(v):
    raise ValueError(f'{fn}: {name} must be a finite number, got {value!r}.')


def check_real_dtype(fn: str, x: jax.Array) -> None:
  """Raises TypeError for bool and complex inputs, which no activation takes."""
  if x.dtype == jnp.bool_ or jnp.issubdtype(x.dtype, jnp.complexfloating):
    raise TypeError(
      f'{fn}: x must have a real integer or floating dtype, got {x.dtype}. '
      'Cast it first, e.g. x.astype(jnp.float32).'
    )
