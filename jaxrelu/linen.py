"""Flax linen layers: PReLU, RReLU and AlphaDropout.

Stochastic layers follow `flax.linen.Dropout`: a ``deterministic`` field
merged with the call argument by `nn.merge_param`, and keys drawn with
``self.make_rng(rng_collection)`` from the ``'dropout'`` stream by default,
so a training loop that already feeds a dropout key works unchanged. Unlike
linen's ``make_rng``, which falls back to the ``'params'`` stream during
``init``, these layers never use another stream: a missing key is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrelu import _activations, _dropout, _layers

__all__ = (
  'AlphaDropout',
  'PReLU',
  'RReLU',
)

try:
  import flax.errors
  import flax.linen as nn
except ImportError:  # Flax is an optional dependency: the 'flax' extra.
  raise ImportError(
    "jaxrelu.linen needs Flax: pip install 'jaxrelu[flax]'"
  ) from None


class PReLU(nn.Module):
  r"""Parametric ReLU with a learned slope: shared, per channel, or Keras-style.

  .. math::
    y = \max(x, 0) + a \min(x, 0)

  Under differentiation we take prelu'(0) = a and d/da = 0 at x = 0 (see
  `jaxrelu.prelu`).

  The fields Flax's own ``flax.linen.PReLU`` has come first and in its
  order, so ``PReLU(jnp.bfloat16)`` means ``param_dtype`` in both.

  Attributes:
    param_dtype: dtype the slope is stored in; it is cast to the input's
      dtype at use.
    negative_slope_init: initial slope (He et al. 2015 use 0.25), or an
      initializer ``(key, shape, dtype) -> array``.
    axis: if set, one slope per channel along this axis (-1, the feature
      axis, for Flax's channels-last layout; 1 for NCHW).
    shared_axes: Keras-style alternative to ``axis``: one slope per element
      of the input's non-batch axes, shared along these axes (axes count from
      0 over the input; the batch axis 0 is always shared).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxrelu import linen as jrl
    >>> layer = jrl.PReLU(axis=-1)
    >>> variables = layer.init(jax.random.key(0), jnp.ones((2, 3)))
    >>> variables['params']['negative_slope']
    Array([0.25, 0.25, 0.25], dtype=float32)
    >>> layer.apply(variables, -jnp.ones((2, 3)))[0]
    Array([-0.25, -0.25, -0.25], dtype=float32)
  """

  param_dtype: Any = jnp.float32
  negative_slope_init: float | _layers.Initializer = _layers.PRELU_INIT
  axis: int | None = None
  shared_axes: Sequence[int] | None = None

  @nn.compact
  def __call__(self, inputs: ArrayLike) -> jax.Array:
    _layers.check_param_dtype('PReLU', self.param_dtype)
    x = _activations.as_float('PReLU', inputs)
    shape = _layers.slope_shape('PReLU', x.shape, self.axis, self.shared_axes)
    init = _layers.slope_initializer(self.negative_slope_init)
    try:
      slope = self.param('negative_slope', init, shape, self.param_dtype)
    except flax.errors.ScopeParamShapeError as e:
      existing = self.get_variable('params', 'negative_slope')
      _layers.check_slope_matches('PReLU', shape, existing.shape, self.axis)
      raise e  # pragma: no cover (check_slope_matches raised)
    slope = _layers.broadcastable_slope(slope, x.ndim, self.axis)
    return _activations.prelu(x, slope.astype(x.dtype))


def _training_key(
  module: nn.Module, deterministic: bool | None, rng: jax.Array | None
) -> jax.Array | None:
  """None in evaluation mode, else the key: `rng`, or one from the stream.

  `deterministic` is merged with the module's field as `flax.linen.Dropout`
  does; the stream is used only if it was given, never a fallback.
  """
  if nn.merge_param('deterministic', module.deterministic, deterministic):
    return None
  if rng is not None:
    return rng
  if not module.has_rng(module.rng_collection):
    raise ValueError(
      _layers.missing_key_message(
        type(module).__name__, module.rng_collection, 'linen'
      )
    )
  return module.make_rng(module.rng_collection)


class RReLU(nn.Module):
  r"""Randomized leaky ReLU: a random slope per element in training.

  In training each element's negative slope is drawn from
  U(lower, upper) with a key from the ``rng_collection`` stream; in
  evaluation the slope is (lower + upper) / 2 (see `jaxrelu.rrelu`).

  Attributes:
    lower: lower bound of the slope, in [0, 1].
    upper: upper bound of the slope, in [lower, 1].
    deterministic: if True use the evaluation slope; merged with the call
      argument like `flax.linen.Dropout` (one of the two must be set).
    rng_collection: the PRNG stream the training slopes come from.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxrelu import linen as jrl
    >>> layer = jrl.RReLU()
    >>> x = -jnp.ones(4)
    >>> layer.apply({}, x, deterministic=True)
    Array([-0.22916667, -0.22916667, -0.22916667, -0.22916667], dtype=float32)
    >>> y = layer.apply({}, x, deterministic=False,
    ...                 rngs={'dropout': jax.random.key(0)})
    >>> bool(jnp.all((-y >= 1 / 8) & (-y <= 1 / 3)))
    True
  """

  lower: float = _activations.RRELU_LOWER
  upper: float = _activations.RRELU_UPPER
  deterministic: bool | None = None
  rng_collection: str = 'dropout'

  @nn.compact
  def __call__(
    self,
    inputs: ArrayLike,
    deterministic: bool | None = None,
    rng: jax.Array | None = None,
  ) -> jax.Array:
    _activations.check_rrelu_bounds(self.lower, self.upper)
    key = _training_key(self, deterministic, rng)
    if key is None:
      return _activations.rrelu(
        inputs, lower=self.lower, upper=self.upper, deterministic=True
      )
    return _activations.rrelu(inputs, key, lower=self.lower, upper=self.upper)


class AlphaDropout(nn.Module):
  r"""Alpha dropout for self-normalizing networks (see `jaxrelu.alpha_dropout`).

  Attributes:
    rate: the drop probability, in [0, 1).
    broadcast_dims: axes that share one keep mask, as in
      `flax.linen.Dropout` (default: an independent draw per element).
    deterministic: if True, the identity; merged with the call argument like
      `flax.linen.Dropout`.
    rng_collection: the PRNG stream the mask comes from.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxrelu import linen as jrl
    >>> layer = jrl.AlphaDropout(rate=0.1)
    >>> x = jax.random.normal(jax.random.key(0), (100_000,))
    >>> y = layer.apply({}, x, deterministic=False,
    ...                 rngs={'dropout': jax.random.key(1)})
    >>> bool(abs(y.mean()) < 0.01 and abs(y.std() - 1) < 0.01)
    True
  """

  rate: float
  broadcast_dims: Sequence[int] = ()
  deterministic: bool | None = None
  rng_collection: str = 'dropout'

  @nn.compact
  def __call__(
    self,
    inputs: ArrayLike,
    deterministic: bool | None = None,
    rng: jax.Array | None = None,
  ) -> jax.Array:
    _dropout.check_rate('AlphaDropout', self.rate)
    key = None if self.rate == 0 else _training_key(self, deterministic, rng)
    dims = self.broadcast_dims
    if key is None:
      return _dropout.alpha_dropout(
        inputs, self.rate, deterministic=True, broadcast_dims=dims
      )
    return _dropout.alpha_dropout(inputs, self.rate, key, broadcast_dims=dims)
