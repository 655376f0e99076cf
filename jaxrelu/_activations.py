r"""Rectifier activations with hand-written, exact, memory-lean JVP rules.

Every function here is a `jax.custom_jvp` wrapped in `jax.jit`, and follows
one contract:

* Derivative at a kink is the derivative of the left (clipped) side, as in
  PyTorch: relu'(0) = 0, relu6'(0) = relu6'(6) = 0, leaky_relu'(0) =
  negative_slope, elu'(0) = alpha, selu'(0) = scale * alpha, celu'(0) = 1.
  Second derivatives at a kink are 0, as PyTorch's double backward (which
  masks with x < 0) gives.
* The exponential units compute one exp per element, shared by the value
  and the derivative; the derivative is alpha * exp(x), never y + alpha or
  expm1(x) + 1. Value and derivative stay within 4 ulp of mpmath down to the
  smallest normal number, for alpha up to e^32 (about 8e13), in float32
  and float64
  (tests/jaxrelu/test_exponential_tails.py).
* A NaN is never hidden: NaN in gives NaN out, a NaN cotangent stays NaN
  (rules multiply by the derivative instead of selecting zero), and the
  exponential units' derivatives at a NaN input are NaN at every order.
  The piecewise-linear units take their left piece at a NaN input (relu:
  0, PyTorch: 1): their 1-byte residual mask cannot carry a NaN.
* Every floating dtype narrower than float32 (float16, bfloat16, the float8
  types, float4_e2m1fn) is computed in float32 and rounded once.
* Concrete hyperparameters are checked in the dtype they are computed in
  (1e39 is a finite float64 but inf in float32).
* Backward-pass residuals are small: a boolean mask (1 byte per element) for
  the piecewise-linear units, one derivative array for the others.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike

from jaxrelu import _checks

# Klambauer et al. (2017), to full float64 precision.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SELU_SCALE_ALPHA = SELU_SCALE * SELU_ALPHA

# RReLU defaults (Xu et al. 2015, as in PyTorch).
RRELU_LOWER = 1.0 / 8.0
RRELU_UPPER = 1.0 / 3.0


# Inputs narrower than float32 (float16, bfloat16, the float8 types and
# float4_e2m1fn) are computed in float32 and rounded once.
compute_dtype = _checks.compute_dtype


def as_float(fn: str, x: ArrayLike) -> jax.Array:
  """Converts x to an array; integers are promoted to the default float."""
  if _checks.is_float_array(x):  # The common case, checked cheaply.
    return x
  x = _checks.as_array(fn, x)
  _checks.check_real_dtype(fn, x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.result_type(float))
  return x


def is_zero(t) -> bool:
  return type(t) is SymbolicZero


def sum_tangents(y: jax.Array, terms: list[jax.Array]) -> jax.Array:
  """Adds tangent terms in the compute dtype and rounds once to y's dtype."""
  if not terms:
    return jnp.zeros_like(y)
  total = terms[0]
  for term in terms[1:]:
    total = total + term
  return total.astype(y.dtype)


# prevent_cse=False: no optimisation barrier, so XLA still fuses the rule.
@functools.partial(jax.checkpoint, prevent_cse=False)
def masked_scale(mask: jax.Array, g: jax.Array, factor) -> jax.Array:
  """g * where(mask, 1, factor): linear in g, NaN-preserving, 1-byte residual.

  Multiplying instead of selecting zero keeps a NaN cotangent NaN. The
  checkpoint makes reverse mode save the boolean mask (1 byte per element)
  and rebuild the multiplier in the backward pass, instead of saving the
  multiplier itself (4 bytes). A multiply by a converted mask costs the same
  as jax.nn's select (BUILD_NOTES.md); where(mask, g, g * factor) was ~2%
  slower on CPU.
  """
  return g * jnp.where(mask, jnp.ones((), g.dtype), factor).astype(g.dtype)


# ----------------------------------------------------------------------------
# relu


@jax.custom_jvp
def _relu(x):
  return jnp.maximum(x, jnp.zeros((), x.dtype))


def _masked(mask, g):
  """g where mask, else 0 (NaN stays NaN), computed in g's compute dtype.

  For half-precision g the multiply is written in float32 and rounded once:
  written in bfloat16, XLA's CPU backend wraps it in extra converts, the
  fusion looks compute-bound to its cost model and is split over threads
  where the hand-off costs more than the work (relu's bfloat16 vjp at 2^16
  elements was 1.8x jax.nn's). The values are the same: g * 1 and g * 0
  are exact.
  """
  cdt = compute_dtype(g.dtype)
  return masked_scale(mask, g.astype(cdt), jnp.zeros((), cdt)).astype(g.dtype)


@_relu.defjvp
def _relu_jvp(primals, tangents):
  (x,), (g,) = primals, tangents
  return _relu(x), _masked(x > 0, g)


_relu_float = jax.jit(_relu)
_relu_int = jax.jit(lambda x: jnp.maximum(x, jnp.zeros((), x.dtype)))


