"""Flax nnx layers: PReLU, RReLU and AlphaDropout.

Stochastic layers follow `flax.nnx.Dropout`: a forked PRNG stream kept from
``rngs[rng_collection]``, a ``deterministic`` attribute that call-time
arguments override, and ``set_view`` so that ``model.train()``,
``model.eval()`` and ``nnx.view(model, deterministic=...)`` switch the mode.
Unlike ``nnx.Rngs.__getitem__``, which falls back to the ``'default'``
stream, these layers never draw from another stream: a missing one is an
error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxrelu import _activations, _dropout, _layers

__all__ = (
  'AlphaDropout',
  'PReLU',
  'RReLU',
)

try:
  from flax import nnx
  from flax.nnx.nn import dtypes as nnx_dtypes
except ImportError:  # Flax is an optional dependency: the 'flax' extra.
  raise ImportError(
    "jaxrelu.nnx needs Flax: pip install 'jaxrelu[flax]'"
  ) from None


class PReLU(nnx.Module):
  r"""Parametric ReLU with a learned slope: shared, per channel, or Keras-style.

  .. math::
    y = \max(x, 0) + a \min(x, 0)

  nnx creates parameters eagerly, so the slope's shape is given here:

  - nothing: one shared slope;
  - ``num_channels=C``: one slope per channel along ``axis`` (default -1,
    the feature axis of channels-last input);
  - ``input_shape=(d1, ..., dk)`` (without the batch) and ``shared_axes``:
    Keras-style, one slope per element of the input, shared along
    ``shared_axes`` (counted over the input with its batch axis 0).

  Every keyword of `flax.nnx.PReLU` is accepted with its meaning
  (``negative_slope_init`` first, positionally too, then ``dtype``,
  ``param_dtype``, ``promote_dtype``, ``negative_slope_metadata``), so code
  written for Flax's layer runs unchanged; only the default initial slope
  differs (0.25, He et al. 2015's, against Flax's 0.01).

  Args:
    negative_slope_init: initial slope or an initializer
      ``(key, shape, dtype) -> array``.
    num_channels: number of per-channel slopes (a positive integer).
    axis: the channel axis for ``num_channels`` (default -1); an error
      without ``num_channels``.
    input_shape: the non-batch input shape, for ``shared_axes``.
    shared_axes: axes (1..ndim-1 of the input) that share a slope.
    dtype: the dtype of the computation; None (default) computes in the
      input's dtype, the slope cast to it.
    param_dtype: storage dtype of the slope.
    promote_dtype: with ``dtype``, maps ``((inputs, slope), dtype=dtype)``
      to the promoted pair (Flax's ``promote_dtype`` by default).
    negative_slope_metadata: metadata of the slope's ``nnx.Param``.
    rngs: needed only when ``negative_slope_init`` is a random initializer
      (the ``params`` stream is used).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxrelu import nnx as jrn
    >>> layer = jrn.PReLU(num_channels=3)
    >>> layer.negative_slope[...]
    Array([0.25, 0.25, 0.25], dtype=float32)
    >>> layer(-jnp.ones((2, 3)))[0]
    Array([-0.25, -0.25, -0.25], dtype=float32)
  """

  def __init__(
    self,
    negative_slope_init: float | _layers.Initializer = _layers.PRELU_INIT,
    *,
    num_channels: int | None = None,
    axis: int | None = None,
    input_shape: Sequence[int] | None = None,
    shared_axes: Sequence[int] | None = None,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    promote_dtype: Callable[..., Any] = nnx_dtypes.promote_dtype,
    negative_slope_metadata: Mapping[str, Any] = MappingProxyType({}),
    rngs: nnx.Rngs | None = None,
  ):
    if isinstance(negative_slope_init, bool) or not (
      callable(negative_slope_init)
      or isinstance(negative_slope_init, (int, float, np.floating, np.integer))
    ):
      raise TypeError(
        'PReLU: negative_slope_init must be a number or an initializer '
        f'(key, shape, dtype) -> array, got {negative_slope_init!r}.'
      )
    _layers.check_param_dtype('PReLU', param_dtype)
    _layers.check_channels('PReLU', num_channels, axis)
    axis = -1 if axis is None else axis
    if num_channels is not None and shared_axes is not None:
      _layers.check_slope_options('PReLU', axis, shared_axes)
    if shared_axes is not None:
      if input_shape is None:
        raise ValueError(
          'PReLU: shared_axes needs input_shape, the input shape without '
          'the batch axis.'
        )
      self.axis = None
      shape = _layers.slope_shape('PReLU', (1, *input_shape), None, shared_axes)
    elif num_channels is not None:
      self.axis = axis
      shape = (int(num_channels),)
    else:
      self.axis = None
      shape = ()
    self.shared_axes = None if shared_axes is None else tuple(shared_axes)
    init = _layers.slope_initializer(negative_slope_init)
    key = rngs.params() if rngs is not None else jax.random.key(0)
    self.negative_slope = nnx.Param(
      init(key, shape, param_dtype), **negative_slope_metadata
    )
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.promote_dtype = promote_dtype

  def __call__(self, inputs: ArrayLike) -> jax.Array:
    x = _activations.as_float('PReLU', inputs)
    slope = self.negative_slope[...]
    if self.dtype is not None:
      x, slope = self.promote_dtype((x, slope), dtype=self.dtype)
    if self.axis is not None:
      expected = _layers.slope_shape('PReLU', x.shape, self.axis, None)
      _layers.check_slope_matches('PReLU', expected, slope.shape, self.axis)
    elif self.shared_axes is not None:
      expected = _layers.slope_shape('PReLU', x.shape, None, self.shared_axes)
      _layers.check_slope_matches('PReLU', expected, slope.shape, None)
    slope = _layers.broadcastable_slope(slope, x.ndim, self.axis)
    return _activations.prelu(x, slope.astype(x.dtype))


def _fork(rngs, collection: str):
  """The layer's own stream: forked from rngs[collection], never a fallback."""
  if isinstance(rngs, nnx.Rngs):
    if collection not in rngs:
      return None
    return rngs[collection].fork()
  if isinstance(rngs, nnx.RngStream):
    return rngs.fork()
  if rngs is None:
    return None
  raise TypeError(
    f'rngs must be a Rngs, RngStream or None, but got {type(rngs)}.'
  )


class _Stochastic(nnx.Module):
  """Shared mode and key handling of RReLU and AlphaDropout."""

  def _init_stochastic(self, deterministic, rng_collection, rngs):
    self.deterministic = deterministic
    self.rng_collection = rng_collection
    stream = _fork(rngs, rng_collection)
    self.rngs = nnx.data(None) if stream is None else stream

  def _mode(self, deterministic: bool | None) -> bool:
    mode = self.deterministic if deterministic is None else deterministic
    if mode is None:
      # Flax Dropout's wording first, then the options in one line.
      raise ValueError(
        'No `deterministic` argument was provided to '
        f'{type(self).__name__}. Pass deterministic=True/False to the '
        'constructor or the call, or use nnx.view(model, '
        'deterministic=True/False), model.eval() or model.train().'
      )
    return bool(mode)

  def _key(self, rngs) -> jax.Array:
    source = self.rngs if rngs is None else rngs
    if isinstance(rngs, nnx.Rngs):
      if self.rng_collection not in rngs:
        source = None
      else:
        source = rngs[self.rng_collection]
    if isinstance(source, nnx.RngStream):
      return source()
    if isinstance(source, jax.Array):
      return source
    if source is None:
      name = type(self).__name__
      # Flax Dropout's wording first, then which stream and the fixes.
      raise ValueError(
        f'`deterministic` is False, but no `rngs` argument was provided to '
        f'{name} as either a __call__ argument or class attribute. '
        + _layers.missing_key_message(name, self.rng_collection, 'nnx')
      )
    raise TypeError(
      f'rngs must be a Rngs, RngStream or jax.Array, but got {type(source)}.'
    )

  def set_view(self, deterministic: bool | None = None):
    """Class method used by ``nnx.view``.

    Args:
      deterministic: if True, evaluation mode; if False, training mode.
    """
    if deterministic is not None:
      self.deterministic = deterministic


class RReLU(_Stochastic):
  r"""Randomized leaky ReLU: a random slope per element in training.

  In training each element's negative slope is drawn from U(lower, upper)
  with a key from the layer's forked ``rng_collection`` stream; in
  evaluation the slope is (lower + upper) / 2 (see `jaxrelu.rrelu`).

  Args:
    lower: lower bound of the slope, in [0, 1].
    upper: upper bound of the slope, in [lower, 1].
    deterministic: evaluation mode if True. ``model.train()`` /
      ``model.eval()`` / ``nnx.view`` set it; a call argument overrides it.
    rng_collection: the stream to fork from ``rngs`` (default 'dropout').
    rngs: ``nnx.Rngs`` with that stream, or an ``nnx.RngStream``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxrelu import nnx as jrn
    >>> layer = jrn.RReLU(rngs=nnx.Rngs(dropout=0))
    >>> y = layer(-jnp.ones(4))
    >>> bool(jnp.all((-y >= 1 / 8) & (-y <= 1 / 3)))
    True
    >>> layer.eval()
    >>> layer(-jnp.ones(2))
    Array([-0.22916667, -0.22916667], dtype=float32)
  """

  def __init__(
    self,
    lower: float = _activations.RRELU_LOWER,
    upper: float = _activations.RRELU_UPPER,
    *,
    deterministic: bool | None = False,
    rng_collection: str = 'dropout',
    rngs: nnx.Rngs | nnx.RngStream | None = None,
  ):
    _activations.check_rrelu_bounds(lower, upper)
    self.lower = lower
    self.upper = upper
    self._init_stochastic(deterministic, rng_collection, rngs)

  def __call__(
    self,
    inputs: ArrayLike,
    *,
    deterministic: bool | None = None,
    rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
  ) -> jax.Array:
    if self._mode(deterministic):
      return _activations.rrelu(
        inputs, lower=self.lower, upper=self.upper, deterministic=True
      )
    return _activations.rrelu(
      inputs, self._key(rngs), lower=self.lower, upper=self.upper
    )


class AlphaDropout(_Stochastic):
  r"""Alpha dropout for self-normalizing networks (see `jaxrelu.alpha_dropout`).

  Args:
    rate: the drop probability, in [0, 1).
    broadcast_dims: axes that share one keep mask, as in
      `flax.nnx.Dropout` (default: an independent draw per element).
    deterministic: identity if True. ``model.train()`` / ``model.eval()`` /
      ``nnx.view`` set it; a call argument overrides it.
    rng_collection: the stream to fork from ``rngs`` (default 'dropout').
    rngs: ``nnx.Rngs`` with that stream, or an ``nnx.RngStream``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxrelu import nnx as jrn
    >>> layer = jrn.AlphaDropout(0.1, rngs=nnx.Rngs(dropout=1))
    >>> x = jax.random.normal(jax.random.key(0), (100_000,))
    >>> y = layer(x)
    >>> bool(abs(y.mean()) < 0.01 and abs(y.std() - 1) < 0.01)
    True
  """

  def __init__(
    self,
    rate: float,
    *,
    broadcast_dims: Sequence[int] = (),
    deterministic: bool | None = False,
    rng_collection: str = 'dropout',
    rngs: nnx.Rngs | nnx.RngStream | None = None,
  ):
    _dropout.check_rate('AlphaDropout', rate)
    self.rate = rate
    self.broadcast_dims = tuple(broadcast_dims)
    self._init_stochastic(deterministic, rng_collection, rngs)

  def __call__(
    self,
    inputs: ArrayLike,
    *,
    deterministic: bool | None = None,
    rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
  ) -> jax.Array:
    dims = self.broadcast_dims
    if self._mode(deterministic) or self.rate == 0:
      return _dropout.alpha_dropout(
        inputs, self.rate, deterministic=True, broadcast_dims=dims
      )
    return _dropout.alpha_dropout(
      inputs, self.rate, self._key(rngs), broadcast_dims=dims
    )
