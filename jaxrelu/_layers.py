"""What the linen and nnx layers share: slope shapes, initializers, errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[[jax.Array, Sequence[int], Any], jax.Array]

# He et al. (2015) initialise PReLU slopes to 0.25.
PRELU_INIT = 0.25


def slope_initializer(init: float | Initializer) -> Initializer:
  """A number becomes a constant initializer; a callable is used as is."""
  if callable(init):
    return init
  value = float(init)
  return lambda key, shape, dtype: jnp.full(shape, value, dtype)


def check_slope_options(
  module: str, axis: int | None, shared_axes: Sequence[int] | None
) -> None:
  if axis is not None and shared_axes is not None:
    raise ValueError(
      f'{module}: pass axis (one slope per channel) or shared_axes '
      '(Keras-style, one slope per element of the non-shared axes), not '
      f'both; got axis={axis}, shared_axes={tuple(shared_axes)}.'
    )


def check_channels(
  module: str,
  num_channels: Any,
  axis: int | None,
  *,
  default_axis: int | None = None,
) -> None:
  """Checks a per-channel PReLU's `num_channels` and `axis` at construction.

  A layer that creates its slope eagerly (nnx) cannot infer the channel
  count from an input, so an `axis` other than `default_axis` (None: any
  axis) without `num_channels` is an error rather than a silently shared
  slope.

  Raises:
    TypeError: if num_channels is not None and not an int (bool, float and
      strings are rejected), or axis is not an int or None.
    ValueError: if num_channels < 1, or axis differs from default_axis
      while num_channels is None.
  """
  if num_channels is not None:
    if isinstance(num_channels, bool) or not isinstance(
      num_channels, int | np.integer
    ):
      raise TypeError(
        f'{module}: num_channels must be a positive integer, got '
        f'{type(num_channels).__name__} {num_channels!r}.'
      )
    if num_channels < 1:
      raise ValueError(
        f'{module}: num_channels must be >= 1, got {num_channels}.'
      )
  if axis is not None and (
    isinstance(axis, bool) or not isinstance(axis, int | np.integer)
  ):
    raise TypeError(
      f'{module}: axis must be an int, got {type(axis).__name__} {axis!r}.'
    )
  if num_channels is None and axis is not None and axis != default_axis:
    raise ValueError(
      f'{module}: axis={axis} needs num_channels, the number of channels '
      f'along that axis (e.g. {module}(num_channels=C, axis={axis})); '
      'without it the layer has one shared slope and axis would be ignored.'
    )


def slope_shape(
  module: str,
  x_shape: Sequence[int],
  axis: int | None,
  shared_axes: Sequence[int] | None,
) -> tuple[int, ...]:
  """Shape of the slope parameter for an input of shape x_shape.

  - axis None, shared_axes None: () - one shared slope.
  - axis k: (x_shape[k],) - one slope per channel along axis k.
  - shared_axes S (Keras): x_shape[1:] with every axis in S set to 1; axis 0
    (the batch) is always shared. Axes count from 0 over x, so for NHWC
    input shared_axes=(1, 2) gives one slope per channel, shape (1, 1, C).
  """
  check_slope_options(module, axis, shared_axes)
  ndim = len(x_shape)
  if axis is not None:
    if not -ndim <= axis < ndim:
      raise ValueError(
        f'{module}: axis {axis} is out of range for input of rank {ndim}.'
      )
    return (x_shape[axis],)
  if shared_axes is not None:
    shared = {a % ndim for a in shared_axes}
    if any(not -ndim <= a < ndim for a in shared_axes) or 0 in shared:
      raise ValueError(
        f'{module}: shared_axes must be axes 1..{ndim - 1} of the input '
        f'(axis 0, the batch, is always shared), got {tuple(shared_axes)}.'
      )
    return tuple(1 if i in shared else x_shape[i] for i in range(1, ndim))
  return ()


def broadcastable_slope(
  slope: jax.Array, ndim: int, axis: int | None
) -> jax.Array:
  """Reshapes a per-channel slope (C,) so it broadcasts along `axis`."""
  if axis is None or axis % ndim == ndim - 1:
    return slope
  trailing = ndim - axis % ndim
  return slope.reshape((slope.shape[0],) + (1,) * (trailing - 1))


def check_slope_matches(
  module: str,
  expected: tuple[int, ...],
  actual: tuple[int, ...],
  axis: int | None,
) -> None:
  if expected == actual:
    return
  if axis is not None:
    raise ValueError(
      f'{module}: the input has {expected[0]} channels along axis {axis}, '
      f'but the negative_slope parameter has {actual[0]}.'
    )
  raise ValueError(
    f'{module}: the input needs a negative_slope of shape {expected}, but '
    f'the parameter has shape {actual}.'
  )


def missing_key_message(module: str, stream: str, api: str) -> str:
  if api == 'linen':
    give = (
      f"pass the key, e.g. model.apply(variables, x, rngs={{'{stream}': "
      'key}) (or init(...) with the same rngs)'
    )
    evaluate = 'call with deterministic=True'
  else:
    give = (
      f'construct it with rngs=nnx.Rngs({stream}=seed) (or pass '
      'rngs=<key or stream> at call time)'
    )
    evaluate = 'call model.eval(), or pass deterministic=True'
  return (
    f'{module} is in training mode but has no PRNG key for stream '
    f"'{stream}'. Either {give}, or switch to evaluation: {evaluate}. "
    'No other stream is used in its place.'
  )


def check_param_dtype(module: str, param_dtype: Any) -> None:
  """Raises TypeError unless `param_dtype` names a floating dtype."""
  try:
    ok = jnp.issubdtype(jnp.dtype(param_dtype), jnp.floating)
  except TypeError:
    ok = False
  if not ok:
    raise TypeError(
      f'{module}: param_dtype must be a floating dtype such as jnp.float32, '
      f"got {param_dtype!r}. It is the first field, as in Flax's own "
      f'{module}; pass the initial slope as negative_slope_init=...'
    )
