r"""SELU's self-normalization theory (Klambauer et al. 2017, section 3).

Activations x with mean ``mean`` (mu) and variance ``var`` (nu) feed a unit
z = w^T x. With omega = sum(w) (n times the mean weight) and tau = sum(w^2)
(n times the mean squared weight), the net input is approximately
N(mu * omega, nu * tau), and the unit's output y = selu(z) has

.. math::
  \tilde\mu = \mathbb{E}[y], \qquad \tilde\nu = \mathrm{Var}[y].

The map g: (mu, nu) -> (mu~, nu~) is the paper's eqs. (4)-(5). Here it is
written as Gaussian integrals of the two branches,

.. math::
  \mathbb{E}[z; z > 0] = m\Phi(m/s) + s\varphi(m/s), \quad
  \mathbb{E}[e^{kz}; z \le 0] = e^{km + k^2 s^2/2}\,
  \Phi\!\left(-\frac{m + k s^2}{s}\right),

with Phi = (1 + erf(u / sqrt 2)) / 2 evaluated as ``exp(log_ndtr(.))``, so
large variances neither overflow nor cancel. It is equal to the paper's
erf/erfc form, and is differentiable and jittable. LeCun-normal weights give
omega = 0 and tau = 1, the defaults here.

Everything takes and returns jax arrays in the enabled precision; for the
paper's constants to 1e-12, enable float64 (``jax.enable_x64``).
`selu_parameters` does that itself and returns Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from jax.typing import ArrayLike

from jaxrelu import _activations, _checks

__all__ = (
  'SELU_ALPHA',
  'SELU_SCALE',
  'activation_moments',
  'alpha_dropout_affine',
  'alpha_dropout_moments',
  'correlation_fixed_point',
  'correlation_map',
  'fixed_point',
  'gaussian_expectation',
  'moment_map_jacobian',
  'selu_backward_gain',
  'selu_moments',
  'selu_parameters',
)

SELU_ALPHA = _activations.SELU_ALPHA
SELU_SCALE = _activations.SELU_SCALE

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gaussian_parts(m, s):
  """Partial moments of z ~ N(m, s^2) over z > 0 and z <= 0."""
  u = m / s
  pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * u * u)
  p_pos = jnp.exp(log_ndtr(u))
  p_neg = jnp.exp(log_ndtr(-u))
  z_pos = m * p_pos + s * pdf  # E[z; z > 0]
  z2_pos = (m * m + s * s) * p_pos + m * s * pdf  # E[z^2; z > 0]
  # E[exp(k z); z <= 0] for k = 1, 2, in log space.
  e1_neg = jnp.exp(m + 0.5 * s * s + log_ndtr(-(m + s * s) / s))
  e2_neg = jnp.exp(2.0 * m + 2.0 * s * s + log_ndtr(-(m + 2.0 * s * s) / s))
  return p_pos, p_neg, z_pos, z2_pos, e1_neg, e2_neg


def _positive(v):
  return v > 0


def _check_spread(fn: str, var, tau, **others):
  """Checks concrete arguments; returns var and tau.

  var and tau must be finite and > 0, the `others` (mean, omega, alpha,
  scale) finite: a NaN or inf in any of them would give a NaN moment.
  """
  var, v = _checks.hyperparameter(fn, 'var', var)
  tau, t = _checks.hyperparameter(fn, 'tau', tau)
  for name, values in (('var', v), ('tau', t)):
    _checks.check_values(fn, name, values, _checks.finite, 'finite and > 0')
    _checks.check_values(fn, name, values, _positive, 'finite and > 0')
  for name, value in others.items():
    _, values = _checks.hyperparameter(fn, name, value)
    _checks.check_values(fn, name, values, _checks.finite, 'a finite number')
  return var, tau


def selu_moments(
  mean: ArrayLike,
  var: ArrayLike,
  *,
  omega: ArrayLike = 0.0,
  tau: ArrayLike = 1.0,
  alpha: ArrayLike = SELU_ALPHA,
  scale: ArrayLike = SELU_SCALE,
) -> tuple[jax.Array, jax.Array]:
  r"""The paper's map g: (mean, var) of x -> (mean, var) of selu(w^T x).

  Args:
    mean: mean mu of the incoming activations.
    var: variance nu of the incoming activations (> 0).
    omega: n times the mean weight (0 for zero-mean weights).
    tau: n times the mean squared weight (1 for LeCun-normal weights).
    alpha: SELU's alpha.
    scale: SELU's lambda.

  Returns:
    (mu~, nu~), the mean and variance of the unit's output.

  Raises:
    ValueError: if a concrete ``var`` or ``tau`` (any element, for an array)
      is not finite and > 0: the net input's variance var * tau must be
      positive (at 0 the Gaussian integrals are 0 / 0); or if a concrete
      ``mean``, ``omega``, ``alpha`` or ``scale`` is NaN or infinite. Traced
      values are not checked (var * tau = 0 gives NaN).
    TypeError: for a complex, bool or non-numeric ``var`` or ``tau``.

  Examples:
    >>> import jax
    >>> from jaxrelu import selu_theory
    >>> with jax.enable_x64(True):
    ...   m, v = selu_theory.selu_moments(0.0, 1.0)
    >>> print(f'{abs(float(m)) < 1e-15} {float(v):.12f}')
    True 1.000000000000
  """
  var, tau = _check_spread(
    'selu_moments', var, tau, mean=mean, omega=omega, alpha=alpha, scale=scale
  )
  m = jnp.asarray(mean) * omega
  s = jnp.sqrt(jnp.asarray(var) * tau)
  _, p_neg, z_pos, z2_pos, e1_neg, e2_neg = _gaussian_parts(m, s)
  first = scale * (z_pos + alpha * (e1_neg - p_neg))
  second = scale**2 * (z2_pos + alpha**2 * (e2_neg - 2.0 * e1_neg + p_neg))
  return first, second - first**2


def selu_backward_gain(
  mean: ArrayLike,
  var: ArrayLike,
  *,
  omega: ArrayLike = 0.0,
  tau: ArrayLike = 1.0,
  alpha: ArrayLike = SELU_ALPHA,
  scale: ArrayLike = SELU_SCALE,
) -> jax.Array:
  r"""Growth of the squared gradient norm per layer: tau * E[selu'(z)^2].

  A cotangent g flowing back through one layer becomes W^T (selu'(z) * g);
  with independent weights of mean square tau / n, its expected squared norm
  is multiplied by tau * E[selu'(z)^2]. At the fixed point (0, 1) with
  LeCun weights this is 1.0716: self-normalization is a property of the
  forward pass, and gradients still grow with depth.

  Raises:
    ValueError: like `selu_moments`, for a concrete var or tau that is not
      finite and > 0, or a non-finite mean, omega, alpha or scale.

  Examples:
    >>> import jax
    >>> from jaxrelu import selu_theory
    >>> with jax.enable_x64(True):
    ...   print(f'{float(selu_theory.selu_backward_gain(0.0, 1.0)):.4f}')
    1.0716
  """
  var, tau = _check_spread(
    'selu_backward_gain',
    var,
    tau,
    mean=mean,
    omega=omega,
    alpha=alpha,
    scale=scale,
  )
  m = jnp.asarray(mean) * omega
  s = jnp.sqrt(jnp.asarray(var) * tau)
  p_pos, *_, e2_neg = _gaussian_parts(m, s)
  return tau * scale**2 * (p_pos + alpha**2 * e2_neg)


def moment_map_jacobian(mean: ArrayLike, var: ArrayLike, **kwargs) -> jax.Array:
  r"""The 2x2 Jacobian d(mu~, nu~) / d(mu, nu) of `selu_moments`.

  Row order (mu~, nu~), column order (mu, nu). At (0, 1) with LeCun weights
  its spectral norm is 0.7877 < 1, which makes (0, 1) attracting.
  """
  fn = lambda p: jnp.stack(selu_moments(p[0], p[1], **kwargs))
  return jax.jacfwd(fn)(jnp.stack([jnp.asarray(mean), jnp.asarray(var)]))


def fixed_point(
  *,
  alpha: ArrayLike = SELU_ALPHA,
  scale: ArrayLike = SELU_SCALE,
  omega: ArrayLike = 0.0,
  tau: ArrayLike = 1.0,
  init: tuple[float, float] = (0.0, 1.0),
  iterations: int = 200,
) -> tuple[jax.Array, jax.Array]:
  """The attracting fixed point of the map, by iterating it from `init`."""

  def body(_, p):
    return jnp.stack(
      selu_moments(p[0], p[1], omega=omega, tau=tau, alpha=alpha, scale=scale)
    )

  p = jax.lax.fori_loop(0, iterations, body, jnp.asarray(init, float))
  return p[0], p[1]


def selu_parameters(mean: float = 0.0, var: float = 1.0) -> tuple[float, float]:
  r"""(alpha, scale) that make (mean, var) a fixed point, for LeCun weights.

  Solves selu_moments(mean, var) = (mean, var) with omega = 0, tau = 1 by
  Newton's method in float64.

  Args:
    mean: target mean of the activations.
    var: target variance (> 0).

  Returns:
    (alpha, scale) as Python floats.

  Examples:
    >>> from jaxrelu import selu_theory
    >>> alpha, scale = selu_theory.selu_parameters(0.0, 1.0)
    >>> print(f'{alpha:.12f} {scale:.12f}')
    1.673263242354 1.050700987355
  """
  _check_spread('selu_parameters', var, 1.0, mean=mean)
  with jax.enable_x64(True):
    target = jnp.array([mean, var], jnp.float64)

    def residual(p):
      m, v = selu_moments(mean, var, alpha=p[0], scale=p[1])
      return jnp.stack([m, v]) - target

    p = jnp.array([SELU_ALPHA, SELU_SCALE], jnp.float64)
    for _ in range(50):
      step = jnp.linalg.solve(jax.jacfwd(residual)(p), residual(p))
      p = p - step
      if float(jnp.max(jnp.abs(step))) < 1e-15:
        break
    else:  # pragma: no cover (Newton converges in < 10 steps here)
      raise RuntimeError(f'selu_parameters: no convergence for {mean}, {var}')
    return float(p[0]), float(p[1])


def alpha_dropout_affine(
  rate: ArrayLike, *, mean: ArrayLike = 0.0, var: ArrayLike = 1.0
) -> tuple[jax.Array, jax.Array]:
  r"""Alpha-dropout correction (a, b) that keeps (mean, var) unchanged.

  Dropped units are set to alpha' = -scale * alpha, then y = a x' + b with

  .. math::
    a = \sqrt{\frac{\nu}{q\left((1 - q)(\alpha' - \mu)^2 + \nu\right)}},
    \qquad b = \mu - a\left(q \mu + (1 - q) \alpha'\right),

  q = 1 - rate. For (0, 1): a = (q + alpha'^2 q (1 - q))^(-1/2),
  b = -a (1 - q) alpha' (rate 0.05: a = 0.954844, b = 0.083936).

  Args:
    rate: the drop probability, in [0, 1).
    mean: mean of the incoming activations.
    var: variance of the incoming activations.

  Returns:
    (a, b) as jax arrays.

  Raises:
    ValueError: for a concrete rate (any element, for an array) outside
      [0, 1), or one that rounds to 1 in the default float dtype (a = inf).
      A traced rate is not checked: rate = 1 gives (inf, inf), rate > 1 NaN.
    TypeError: for a complex, bool or non-numeric rate.

  Examples:
    >>> import jaxrelu
    >>> a, b = jaxrelu.alpha_dropout_affine(0.05)
    >>> print(f'{float(a):.6f} {float(b):.6f}')
    0.954844 0.083936
  """
  rate = _checks.check_rate('alpha_dropout_affine', rate)
  alpha_p = -SELU_SCALE * SELU_ALPHA
  q = 1.0 - jnp.asarray(rate, jnp.result_type(float))
  a = jnp.sqrt(var / (q * ((1.0 - q) * (alpha_p - mean) ** 2 + var)))
  return a, mean - a * (q * mean + (1.0 - q) * alpha_p)


def alpha_dropout_moments(
  mean: ArrayLike, var: ArrayLike, rate: ArrayLike
) -> tuple[jax.Array, jax.Array]:
  r"""(mean, var) of alpha dropout's output, for inputs of (mean, var).

  A kept element (probability q = 1 - rate) stays x, a dropped one becomes
  alpha' = -scale * alpha, then y = a x' + b with `alpha_dropout_affine`'s
  (a, b) for (0, 1): E[x'] = q mu + (1 - q) alpha',
  E[x'^2] = q (nu + mu^2) + (1 - q) alpha'^2. At (0, 1) it returns (0, 1).
  """
  q = 1.0 - rate
  alpha_p = -SELU_SCALE * SELU_ALPHA
  a, b = alpha_dropout_affine(rate)
  first = q * mean + (1 - q) * alpha_p
  second = q * (var + mean * mean) + (1 - q) * alpha_p**2
  return a * first + b, a * a * (second - first**2)


# ----------------------------------------------------------------------------
# Any activation, by quadrature split at its kinks (predictions for controls).


def _quadrature(mean, var, omega, tau, kinks, order):
  """Nodes z and weights w with sum(w * h(z)) = E[h(z)], z ~ N(m, s^2).

  Gauss-Legendre of order `order` on each smooth piece of
  [m - 12 s, m + 12 s], split at `kinks`, so kinks cost no accuracy.
  """
  m = jnp.asarray(mean) * omega
  s = jnp.sqrt(jnp.asarray(var) * tau)
  lo, hi = m - 12.0 * s, m + 12.0 * s
  cuts = jnp.sort(jnp.clip(jnp.asarray((*kinks,), float), lo, hi))
  edges = jnp.concatenate([lo[None], cuts, hi[None]])
  nodes, weights = np.polynomial.legendre.leggauss(order)
  a, b = edges[:-1, None], edges[1:, None]
  z = (0.5 * (b - a) * nodes + 0.5 * (b + a)).reshape(-1)
  w = (0.5 * (b - a) * weights).reshape(-1)
  w = w * jnp.exp(-0.5 * ((z - m) / s) ** 2)
  # Normalised to mass 1: the tails beyond 12 s hold ~1e-33, and tiny s
  # would otherwise lose the edges' relative precision.
  return z, w / jnp.sum(w)


def gaussian_expectation(
  h: Callable[[jax.Array], jax.Array],
  *,
  mean: ArrayLike = 0.0,
  var: ArrayLike = 1.0,
  kinks: tuple[float, ...] = (0.0,),
  order: int = 64,
) -> jax.Array:
  """E[h(z)] for z ~ N(mean, var), by quadrature split at `kinks`.

  With Stein's identities this gives derivative moments without
  derivatives, e.g. E[f'(z)] = E[f(z) z] and E[f''(z)] = E[f(z)(z^2 - 1)]
  for z ~ N(0, 1), exact across kinks.
  """
  z, w = _quadrature(mean, var, 1.0, 1.0, kinks, order)
  return jnp.sum(w * h(z))


def activation_moments(
  fn: Callable[[jax.Array], jax.Array],
  mean: ArrayLike,
  var: ArrayLike,
  *,
  omega: ArrayLike = 0.0,
  tau: ArrayLike = 1.0,
  kinks: tuple[float, ...] = (0.0,),
  order: int = 64,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(mean, var, backward gain) of fn(z), z ~ N(mean*omega, var*tau).

  The generic counterpart of `selu_moments` and `selu_backward_gain` for any
  elementwise activation, by Gauss-Legendre quadrature of order `order` on
  each smooth piece of [m - 12 s, m + 12 s], split at `kinks` (pass
  (0.0, 6.0) for relu6), so kinks cost no accuracy: relu's moments come out
  exact to ~1e-12 in float64 (tests/jaxrelu/test_selu_theory.py).
  """
  z, w = _quadrature(mean, var, omega, tau, kinks, order)
  y = fn(z)
  dy = jax.vmap(jax.grad(fn))(z)
  first = jnp.sum(w * y)
  second = jnp.sum(w * y * y)
  return first, second - first**2, tau * jnp.sum(w * dy * dy)


def correlation_map(
  fn: Callable[[jax.Array], jax.Array],
  c: ArrayLike,
  *,
  kinks: tuple[float, ...] = (0.0,),
  order: int = 48,
) -> jax.Array:
  r"""Output correlation of two inputs of correlation c, at (0, 1).

  Two samples whose net inputs are standard normal with correlation c give
  outputs with correlation

  .. math::
    C(c) = \frac{\mathbb{E}[f(u) f(v)] - \mathbb{E}[f(u)]^2}
      {\mathrm{Var}[f(u)]},
    \quad (u, v) \sim \mathcal{N}\left(0, \begin{pmatrix}1 & c \\ c & 1
    \end{pmatrix}\right)

  (the dual kernel of mean-field signal propagation, Poole et al. 2016).
  Computed as nested quadratures split at the kinks of both factors.
  """
  c = jnp.asarray(c, float)
  z1, w1 = _quadrature(0.0, 1.0, 1.0, 1.0, kinks, order)
  # Clamped so that c = +-1 gives the limit f(c z) instead of 0 / 0.
  s = jnp.sqrt(jnp.maximum(1.0 - c * c, 1e-24))

  def inner(z):  # E[f(c z + s z2)] over z2
    zz, ww = _quadrature(c * z, s * s, 1.0, 1.0, kinks, order)
    return jnp.sum(ww * fn(zz))

  f1 = fn(z1)
  cross = jnp.sum(w1 * f1 * jax.vmap(inner)(z1))
  first = jnp.sum(w1 * f1)
  second = jnp.sum(w1 * f1 * f1)
  return (cross - first**2) / (second - first**2)


def correlation_fixed_point(
  fn: Callable[[jax.Array], jax.Array],
  *,
  kinks: tuple[float, ...] = (0.0,),
  init: float = 0.0,
  iterations: int = 300,
) -> float:
  """The correlation c* that independent samples converge to, with depth.

  Iterates `correlation_map` from `init` (independent inputs). For SELU at
  (0, 1), c* ~ 0.03: samples of a fixed batch become slightly correlated in
  deep stacks, which shrinks the batch's effective size.
  """
  with jax.enable_x64(True):
    step = jax.jit(lambda c: correlation_map(fn, c, kinks=kinks))
    c = jnp.asarray(init, jnp.float64)
    for _ in range(iterations):
      c_next = step(c)
      if abs(float(c_next - c)) < 1e-13:
        return float(c_next)
      c = c_next
    return float(c)