def relu(x: ArrayLike) -> jax.Array:
  r"""Rectified linear unit.

  .. math::
    \mathrm{relu}(x) = \max(x, 0)

  Under differentiation we take relu'(0) = 0, the derivative of the clipped
  (left) side, as PyTorch and jax.nn do. A NaN input gives a NaN output and
  takes the left-side derivative 0 (jax.nn: 0; PyTorch: 1); a NaN cotangent
  stays NaN (jax.nn.relu turns it into 0 where x <= 0). A subnormal x is 0
  to XLA on CPU (flushed), so relu(1e-45) = 0 with derivative 0. Reverse
  mode saves a 1-byte mask per element.

  Args:
    x: input array. Floating dtypes are kept; integer dtypes are kept too
      (relu is exact on integers, and not differentiable there).

  Returns:
    An array of the same shape and dtype as x.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxrelu
    >>> jaxrelu.relu(jnp.array([-2.0, 0.0, 3.0]))
    Array([0., 0., 3.], dtype=float32)
    >>> jax.grad(jaxrelu.relu)(0.0)
    Array(0., dtype=float32, weak_type=True)

  References:
    Nair & Hinton, Rectified Linear Units Improve Restricted Boltzmann
    Machines, ICML 2010.
  """
  if type(x) is _checks.ARRAY_TYPE and x.dtype in _checks.FLOAT_DTYPES:
    return _relu_float(x)  # The eager fast path: nothing to check.
  x = _checks.as_array('relu', x)
  _checks.check_real_dtype('relu', x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return _relu_int(x)
  return _relu_float(x)


# ----------------------------------------------------------------------------
# relu6


@jax.custom_jvp
def _relu6(x):
  return jnp.minimum(jnp.maximum(x, 0), 6).astype(x.dtype)


@_relu6.defjvp
def _relu6_jvp(primals, tangents):
  (x,), (g,) = primals, tangents
  inside = (x > 0) & (x < 6)
  return _relu6(x), _masked(inside, g)


_relu6_float = jax.jit(_relu6)
_relu6_int = jax.jit(lambda x: jnp.clip(x, 0, 6).astype(x.dtype))


def relu6(x: ArrayLike) -> jax.Array:
  r"""Rectified linear unit capped at 6.

  .. math::
    \mathrm{relu6}(x) = \min(\max(x, 0), 6)

  Under differentiation we take relu6'(0) = 0 and relu6'(6) = 0: at both kinks
  the derivative of the clipped side (PyTorch's convention; jax.nn agrees).
  relu6(+inf) = 6 with derivative 0. A NaN input gives a NaN output and
  derivative 0; a NaN cotangent stays NaN. Reverse mode saves a 1-byte mask.

  Args:
    x: input array; floating and integer dtypes are kept.

  Returns:
    An array of the same shape and dtype as x.

  Examples:
    >>> import jax.numpy as jnp, jaxrelu
    >>> jaxrelu.relu6(jnp.array([-1.0, 3.0, 6.0, jnp.inf]))
    Array([0., 3., 6., 6.], dtype=float32)

  References:
    Krizhevsky, Convolutional Deep Belief Networks on CIFAR-10, 2010.
  """
  if type(x) is _checks.ARRAY_TYPE and x.dtype in _checks.FLOAT_DTYPES:
    return _relu6_float(x)  # The eager fast path: nothing to check.
  x = _checks.as_array('relu6', x)
  _checks.check_real_dtype('relu6', x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return _relu6_int(x)
  return _relu6_float(x)


# ----------------------------------------------------------------------------
# prelu: the shared core of leaky_relu, prelu and rrelu.


def _prelu_value(x, slope):
  cdt = compute_dtype(x.dtype)
  xc, s = x.astype(cdt), jnp.asarray(slope).astype(cdt)
  if type(slope) is float and slope != 0:
    neg = s * xc
  else:
    # slope * x is NaN for slope == 0 at x = -inf, where the limit is 0. The
    # floor lifts -inf to the lowest finite number where the slope is 0
    # (computed per slope, not per element when the slopes are per channel)
    # and keeps a NaN x NaN: one max per element, where testing x == -inf
    # took a compare, an and and a select (prelu_channel's bfloat16 forward
    # 1.13-1.29x jax.nn at 2^16-2^20, BUILD_NOTES.md).
    lowest = jnp.finfo(cdt).min
    floor = jnp.where(s == 0, jnp.asarray(lowest, cdt), -jnp.inf)
    neg = s * jnp.maximum(xc, floor)
  return jnp.where(xc > 0, xc, neg).astype(x.dtype)


@jax.custom_jvp
def _prelu(x, slope):
  return _prelu_value(x, slope)


def _prelu_jvp(primals, tangents):
  x, slope = primals
  x_dot, slope_dot = tangents
  y = _prelu(x, slope)
  cdt = compute_dtype(x.dtype)

  def x_term(x, slope, x_dot):
    s = jnp.asarray(slope).astype(cdt)
    return masked_scale(x > 0, x_dot.astype(cdt), s)

  def slope_term(x, slope_dot):
    xc = x.astype(cdt)
    return jnp.asarray(slope_dot).astype(cdt) * jnp.where(xc > 0, 0, xc)

  terms = []
  if not is_zero(x_dot) and not is_zero(slope_dot):
    # Both: recompute the mask in the backward pass so that only x is saved.
    # prevent_cse=False: no optimisation barrier, so XLA fuses the all-ones
    # cotangent of a sum into the rule instead of writing it out (with the
    # barrier, value_and_grad of sum(prelu) was 1.08-1.43x jnp.where's at
    # 2^16-2^24 float32; without, 0.84-1.02x, BUILD_NOTES.md).
    both = jax.checkpoint(
      lambda *a: x_term(*a[:3]) + slope_term(a[0], a[3]), prevent_cse=False
    )
    terms.append(both(x, slope, x_dot, slope_dot))
  elif not is_zero(x_dot):
    if np.size(slope) >= np.size(x):
      # One slope per element (rrelu in training): saving the derivative
      # itself (4 bytes) beats a mask plus the slopes (5 bytes).
      s = jnp.asarray(slope).astype(cdt)
      d = jnp.where(x > 0, jnp.ones((), cdt), s)
      terms.append(x_dot.astype(cdt) * d)
    else:
      terms.append(x_term(x, slope, x_dot))
  elif not is_zero(slope_dot):
    terms.append(slope_term(x, slope_dot))
  return y, sum_tangents(y, terms)


_prelu.defjvp(_prelu_jvp, symbolic_zeros=True)
_prelu_jit = jax.jit(_prelu)


# Defaults closed over: a one-argument jit dispatches ~0.4 us faster than a
# two-argument one, the gap to jax.nn's eager calls.
def _leaky_relu_default(x):
  return _prelu(x, 0.01)


_leaky_relu_default_jit = jax.jit(_leaky_relu_default)


def _rrelu_eval_default(x):
  return _prelu(x, (RRELU_LOWER + RRELU_UPPER) / 2)


_rrelu_eval_default_jit = jax.jit(_rrelu_eval_default)


# (x shape, hyperparameter shape) pairs known to broadcast to x's shape:
# jnp.broadcast_shapes costs ~4 us, a third of an eager call.
_SHAPES_OK: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()


def check_slope_shape(fn: str, name: str, x: jax.Array, slope: jax.Array):
  if type(slope) is float or type(slope) is int:
    return
  shapes = (x.shape, jnp.shape(slope))
  if shapes in _SHAPES_OK:
    return
  try:
    shape = jnp.broadcast_shapes(*shapes)
  except ValueError:
    shape = None
  if shape == x.shape:
    if len(_SHAPES_OK) >= 1024:
      _SHAPES_OK.clear()
    _SHAPES_OK.add(shapes)
    return
  if shape != x.shape:
    raise ValueError(
      f'{fn}: {name} of shape {jnp.shape(slope)} does not broadcast '
      f'against x of shape {x.shape}. Pass a scalar, or an array that '
      'broadcasts to x without enlarging it: shape (C,) for channels-last '
      'x of shape (..., C), shape (C, 1, 1) for x of shape (N, C, H, W).'
    )


def leaky_relu(x: ArrayLike, negative_slope: ArrayLike = 0.01) -> jax.Array:
  r"""Leaky rectified linear unit.

  .. math::
    \mathrm{leaky\_relu}(x) = \begin{cases} x, & x > 0 \\
      \mathrm{negative\_slope} \cdot x, & x \le 0 \end{cases}

  Under differentiation we take leaky_relu'(0) = negative_slope, the
  derivative of the left side (PyTorch's convention; jax.nn takes 1). A NaN
  input gives a NaN output and derivative negative_slope; a NaN cotangent
  stays NaN. Reverse mode saves a 1-byte mask per element. The slope is an
  ordinary input: gradients flow to it, d/dslope = min(x, 0).

  Args:
    x: input array. Integer inputs are promoted to the default float dtype.
    negative_slope: slope for x <= 0, a scalar or an array broadcastable
      against x. A traced value is not checked.

  Returns:
    An array of the same shape and dtype as x (after integer promotion).

  Raises:
    ValueError: for a concrete non-finite negative_slope (any element, for
      an array), or a shape that does not broadcast against x.
    TypeError: for x None or not numeric, or a bool, complex or non-numeric
      negative_slope (even traced).

  Examples:
    >>> import jax, jax.numpy as jnp, jaxrelu
    >>> jaxrelu.leaky_relu(jnp.array([-2.0, 0.0, 3.0]), 0.5)
    Array([-1.,  0.,  3.], dtype=float32)
    >>> jax.grad(jaxrelu.leaky_relu)(0.0)
    Array(0.01, dtype=float32, weak_type=True)

  References:
    Maas, Hannun & Ng, Rectifier Nonlinearities Improve Neural Network
    Acoustic Models, ICML 2013.
  """
  if type(x) is _checks.ARRAY_TYPE and x.dtype in _checks.FLOAT_DTYPES:
    # The eager fast paths: a float array and a finite Python float, or an
    # array that passed the checks before, need no other check (the slow
    # path below would pass them unchanged).
    if type(negative_slope) is float:
      if negative_slope == 0.01:
        return _leaky_relu_default_jit(x)
      if abs(negative_slope) < _checks.OVERFLOW_AT[x.dtype]:
        return _prelu_jit(x, _checks.eager_scalar(negative_slope, x))
    elif _checks.accepted(negative_slope, x):
      return _prelu_jit(x, negative_slope)
  x = as_float('leaky_relu', x)
  negative_slope = _checks.check_finite(
    'leaky_relu', 'negative_slope', negative_slope, compute_dtype(x.dtype)
  )
  check_slope_shape('leaky_relu', 'negative_slope', x, negative_slope)
  _checks.accept(negative_slope, x)
  return _prelu_jit(x, _checks.eager_scalar(negative_slope, x))


def prelu(x: ArrayLike, negative_slope: ArrayLike) -> jax.Array:
  r"""Parametric rectified linear unit with a learnable slope.

  .. math::
    \mathrm{prelu}(x, a) = \begin{cases} x, & x > 0 \\ a x, & x \le 0
      \end{cases}
    \qquad \frac{\partial}{\partial a} = \min(x, 0)

  The slope ``a`` is an array broadcastable against x without enlarging it:
  a scalar (one shared slope) or one slope per channel, e.g. shape (C,) for
  channels-last input. Gradients flow to it; its cotangent is summed over the
  broadcast axes. Under differentiation we take prelu'(0) = a (left side,
  PyTorch's convention) and d/da = 0 at x = 0; the mixed derivative
  d^2/(dx da) is 1 for x <= 0 (at 0 too: the left side, where y = a x) and
  0 for x > 0, in either order. A NaN input gives a NaN output and
  derivative a. The output has x's dtype; the slope is cast to it.

  Reverse mode saves a 1-byte mask per element when only x is differentiated,
  and x itself (the mask is recomputed) when the slope is differentiated too.

  Args:
    x: input array. Integer inputs are promoted to the default float dtype.
    negative_slope: the slope array. A traced value is not checked.

  Returns:
    An array of the same shape and dtype as x.

  Raises:
    ValueError: for a concrete non-finite negative_slope (any element), or a
      shape that does not broadcast against x (checked even under jit).
    TypeError: for x None or not numeric, or a bool, complex or non-numeric
      negative_slope (even traced).

  Examples:
    >>> import jax.numpy as jnp, jaxrelu
    >>> x = jnp.array([[-1.0, -1.0], [2.0, -4.0]])
    >>> jaxrelu.prelu(x, jnp.array([0.25, 0.5]))
    Array([[-0.25, -0.5 ],
           [ 2.  , -2.  ]], dtype=float32)

  References:
    He, Zhang, Ren & Sun, Delving Deep into Rectifiers, ICCV 2015.
  """
  if type(x) is _checks.ARRAY_TYPE and x.dtype in _checks.FLOAT_DTYPES:
    # The eager fast paths, as in leaky_relu.
    if type(negative_slope) is float:
      if abs(negative_slope) < _checks.OVERFLOW_AT[x.dtype]:
        return _prelu_jit(x, _checks.eager_scalar(negative_slope, x))
    elif _checks.accepted(negative_slope, x):
      return _prelu_jit(x, negative_slope)
  x = as_float('prelu', x)
  negative_slope = _checks.check_finite(
    'prelu', 'negative_slope', negative_slope, compute_dtype(x.dtype)
  )
  if type(negative_slope) is int:
    negative_slope = float(negative_slope)
  elif not isinstance(negative_slope, jax.Array | float):
    negative_slope = jnp.asarray(negative_slope)
  check_slope_shape('prelu', 'negative_slope', x, negative_slope)
  _checks.accept(negative_slope, x)
  return _prelu_jit(x, _checks.eager_scalar(negative_slope, x))


# ----------------------------------------------------------------------------
# rrelu


def _unit_interval(v):
  return (v >= 0) & (v <= 1)


def check_rrelu_bounds(lower, upper, fn: str = 'rrelu') -> tuple:
  """Checks rrelu's bounds; returns them (Python sequences as arrays).

  Raises:
    TypeError: for a bound that is not a real number or array.
    ValueError: if a concrete bound (any element of an array) is outside
      [0, 1], or lower > upper anywhere.
  """
  accepted = 'in [0, 1] (accepted: 0 <= lower <= upper <= 1)'
  lower, lo = _checks.hyperparameter(fn, 'lower', lower)
  upper, hi = _checks.hyperparameter(fn, 'upper', upper)
  _checks.check_values(fn, 'lower', lo, _unit_interval, accepted)
  _checks.check_values(fn, 'upper', hi, _unit_interval, accepted)
  if lo is None or hi is None:
    return lower, upper
  if isinstance(lo, float) and isinstance(hi, float):
    if lo > hi:
      raise ValueError(
        f'{fn}: lower must not exceed upper, got lower={lo!r} > '
        f'upper={hi!r} (accepted: 0 <= lower <= upper <= 1).'
      )
    return lower, upper
  try:
    lo, hi = np.broadcast_arrays(lo, hi)
  except ValueError:
    raise ValueError(
      f'{fn}: lower of shape {np.shape(lo)} and upper of shape '
      f'{np.shape(hi)} do not broadcast against each other.'
    ) from None
  bad = np.argwhere(lo > hi)
  if bad.size:
    i = tuple(int(j) for j in bad[0])
    at = f'[{", ".join(map(str, i))}]' if i else ''
    raise ValueError(
      f'{fn}: lower must not exceed upper, got lower{at} = {lo[i]!s} > '
      f'upper{at} = {hi[i]!s} (accepted: 0 <= lower <= upper <= 1).'
    )
  return lower, upper


@jax.jit
def _rrelu_train(x, key, lower, upper):
  cdt = compute_dtype(x.dtype)
  u = jax.random.uniform(key, x.shape, cdt)
  lo, hi = jnp.asarray(lower, cdt), jnp.asarray(upper, cdt)
  return _prelu(x, lo + (hi - lo) * u)


def rrelu(
  x: ArrayLike,
  key: jax.Array | None = None,
  *,
  lower: ArrayLike = RRELU_LOWER,
  upper: ArrayLike = RRELU_UPPER,
  deterministic: bool = False,
) -> jax.Array:
  r"""Randomized leaky rectified linear unit.

  .. math::
    \mathrm{rrelu}(x) = \begin{cases} x, & x > 0 \\ a x, & x \le 0
      \end{cases}, \qquad a \sim U(\mathrm{lower}, \mathrm{upper})
      \text{ per element (training)}, \quad
      a = \tfrac{\mathrm{lower} + \mathrm{upper}}{2} \text{ (evaluation)}

  In training (``deterministic=False``) every element draws its own slope
  from ``key``; the same key gives the same slopes. In evaluation
  (``deterministic=True``) the slope is (lower + upper) / 2 and no key is
  needed. Under differentiation we take rrelu'(0) = the slope used (left side,
  PyTorch's convention). Gradients flow to lower and upper through the
  reparameterisation a = lower + (upper - lower) u.

  Test-time slope. The mean (lower + upper) / 2 = 11/48 ~ 0.2292 is E[a]
  under this parameterisation, so the evaluation output equals the expected
  training output; it is also PyTorch's choice. The RReLU paper (Xu et al.
  2015) parameterises the negative side as x / b with b ~ U(3, 8) and uses
  1 / 5.5 ~ 0.1818 at test time, which is 1 / E[b]; the true mean of that
  slope, E[1 / b] = ln(8/3) / 5 ~ 0.1962, lies between the two. Pass
  ``lower``/``upper`` to recover other conventions.

  Reverse mode saves a 1-byte mask per element in evaluation and the
  derivative (one element of x's compute dtype) in training.

  Args:
    x: input array. Integer inputs are promoted to the default float dtype.
    key: a PRNG key (``jax.random.key`` or a raw uint32 key), required in
      training.
    lower: lower bound of the slope, in [0, 1]: a scalar or an array that
      broadcasts against x without enlarging it.
    upper: upper bound of the slope, in [lower, 1], shaped like lower.
    deterministic: a Python bool; if True use the fixed evaluation slope and
      ignore key. It selects the computation, so it must be static under
      jit.

  Returns:
    An array of the same shape and dtype as x.

  Raises:
    ValueError: if a concrete ``lower`` or ``upper`` (any element, for an
      array) is outside [0, 1] or lower > upper, if a bound's shape does not
      broadcast against x, or if ``key`` is None in training. Traced bounds
      are not checked: bad ones give slopes outside the interval, not an
      error.
    TypeError: for a bool, complex or non-numeric bound (even traced), a
      ``deterministic`` that is not a Python bool (e.g. "no" or a tracer),
      or a ``key`` that is not a PRNG key.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxrelu
    >>> jaxrelu.rrelu(jnp.array([-48.0, 2.0]), deterministic=True)
    Array([-11.,   2.], dtype=float32)
    >>> y = jaxrelu.rrelu(-jnp.ones(1000), jax.random.key(0))
    >>> bool(jnp.all((-y >= 1 / 8) & (-y <= 1 / 3)))
    True

  References:
    Xu, Wang, Chen & Li, Empirical Evaluation of Rectified Activations in
    Convolutional Network, 2015.
  """
  if (
    deterministic is True
    and lower is RRELU_LOWER
    and upper is RRELU_UPPER
    and type(x) is _checks.ARRAY_TYPE
    and x.dtype in _checks.FLOAT_DTYPES
  ):
    return _rrelu_eval_default_jit(x)  # The eager fast path.
  x = as_float('rrelu', x)
  _checks.check_bool('rrelu', 'deterministic', deterministic)
  lower, upper = check_rrelu_bounds(lower, upper)
  check_slope_shape('rrelu', 'lower', x, lower)
  check_slope_shape('rrelu', 'upper', x, upper)
  if deterministic:
    # Python bounds give a float64 mean; array bounds stay differentiable.
    return _prelu_jit(x, (lower + upper) / 2)
  if key is None:
    raise ValueError(
      'rrelu: key is None in training mode. Pass key=jax.random.key(...), '
      'or deterministic=True for the fixed evaluation slope.'
    )
  _checks.check_key('rrelu', key)
  return _rrelu_train(x, key, lower, upper)


# ----------------------------------------------------------------------------
# elu, selu and celu: one exp per element


def _taylor_terms(dtype) -> int:
  # Terms of expm1(t) / t = sum_k t^k / (k + 1)! needed on |t| <= ln 2: the
  # first one left out, |t|^n / (n + 1)!, is below a fifth of an ulp.
  return 9 if jnp.finfo(dtype).bits <= 32 else 17


_LN2 = float(np.log(2.0))
# exp(t) = exp(t + _SHIFT) * exp(-_SHIFT) for t < -_SHIFT, where t + _SHIFT
# is exact: alpha * exp(t) stays normal when exp(t) alone would not.
_SHIFT = 32.0


def _exp_parts(t):
  """expm1(t) and exp(t) for t <= 0 (or -inf), with one exp.

  Returns (small, p, e, scale): exp(t) is e * scale, and expm1(t) is t * p
  where `small` (|t| <= ln 2), else e * scale - 1. Near 0, expm1 is a Taylor
  polynomial, so t * p never cancels; elsewhere e * scale <= 1/2, so
  e * scale - 1 is within about an ulp. Below -32, e = exp(t + 32) and
  scale = exp(-32), so alpha * e * scale does not underflow before the
  multiply while the result is normal. One exp and a short polynomial cost
  less than XLA's expm1 (BUILD_NOTES.md).
  """
  dtype = t.dtype
  tail = t < -_SHIFT
  e = jnp.exp(jnp.where(tail, t + jnp.asarray(_SHIFT, dtype), t))
  one = jnp.ones((), dtype)
  scale = jnp.where(tail, jnp.asarray(np.exp(-_SHIFT), dtype), one)
  small, p = _expm1_taylor(t)
  return small, p, e, scale


def _expm1_taylor(t):
  """(small, p): expm1(t) = t * p where `small` (|t| <= ln 2)."""
  dtype = t.dtype
  coeffs = [1.0 / math.factorial(k + 1) for k in range(_taylor_terms(dtype))]
  p = jnp.asarray(coeffs[-1], dtype)
  for c in reversed(coeffs[:-1]):
    p = p * t + jnp.asarray(c, dtype)
  # |t|: celu with a negative alpha has t > 0, where e - 1 cannot cancel.
  return jnp.abs(t) < _LN2, p


def _elu_value(x, m, pos_slope):
  """elu's and selu's value alone, for calls that differentiate nothing.

  The same formula as `_elu_parts` (m * exp(x) - m away from 0, the Taylor
  polynomial near 0) without the slope's tail shift, which only keeps
  m * exp(x) normal where exp(x) alone is not: there m * exp(x) is far
  below half an ulp of m, and the value rounds to -m either way. Five
  operations fewer per element: at 1024 float32 elements the call costs
  what jax.nn's does (BUILD_NOTES.md).
  """
  cdt = compute_dtype(x.dtype)
  xc, m = x.astype(cdt), jnp.asarray(m).astype(cdt)
  pos = xc > 0
  xneg = _neg_part(xc, pos)
  small, p = _expm1_taylor(xneg)
  neg = jnp.where(small, m * (xneg * p), m * jnp.exp(xneg) - m)
  value = jnp.where(pos, jnp.asarray(pos_slope, cdt) * xc, neg)
  return value.astype(x.dtype)


def _neg_part(xc, pos):
  # Guard the branch not taken so exp cannot overflow at large x.
  return jnp.where(pos, jnp.zeros((), xc.dtype), xc)


def _elu_core(xc, m, pos_slope):
  """elu's and selu's shared pieces, x in its compute dtype.

  m is the negative side's scale (alpha for elu, lambda * alpha for selu),
  pos_slope the positive side's (1, lambda). The slope, pos_slope for
  x > 0 and m * exp(x) otherwise, is computed first and the value from it
  (m * exp(x) - m away from 0, a Taylor polynomial near 0): the slope is
  then what the forward pass keeps, so reverse mode saves the slope and the
  output and nothing else. XLA keeps an expensive value read by two
  fusions as its own array; with the exp itself as that value, the
  backward pass read it and the pre-activation, and a training step held
  three arrays per layer instead of two (an MLP step at 16 x 2048, batch
  1024: 264 MiB, jax.nn's figure, instead of 136;
  tests/experiments/benchmark_activations/test_residual_memory.py pins it).
  """
  pos = xc > 0
  xneg = _neg_part(xc, pos)
  small, p, e, scale = _exp_parts(xneg)
  exp_x = e * scale
  slope = jnp.where(pos, jnp.asarray(pos_slope, xc.dtype), (m * scale) * e)
  return pos, xneg, small, p, slope, exp_x


def _elu_parts(x, m, pos_slope):
  """Value, mask, compute-dtype x, expm1(x) and m."""
  cdt = compute_dtype(x.dtype)
  xc, m = x.astype(cdt), jnp.asarray(m).astype(cdt)
  pos, xneg, small, p, slope, exp_x = _elu_core(xc, m, pos_slope)
  neg = jnp.where(small, m * (xneg * p), slope - m)
  value = jnp.where(pos, jnp.asarray(pos_slope, cdt) * xc, neg)
  em = jnp.where(small, xneg * p, exp_x - jnp.ones((), cdt))
  return value.astype(x.dtype), pos, xc, em, m


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _elu_slope(xc, m, pos_slope):
  """pos_slope for x > 0, else m * exp(x): elu's derivative, x compute dtype.

  Its own rule makes the second derivative PyTorch's: m * exp(x) for x < 0
  and 0 at the kink (PyTorch's double backward masks with x < 0).
  """
  return _elu_core(xc, m, pos_slope)[4]


@_elu_slope.defjvp
def _elu_slope_jvp(pos_slope, primals, tangents):
  xc, m = primals
  x_dot, m_dot = tangents
  pos, _, _, _, slope, exp_x = _elu_core(xc, m, pos_slope)
  zero = jnp.zeros((), xc.dtype)
  # 0 for x >= 0 (the kink's left side, PyTorch's); a NaN x is not >= 0 and
  # takes the slope, which is NaN there: no order hides a NaN input.
  tangent = x_dot * jnp.where(xc >= 0, zero, slope)
  tangent = tangent + m_dot * jnp.where(pos, zero, exp_x)
  return slope, tangent


@jax.custom_jvp
def _elu(x, alpha):
  # Forward only; under differentiation the value comes from the jvp rule.
  return _elu_value(x, alpha, 1.0)


def _elu_jvp(primals, tangents):
  x, alpha = primals
  x_dot, alpha_dot = tangents
  y, pos, xc, em, a = _elu_parts(x, alpha, 1.0)
  cdt = xc.dtype
  terms = []
  if not is_zero(x_dot):
    terms.append(x_dot.astype(cdt) * _elu_slope(xc, a, 1.0))
  if not is_zero(alpha_dot):
    zero = jnp.zeros((), cdt)
    terms.append(jnp.asarray(alpha_dot).astype(cdt) * jnp.where(pos, zero, em))
  return y, sum_tangents(y, terms)


_elu.defjvp(_elu_jvp, symbolic_zeros=True)
_elu_jit = jax.jit(_elu)


def _elu_default(x):
  return _elu(x, 1.0)


_elu_default_jit = jax.jit(_elu_default)


def elu(x: ArrayLike, alpha: ArrayLike = 1.0) -> jax.Array:
  r"""Exponential linear unit.

  .. math::
    \mathrm{elu}(x) = \begin{cases} x, & x > 0 \\
      \alpha (e^x - 1), & x \le 0 \end{cases}
    \qquad \mathrm{elu}'(x) = \alpha e^x \ (x \le 0)

  Under differentiation we take elu'(0) = alpha, the derivative of the left
  side (PyTorch's convention; for alpha = 1 both sides agree), and
  elu''(0) = 0 (PyTorch's double backward); elu''(x) = alpha e^x for x < 0.
  Value and derivative are within 4 ulp of the exact ones down to the
  smallest normal number, for alpha up to e^32 (jax.nn.elu's derivative,
  y + alpha,
  is 44% off at x = -17 in float32 and 0 below -18). elu(-inf) = -alpha,
  derivative 0. A NaN input gives a NaN output and NaN derivatives at every
  order. Gradients flow to alpha too: d/dalpha = expm1(x) for x <= 0.
  Reverse mode saves the derivative, one element of x's compute dtype
  (float32 for inputs narrower than float32).

  Args:
    x: input array. Integer inputs are promoted to the default float dtype.
    alpha: the negative saturation value, a scalar or an array broadcastable
      against x. A traced value is not checked.

  Returns:
    An array of the same shape and dtype as x.

  Raises:
    ValueError: for a concrete non-finite alpha (any element, for an array),
      or a shape that does not broadcast against x.
    TypeError: for x None or not numeric, or a bool, complex or non-numeric
      alpha (even traced).

  Examples:
    >>> import jax, jax.numpy as jnp, jaxrelu
    >>> jaxrelu.elu(jnp.array([-jnp.inf, 0.0, 2.0]))
    Array([-1.,  0.,  2.], dtype=float32)
    >>> jax.grad(jaxrelu.elu)(-20.0)  # exp(-20) = 2.0611536e-09
    Array(2.0611537e-09, dtype=float32, weak_type=True)
    >>> jax.grad(jax.nn.elu)(-20.0)
    Array(0., dtype=float32, weak_type=True)

  References:
    Clevert, Unterthiner & Hochreiter, Fast and Accurate Deep Network
    Learning by Exponential Linear Units (ELUs), ICLR 2016.
  """
  if type(x) is _checks.ARRAY_TYPE and x.dtype in _checks.FLOAT_DTYPES:
    # The eager fast paths, as in leaky_relu.
    if type(alpha) is float:
      if alpha == 1.0:
        return _elu_default_jit(x)
      if abs(alpha) < _checks.OVERFLOW_AT[x.dtype]:
        return _elu_jit(x, _checks.eager_scalar(alpha, x))
    elif _checks.accepted(alpha, x):
      return _elu_jit(x, alpha)
  x = as_float('elu', x)
  alpha = _checks.check_finite('elu', 'alpha', alpha, compute_dtype(x.dtype))
  check_slope_shape('elu', 'alpha', x, alpha)
  _checks.accept(alpha, x)
  return _elu_jit(x, _checks.eager_scalar(alpha, x))


@jax.custom_jvp
def _selu(x):
  return _elu_value(x, _SELU_SCALE_ALPHA, SELU_SCALE)


@_selu.defjvp
def _selu_jvp(primals, tangents):
  (x,), (g,) = primals, tangents
  y, _, xc, _, m = _elu_parts(x, _SELU_SCALE_ALPHA, SELU_SCALE)
  d = _elu_slope(xc, m, SELU_SCALE)
  return y, (g.astype(xc.dtype) * d).astype(y.dtype)


_selu_jit = jax.jit(_selu)


def selu(x: ArrayLike) -> jax.Array:
  r"""Scaled exponential linear unit.

  .. math::
    \mathrm{selu}(x) = \lambda \begin{cases} x, & x > 0 \\
      \alpha (e^x - 1), & x \le 0 \end{cases}

  with alpha = 1.6732632423543772848170429916717 and
  lambda = 1.0507009873554804934193349852946 (Klambauer et al. 2017), the
  values that make (mean 0, variance 1) a stable fixed point for LeCun-normal
  weights. Under differentiation we take selu'(0) = lambda * alpha, the
  derivative of the left side (PyTorch's convention), and selu''(0) = 0
  (PyTorch's double backward). The negative side's derivative is
  lambda * alpha * exp(x), within 4 ulp down to the smallest normal number.
  selu(-inf) = -lambda * alpha. A NaN input gives a NaN output and NaN
  derivatives at every order. Inputs narrower than float32 are computed in
  float32 and rounded once (jax.nn.selu in bfloat16 is 0.7% off at x = -5).

  Args:
    x: input array. Integer inputs are promoted to the default float dtype.

  Returns:
    An array of the same shape and dtype as x.

  Examples:
    >>> import jax.numpy as jnp, jaxrelu
    >>> jaxrelu.selu(jnp.array([-jnp.inf, 1.0]))
    Array([-1.7580993,  1.050701 ], dtype=float32)

  References:
    Klambauer, Unterthiner, Mayr & Hochreiter, Self-Normalizing Neural
    Networks, NeurIPS 2017.
  """
  if type(x) is _checks.ARRAY_TYPE and x.dtype in _checks.FLOAT_DTYPES:
    return _selu_jit(x)
  return _selu_jit(as_float('selu', x))


# ----------------------------------------------------------------------------
# celu


def _celu_t(xc, a, pos):
  """(x_neg, t, r): t ~ x_neg / alpha and what its rounding lost, r."""
  xneg = _neg_part(xc, pos)
  # x * (1 / alpha): one division per alpha, not per element. Its rounding,
  # and the product's, are undone by r (_quotient_residual).
  inv_a = jnp.ones((), xc.dtype) / a
  t = xneg * inv_a
  return xneg, t, _quotient_residual(xneg, a, t, inv_a)


def _celu_core(xc, a):
  """celu's shared pieces: the slope first, as in `_elu_core`.

  The forward pass then keeps the slope, not the exp and x.
  """
  pos = xc > 0
  xneg, t, r = _celu_t(xc, a, pos)
  small, p, e, scale = _exp_parts(t)
  exp_t = e * scale
  # exp(x / alpha) = exp(t) * (1 + r).
  # exp_t is inf where t > 0 overflows (a negative alpha); inf * r is NaN.
  corrected = jnp.where(jnp.isinf(exp_t), exp_t, exp_t + exp_t * r)
  slope = jnp.where(pos, jnp.ones((), xc.dtype), corrected)
  return pos, xneg, t, small, p, slope


def _celu_parts(x, alpha):
  cdt = compute_dtype(x.dtype)
  xc, a = x.astype(cdt), jnp.asarray(alpha).astype(cdt)
  pos, xneg, t, small, p, slope = _celu_core(xc, a)
  # Near 0, alpha * expm1(t) = x * p: no rounding of x / alpha, no underflow
  # of t for tiny x and large alpha.
  em = jnp.where(small, t * p, slope - jnp.ones((), cdt))
  value = jnp.where(pos, xc, jnp.where(small, xneg * p, a * em))
  return value.astype(x.dtype), pos, xc, a, t, em


def _split(v):
  """Veltkamp's split: v = hi + lo, each half of the significand."""
  factor = 2.0 ** -(-jnp.finfo(v.dtype).nmant // 2) + 1
  c = v * jnp.asarray(factor, v.dtype)
  hi = c - (c - v)
  return hi, v - hi


def _quotient_residual(num, den, quot, inv_den):
  """(num - den * quot) / den: what rounding quot ~ num / den lost.

  den * quot's rounding error is recovered exactly (Dekker's product), so
  exp(quot) * (1 + residual) is exp(num / den) to a few ulp even where
  |quot| is large: rounding the quotient alone costs |quot| / 2 ulp.
  Where exp(quot) underflows, or den is too large to split, it is 0.
  """
  dtype = quot.dtype
  zero, one = jnp.zeros((), dtype), jnp.ones((), dtype)
  # Guarded apart, so that a scalar alpha is split once, not per element.
  den_ok = jnp.abs(den) < jnp.asarray(
    2.0 ** (jnp.finfo(dtype).maxexp // 2), dtype
  )
  den = jnp.where(den_ok, den, one)
  ok = den_ok & (quot > jnp.asarray(-2.0 * np.log(jnp.finfo(dtype).max), dtype))
  num, quot = jnp.where(ok, num, zero), jnp.where(ok, quot, zero)
  prod = den * quot
  den_hi, den_lo = _split(den)
  quot_hi, quot_lo = _split(quot)
  error = (
    (den_hi * quot_hi - prod) + den_hi * quot_lo + den_lo * quot_hi
  ) + den_lo * quot_lo
  return ((num - prod) - error) * inv_den


def _celu_slope_parts(xc, a):
  pos, _, t, _, _, slope = _celu_core(xc, a)
  return pos, t, slope


@jax.custom_jvp
def _celu_slope(xc, a):
  """1 for x > 0, else exp(x / alpha): celu's derivative, x compute dtype.

  Its own rule makes the second derivative PyTorch's: exp(x / alpha) / alpha
  for x < 0 and 0 at the kink.
  """
  return _celu_slope_parts(xc, a)[2]


@_celu_slope.defjvp
def _celu_slope_jvp(primals, tangents):
  xc, a = primals
  x_dot, a_dot = tangents
  pos, t, slope = _celu_slope_parts(xc, a)
  zero = jnp.zeros((), xc.dtype)
  tangent = x_dot * jnp.where(xc >= 0, zero, slope / a)  # NaN x: NaN
  # d/dalpha exp(x / alpha) = -t exp(t) / alpha; t exp(t) -> 0 as t -> -inf.
  t_slope = jnp.where(jnp.isneginf(t), zero, t * slope)
  tangent = tangent - a_dot * jnp.where(pos, zero, t_slope / a)
  return slope, tangent


@jax.custom_jvp
def _celu(x, alpha):
  # Forward only: the value needs no corrected exp (its error in t is damped
  # by exp(t) <= 1/2 where it is used), so skip the correction; under
  # differentiation the value comes from the corrected slope instead, and
  # the two may differ in the last bit.
  cdt = compute_dtype(x.dtype)
  xc, a = x.astype(cdt), jnp.asarray(alpha).astype(cdt)
  pos = xc > 0
  xneg = _neg_part(xc, pos)
  t = xneg * (jnp.ones((), cdt) / a)
  # No tail shift, as in `_elu_value`: the value rounds to -alpha where
  # exp(t) leaves the normal range.
  small, p = _expm1_taylor(t)
  far = jnp.exp(t) - jnp.ones((), cdt)
  value = jnp.where(pos, xc, jnp.where(small, xneg * p, a * far))
  return value.astype(x.dtype)


def _celu_jvp(primals, tangents):
  x, alpha = primals
  x_dot, alpha_dot = tangents
  y, pos, xc, a, t, em = _celu_parts(x, alpha)
  cdt = xc.dtype
  terms = []
  slope = _celu_slope(xc, a)
  if not is_zero(x_dot):
    terms.append(x_dot.astype(cdt) * slope)
  if not is_zero(alpha_dot):
    # d/dalpha [alpha expm1(x / alpha)] = expm1(t) - t exp(t); t exp(t) -> 0
    # as t -> -inf, where the product itself is NaN.
    zero = jnp.zeros((), cdt)
    t_exp_t = jnp.where(jnp.isneginf(t), zero, t * slope)
    terms.append(
      jnp.asarray(alpha_dot).astype(cdt) * jnp.where(pos, zero, em - t_exp_t)
    )
  return y, sum_tangents(y, terms)


_celu.defjvp(_celu_jvp, symbolic_zeros=True)
_celu_jit = jax.jit(_celu)


def _celu_default(x):
  # celu at alpha = 1 is elu at alpha = 1: x / 1 is exact, so there is
  # nothing to correct, and elu's program does less work per element (at
  # 1024 float32 elements XLA split celu's value_and_grad fusion over both
  # cores, 1.4-1.7x jax.nn's time; BUILD_NOTES.md). The same values,
  # derivatives and kinks; its own name, so unit traces still say celu.
  return _elu(x, 1.0)


_celu_default_jit = jax.jit(_celu_default)


def _nonzero(v):
  return v != 0


def celu(x: ArrayLike, alpha: ArrayLike = 1.0) -> jax.Array:
  r"""Continuously differentiable exponential linear unit.

  .. math::
    \mathrm{celu}(x) = \begin{cases} x, & x > 0 \\
      \alpha (e^{x / \alpha} - 1), & x \le 0 \end{cases}
    \qquad \mathrm{celu}'(x) = e^{x/\alpha} \ (x \le 0)

  Under differentiation we take celu'(0) = 1; both sides agree there, which
  is the point of CELU. celu''(0) = 0 (PyTorch's double backward) and
  celu''(x) = exp(x / alpha) / alpha for x < 0. The negative side's
  derivative is exp(x / alpha), with the rounding of x / alpha corrected, so
  value and derivative are within 4 ulp of the exact ones for every x and
  alpha, down to the smallest normal number. celu(-inf) = -alpha
  for alpha > 0. A NaN input gives a NaN output and NaN derivatives at every
  order. Gradients flow to alpha too. Reverse mode saves the derivative,
  one element of x's compute dtype.

  Args:
    x: input array. Integer inputs are promoted to the default float dtype.
    alpha: nonzero, finite; a scalar or an array broadcastable against x.
      A traced alpha is not checked: alpha = 0 gives 0 for x < 0 (the
      alpha -> 0+ limit, relu) and NaN at x = 0.

  Returns:
    An array of the same shape and dtype as x.

  Raises:
    ValueError: for a concrete alpha (any element, for an array) that is 0
      or not finite, or a shape that does not broadcast against x.
    TypeError: for x None or not numeric, or a bool, complex or non-numeric
      alpha (even traced).

  Examples:
    >>> import jax, jax.numpy as jnp, jaxrelu
    >>> jaxrelu.celu(jnp.array([-jnp.inf, 0.0, 2.0]), alpha=0.5)
    Array([-0.5,  0. ,  2. ], dtype=float32)
    >>> jax.grad(jaxrelu.celu)(0.0)
    Array(1., dtype=float32, weak_type=True)

  References:
    Barron, Continuously Differentiable Exponential Linear Units, 2017.
  """
  if type(x) is _checks.ARRAY_TYPE and x.dtype in _checks.FLOAT_DTYPES:
    # The eager fast paths, as in leaky_relu.
    if type(alpha) is float:
      if alpha == 1.0:
        return _celu_default_jit(x)
      if (
        _checks.SMALLEST_NORMAL[x.dtype]
        <= abs(alpha)
        < _checks.OVERFLOW_AT[x.dtype]
      ):
        return _celu_jit(x, _checks.eager_scalar(alpha, x))
    elif _checks.accepted(alpha, x):
      return _celu_jit(x, alpha)
  x = as_float('celu', x)
  cdt = compute_dtype(x.dtype)
  alpha, values = _checks.hyperparameter('celu', 'alpha', alpha)
  _checks.check_values(
    'celu', 'alpha', values, _checks.finite, 'a finite number'
  )
  _checks.check_values(
    'celu',
    'alpha',
    values,
    _nonzero,
    'nonzero (accepted: any finite alpha != 0)',
  )
  _checks.check_values(
    'celu', 'alpha', values, _checks.finite_in(cdt), _checks.finite_message(cdt)
  )
  # x / alpha is computed as x * (1 / alpha): a subnormal alpha is 0 to
  # XLA on CPU (denormals are flushed) and 1 / alpha overflows.
  tiny = float(jnp.finfo(cdt).tiny)
  _checks.check_values(
    'celu',
    'alpha',
    values,
    lambda v: np.abs(np.asarray(v, np.float64)) >= tiny,
    f'normal in {cdt.name}, the dtype it is computed in (smallest: '
    f'{_checks.format_in(tiny, cdt)}; smaller values are flushed to 0)',
  )
  check_slope_shape('celu', 'alpha', x, alpha)
  _checks.accept(alpha, x)
  if type(alpha) is float and alpha == 1.0:
    return _celu_default_jit(x)
  return _celu_jit(x, _checks.eager_scalar(alpha, x))
