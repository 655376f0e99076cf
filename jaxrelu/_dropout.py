r"""Alpha dropout (Klambauer et al. 2017), with an exact custom JVP rule."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrelu import _activations, _checks, selu_theory

# The value SELU saturates to, -scale * alpha = -1.7580993408473766.
ALPHA_PRIME = -_activations.SELU_SCALE * _activations.SELU_ALPHA


def _value(x, keep, a, b):
  cdt = _activations.compute_dtype(x.dtype)
  xc = x.astype(cdt)
  dropped = jnp.where(keep, xc, jnp.asarray(ALPHA_PRIME, cdt))
  return (a.astype(cdt) * dropped + b.astype(cdt)).astype(x.dtype)


@jax.custom_jvp
def _alpha_dropout(x, keep, a, b):
  return _value(x, keep, a, b)


def _alpha_dropout_jvp(primals, tangents):
  x, keep, a, b = primals
  x_dot, _, a_dot, b_dot = tangents
  y = _value(x, keep, a, b)
  cdt = _activations.compute_dtype(x.dtype)
  terms = []
  if not _activations.is_zero(x_dot):
    # a * keep * x_dot, saving only the 1-byte keep mask; NaN-preserving.
    zero = jnp.zeros((), cdt)
    scaled = _activations.masked_scale(keep, x_dot.astype(cdt), zero)
    terms.append(a.astype(cdt) * scaled)
  if not _activations.is_zero(a_dot):
    dropped = jnp.where(keep, x.astype(cdt), jnp.asarray(ALPHA_PRIME, cdt))
    terms.append(a_dot.astype(cdt) * dropped)
  if not _activations.is_zero(b_dot):
    terms.append(jnp.broadcast_to(b_dot.astype(cdt), x.shape))
  return y, _activations.sum_tangents(y, terms)


_alpha_dropout.defjvp(_alpha_dropout_jvp, symbolic_zeros=True)


@functools.partial(jax.jit, static_argnames='mask_shape')
def _alpha_dropout_train(x, key, rate, mask_shape):
  rate = jnp.asarray(rate, jnp.result_type(float))
  keep = jax.random.bernoulli(key, 1.0 - rate, mask_shape)
  a, b = selu_theory.alpha_dropout_affine(rate)
  return _alpha_dropout(x, jnp.broadcast_to(keep, x.shape), a, b)


def mask_shape(fn: str, shape, broadcast_dims, rate_shape) -> tuple:
  """x's shape with the broadcast dims set to 1: one mask shared along them.

  Raises:
    ValueError: for broadcast_dims that are not distinct axes of x, or a
      rate that varies along a broadcast dim.
  """
  ndim = len(shape)
  dims = tuple(broadcast_dims)
  for d in dims:
    if isinstance(d, bool) or not isinstance(d, int) or not -ndim <= d < ndim:
      raise ValueError(
        f'{fn}: broadcast_dims must be distinct axes of x (x has {ndim} '
        f'axes: -{ndim} to {ndim - 1}), got {dims!r}.'
      )
  axes = {d % ndim for d in dims}
  if len(axes) < len(dims):
    raise ValueError(
      f'{fn}: broadcast_dims must be distinct axes of x, got {dims!r}.'
    )
  shape = tuple(1 if i in axes else n for i, n in enumerate(shape))
  if jnp.broadcast_shapes(shape, rate_shape) != shape:
    raise ValueError(
      f'{fn}: rate of shape {tuple(rate_shape)} varies along broadcast_dims '
      f'{dims!r}; one mask is shared along them, so the rate must too.'
    )
  return shape


# Shared with the linen and nnx layers and selu_theory.alpha_dropout_affine.
check_rate = _checks.check_rate


def alpha_dropout(
  x: ArrayLike,
  rate: ArrayLike,
  key: jax.Array | None = None,
  *,
  deterministic: bool = False,
  broadcast_dims: Sequence[int] = (),
) -> jax.Array:
  r"""Alpha dropout: dropout that keeps SELU's mean 0 and variance 1.

  Each element is kept with probability q = 1 - rate; a dropped element is
  set to SELU's negative saturation value alpha' = -scale * alpha
  (-1.7580993408473766) rather than 0, and then the affine correction

  .. math::
    y = a \cdot \tilde{x} + b, \quad
    a = \left(q + \alpha'^2 q (1 - q)\right)^{-1/2}, \quad
    b = -a (1 - q) \alpha'

  restores mean 0 and variance 1 for standardized inputs (rate 0.05:
  a = 0.954844, b = 0.083936; rate 0.10: a = 0.921285, b = 0.161971).

  Derivative: dy/dx = a for kept elements and 0 for dropped ones; a NaN
  cotangent stays NaN. Reverse mode saves the 1-byte keep mask. A traced
  ``rate`` is differentiable (through a and b). ``rate == 0`` and
  ``deterministic=True`` return x unchanged.

  Args:
    x: input array. Integer inputs are promoted to the default float dtype.
    rate: the drop probability, in [0, 1): a scalar, or an array that
      broadcasts against x without enlarging it. A traced rate is not
      checked (rate >= 1 gives NaN).
    key: a PRNG key, required in training (``deterministic=False``) when
      rate > 0.
    deterministic: a Python bool; if True, return x (evaluation mode). It
      selects the computation, so it must be static under jit.
    broadcast_dims: axes of x that share one keep mask (as in
      `flax.linen.Dropout`), e.g. the spatial axes for channel-wise
      dropout. Default: an independent draw per element.

  Returns:
    An array of the same shape and dtype as x.

  Raises:
    ValueError: for a concrete rate (any element, for an array) outside
      [0, 1), or one so close to 1 that it rounds to 1 in the computation
      dtype (float32 unless x64 is enabled; e.g. 1 - 1e-12): such rates are
      rejected, not computed. Also for a rate whose shape does not
      broadcast against x, and for a missing key in training; for
      broadcast_dims that are not distinct axes of x, or a rate that varies
      along them.
    TypeError: for a complex, bool or non-numeric rate (even traced), a
      ``deterministic`` that is not a Python bool (e.g. "no" or a tracer),
      and a ``key`` that is not a PRNG key.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxrelu
    >>> x = jax.random.normal(jax.random.key(0), (100_000,))
    >>> y = jaxrelu.alpha_dropout(x, 0.1, jax.random.key(1))
    >>> bool(abs(y.mean()) < 0.01 and abs(y.std() - 1) < 0.01)
    True
    >>> bool(jnp.all(jaxrelu.alpha_dropout(x, 0.1, deterministic=True) == x))
    True

  References:
    Klambauer, Unterthiner, Mayr & Hochreiter, Self-Normalizing Neural
    Networks, NeurIPS 2017.
  """
  x = _activations.as_float('alpha_dropout', x)
  _checks.check_bool('alpha_dropout', 'deterministic', deterministic)
  rate = check_rate('alpha_dropout', rate)
  _activations.check_slope_shape('alpha_dropout', 'rate', x, rate)
  shape = mask_shape('alpha_dropout', x.shape, broadcast_dims, jnp.shape(rate))
  if deterministic or _checks.concrete_scalar(rate) == 0.0:
    return x
  if key is None:
    raise ValueError(
      'alpha_dropout: key is None in training mode. Pass '
      'key=jax.random.key(...), or deterministic=True for evaluation.'
    )
  _checks.check_key('alpha_dropout', key)
  return _alpha_dropout_train(x, key, rate, shape)
