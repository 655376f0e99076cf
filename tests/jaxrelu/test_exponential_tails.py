"""Exponential units to the last normal number, and their second derivatives.

References: mpmath at 120 bits for values and first derivatives (with alpha
rounded to the input's dtype, as the library receives it), and the float64
NumPy formulas of PyTorch's double backward (x < 0 masks the second
derivative, so it is 0 at the kink) for second derivatives.
"""

import functools

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
from absl.testing import absltest, parameterized

import jaxrelu

ALPHA = 1.6732632423543772848170429916717
SCALE = 1.0507009873554804934193349852946
ALPHAS = (0.1, 1.0, 2.0, 3.0, 10.0)
MAX_ULPS = 4  # measured at most 2.0 (float32) and 3.0 (float64)

mpmath.mp.prec = 120


def mp_reference(kind, x, alpha):
  """(value, derivative) at x <= 0 as mpmath numbers."""
  x, a = mpmath.mpf(float(x)), mpmath.mpf(float(alpha))
  if kind == 'elu':
    return a * mpmath.expm1(x), a * mpmath.exp(x)
  if kind == 'celu':
    return a * mpmath.expm1(x / a), mpmath.exp(x / a)
  lam, al = mpmath.mpf(SCALE), mpmath.mpf(ALPHA)
  return lam * al * mpmath.expm1(x), lam * al * mpmath.exp(x)


def function(kind, alpha):
  if kind == 'selu':
    return jaxrelu.selu
  return functools.partial(getattr(jaxrelu, kind), alpha=alpha)


def negative_grid(dtype, top):
  """Normal x from -1e-30 down to -top, with the edges of the issue."""
  tiny = np.finfo(dtype).tiny
  x = -np.logspace(np.log10(float(tiny)) + 0.1, np.log10(top), 240)
  edges = [-87.5, -88.0, -87.33, -87.34, -1.2e-38, -3e-38, -100.0, -745.0]
  x = np.concatenate([x, edges]).astype(dtype)
  return x[(np.abs(x) >= tiny) & (np.abs(x) <= top)]


def ulps(actual, reference, dtype):
  """|actual - reference| in ulps of the reference rounded to dtype."""
  ref = np.asarray([float(r) for r in reference])
  spacing = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
  return np.abs(np.asarray(actual, np.float64) - ref) / spacing, ref


class TailTest(parameterized.TestCase):
  """Value and derivative within a few ulp of mpmath wherever normal."""

  @parameterized.product(
    kind=('elu', 'celu', 'selu'),
    alpha=ALPHAS,
    dtype=(np.float32, np.float64),
  )
  def test_value_and_derivative_against_mpmath(self, kind, alpha, dtype):
    if kind == 'selu' and alpha != 1.0:
      return  # selu has no alpha: one run per dtype.
    # alpha as the library sees it: rounded to the input's dtype.
    alpha = float(np.asarray(alpha, dtype))
    log_max = float(np.log(np.finfo(dtype).max))
    top = log_max * (alpha if kind == 'celu' else 1.0) * 1.02
    x = negative_grid(dtype, top)
    with jax.enable_x64(dtype == np.float64):
      fn = function(kind, alpha)
      value, grad = jax.jit(jax.vmap(jax.value_and_grad(fn)))(x)
      forward = jax.jit(fn)(x)
    refs = [mp_reference(kind, xi, alpha) for xi in x]
    tiny = float(np.finfo(dtype).tiny)
    for name, got, ref in (
      ('value', value, [r[0] for r in refs]),
      ('forward', forward, [r[0] for r in refs]),
      ('derivative', grad, [r[1] for r in refs]),
    ):
      err, ref = ulps(got, ref, dtype)
      normal = np.abs(ref) >= tiny
      worst = np.argmax(np.where(normal, err, 0))
      self.assertLessEqual(
        err[normal].max(),
        MAX_ULPS,
        f'{kind} alpha={alpha} {name} at x={x[worst]}: '
        f'{np.asarray(got)[worst]!r} vs {ref[worst]!r}',
      )
      # Below the smallest normal: flushed to 0 or a subnormal, never more.
      self.assertTrue(np.all(np.abs(np.asarray(got)[~normal]) < tiny))

  def test_float32_reproducers_of_the_issue(self):
    # PyTorch 2.x gives these normal numbers; alpha * exp(x) underflowed
    # before the multiply and gave 0.
    x = jnp.float32(-87.5)
    self.assertAlmostEqual(
      float(jax.grad(functools.partial(jaxrelu.elu, alpha=2.0))(x)) / 2.0e-38,
      1.0,
      places=2,
    )
    self.assertAlmostEqual(
      float(jax.grad(jaxrelu.elu, argnums=0)(jnp.float32(-88.0), 2.0))
      / 1.2e-38,
      1.0,
      places=1,
    )
    self.assertAlmostEqual(
      float(jax.grad(jaxrelu.selu)(x)) / 1.75e-38, 1.0, places=2
    )
    # celu(-1.2e-38, alpha=3) = -1.2e-38 (x / alpha alone is subnormal).
    self.assertEqual(
      float(jaxrelu.celu(jnp.float32(-1.2e-38), alpha=3.0)),
      float(np.float32(-1.2e-38)),
    )

  def test_celu_error_does_not_grow_with_x_over_alpha(self):
    # Rounding x / alpha alone costs |x / alpha| / 2 ulp in exp(x / alpha):
    # 10 ulp at -100 and 43 at -745 in float64 before.
    with jax.enable_x64(True):
      for alpha in (0.3, 1.7, 7.0):
        x = np.array([-100.0, -300.0, -700.0]) * (alpha if alpha > 1 else 1)
        grad = jax.vmap(jax.grad(jaxrelu.celu), in_axes=(0, None))(x, alpha)
        err, _ = ulps(
          grad, [mp_reference('celu', xi, alpha)[1] for xi in x], np.float64
        )
        self.assertLessEqual(err.max(), MAX_ULPS, (alpha, err))


class NegativeAlphaTest(parameterized.TestCase):
  """celu takes any nonzero alpha: a negative one makes x / alpha > 0."""

  @parameterized.product(
    alpha=(-0.5, -1.0, -3.0), dtype=(np.float32, np.float64)
  )
  def test_celu_negative_alpha_against_mpmath(self, alpha, dtype):
    x = np.array([-1e-6, -0.1, -0.5, -1.0, -3.0, -10.0, -30.0], dtype)
    with jax.enable_x64(dtype == np.float64):
      fn = functools.partial(jaxrelu.celu, alpha=alpha)
      value, grad = jax.jit(jax.vmap(jax.value_and_grad(fn)))(x)
      forward = jax.jit(fn)(x)
    refs = [mp_reference('celu', xi, alpha) for xi in x]
    big = float(np.finfo(dtype).max)
    for name, got, ref in (
      ('value', value, [r[0] for r in refs]),
      ('forward', forward, [r[0] for r in refs]),
      ('derivative', grad, [r[1] for r in refs]),
    ):
      ref = np.asarray([float(r) for r in ref])
      got = np.asarray(got, np.float64)
      finite = np.abs(ref) <= big
      err, _ = ulps(got[finite], ref[finite], dtype)
      self.assertLessEqual(err.max(), MAX_ULPS, (name, alpha, got, ref))
      # Past the overflow of exp(x / alpha): inf of the right sign, not NaN.
      np.testing.assert_array_equal(
        got[~finite], np.sign(ref[~finite]) * np.inf
      )


def second_derivative_reference(kind, x, alpha):
  """PyTorch's: the negative side's for x < 0, 0 at 0 and for x > 0."""
  neg = np.minimum(x, 0.0)
  if kind == 'elu':
    d2 = alpha * np.exp(neg)
  elif kind == 'celu':
    d2 = np.exp(neg / alpha) / alpha
  else:
    d2 = SCALE * ALPHA * np.exp(neg)
  return np.where(x < 0, d2, 0.0)


class SecondDerivativeTest(parameterized.TestCase):
  @parameterized.parameters(
    ('elu', 1.0),
    ('elu', 0.5),
    ('elu', 2.0),
    ('celu', 1.0),
    ('celu', 0.5),
    ('selu', 1.0),
  )
  def test_second_derivative_is_pytorchs(self, kind, alpha):
    x = np.array([-30.0, -2.0, -0.3, -1e-30, -0.0, 0.0, 1e-30, 0.4, 2.0])
    with jax.enable_x64(True):
      fn = function(kind, alpha)
      expected = second_derivative_reference(kind, x, alpha)
      rev_rev = jax.vmap(jax.grad(jax.grad(fn)))(x)
      fwd_rev = jax.vmap(jax.jacfwd(jax.grad(fn)))(x)
      fwd_fwd = jax.vmap(jax.jacfwd(jax.jacfwd(fn)))(x)
      hessian = np.asarray(jax.hessian(lambda v: jnp.sum(fn(v)))(x))
    for got in (rev_rev, fwd_rev, fwd_fwd, np.diag(hessian)):
      np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)
    # Exactly 0 at the kink, from either side of zero.
    self.assertEqual(float(rev_rev[4]), 0.0)
    self.assertEqual(float(rev_rev[5]), 0.0)
    self.assertEqual(np.count_nonzero(hessian - np.diag(np.diag(hessian))), 0)

  @parameterized.parameters('elu', 'celu', 'selu')
  def test_float32_second_derivative_at_zero(self, kind):
    fn = function(kind, 1.0)
    for zero in (0.0, -0.0):
      self.assertEqual(float(jax.grad(jax.grad(fn))(jnp.float32(zero))), 0.0)

  def test_third_derivative_on_the_negative_side(self):
    x = np.array([-3.0, -0.5, -1e-8])
    with jax.enable_x64(True):
      d3 = jax.vmap(jax.grad(jax.grad(jax.grad(jaxrelu.elu))))(x)
      np.testing.assert_allclose(d3, np.exp(x), rtol=1e-14)
      d3 = jax.vmap(jax.grad(jax.grad(jax.grad(jaxrelu.celu))), (0, None))(
        x, 0.5
      )
      np.testing.assert_allclose(d3, np.exp(x / 0.5) / 0.25, rtol=1e-14)

  def test_mixed_derivatives_in_alpha(self):
    x = np.array([-3.0, -0.5, 0.0, 0.7])
    with jax.enable_x64(True):
      elu_xa = jax.vmap(jax.grad(jax.grad(jaxrelu.elu), argnums=1), (0, None))
      celu_xa = jax.vmap(jax.grad(jax.grad(jaxrelu.celu), argnums=1), (0, None))
      a = 1.5
      # d/dalpha of elu'(x) = alpha e^x (x <= 0): e^x.
      np.testing.assert_allclose(
        elu_xa(x, a),
        np.where(x > 0, 0.0, np.exp(np.minimum(x, 0))),
        rtol=1e-14,
      )
      # d/dalpha of celu'(x) = e^(x / alpha): -x / alpha^2 e^(x / alpha).
      neg = np.minimum(x, 0.0)
      np.testing.assert_allclose(
        celu_xa(x, a),
        np.where(x > 0, 0.0, -neg / a**2 * np.exp(neg / a)),
        rtol=1e-14,
        atol=0,
      )


if __name__ == '__main__':
  absltest.main()
