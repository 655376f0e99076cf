"""The activation contract, against float64 NumPy references written here.

Each reference returns (value, derivative) with the left-side derivative at
every kink. Nothing here is computed with jaxrelu to check jaxrelu, except
where a test pins a relation between two modes of the same function (bf16 is
the float32 result rounded once; rrelu's gradient is the slope it used).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized
from jax.experimental import checkify
from jax.test_util import check_grads

import jaxrelu
from experiments.benchmark_activations import memory
from jaxrelu import registry

# Typed in from Klambauer et al. (2017), independently of jaxrelu's constants.
ALPHA = 1.6732632423543772848170429916717
SCALE = 1.0507009873554804934193349852946
RRELU_EVAL_SLOPE = (1 / 8 + 1 / 3) / 2

EDGES = np.array(
  [
    *(0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 1.0, -1.0, 5.5, 6.0, 6.5),
    *(1e30, -1e30, np.inf, -np.inf, np.nan, -5.0, -17.0, -18.0, -40.0),
    *(-87.0, -100.0, 3.0e38, -3.0e38),
  ]
)


def _nan_where(x, v):
  return np.where(np.isnan(x), np.nan, v)


def ref_relu(x):
  return _nan_where(x, np.where(x > 0, x, 0.0)), (x > 0) * 1.0


def ref_relu6(x):
  v = _nan_where(x, np.where(x > 0, np.where(x < 6, x, 6.0), 0.0))
  return v, ((x > 0) & (x < 6)) * 1.0


def ref_leaky(slope):
  def ref(x):
    return np.where(x > 0, x, slope * x), np.where(x > 0, 1.0, slope)

  return ref


def ref_elu(alpha, scale=1.0):
  def ref(x):
    neg = np.minimum(x, 0.0)  # NaN stays NaN; exp cannot overflow
    v = scale * np.where(x > 0, x, alpha * np.expm1(neg))
    d = scale * np.where(x > 0, 1.0, alpha * np.exp(neg))
    return v, _nan_where(x, d)

  return ref


def ref_celu(alpha):
  def ref(x):
    t = np.minimum(x, 0.0) / alpha
    v = np.where(x > 0, x, alpha * np.expm1(t))
    return v, _nan_where(x, np.where(x > 0, 1.0, np.exp(t)))

  return ref


# name -> (function of x alone, float64 reference, derivative at a NaN input)
CASES = {
  'relu': (jaxrelu.relu, ref_relu, 0.0),
  'relu6': (jaxrelu.relu6, ref_relu6, 0.0),
  'leaky_relu': (jaxrelu.leaky_relu, ref_leaky(0.01), 0.01),
  'leaky_relu_0.3': (
    lambda x: jaxrelu.leaky_relu(x, negative_slope=0.3),
    ref_leaky(0.3),
    0.3,
  ),
  'prelu': (lambda x: jaxrelu.prelu(x, 0.25), ref_leaky(0.25), 0.25),
  'rrelu_eval': (
    lambda x: jaxrelu.rrelu(x, deterministic=True),
    ref_leaky(RRELU_EVAL_SLOPE),
    RRELU_EVAL_SLOPE,
  ),
  'elu': (jaxrelu.elu, ref_elu(1.0), np.nan),
  'elu_alpha_0.5': (
    lambda x: jaxrelu.elu(x, alpha=0.5),
    ref_elu(0.5),
    np.nan,
  ),
  'selu': (jaxrelu.selu, ref_elu(ALPHA, SCALE), np.nan),
  'celu': (jaxrelu.celu, ref_celu(1.0), np.nan),
  'celu_alpha_0.5': (
    lambda x: jaxrelu.celu(x, alpha=0.5),
    ref_celu(0.5),
    np.nan,
  ),
}
NAMED_CASES = [(name, name) for name in CASES]
FLOAT_DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)


def assert_matches_reference(actual, expected, dtype, ulps=4):
  """Few-ulp relative agreement; below the smallest normal, flush to zero.

  XLA on CPU flushes subnormals to zero, so 'until the float64 value
  underflows' means until it drops below finfo(dtype).tiny.
  """
  actual = np.asarray(actual, np.float64)
  finfo = jnp.finfo(dtype)
  np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
  inf = np.isinf(expected)
  np.testing.assert_array_equal(actual[inf], expected[inf])
  np.testing.assert_allclose(
    actual[~inf],
    expected[~inf],
    rtol=ulps * float(finfo.eps),
    atol=float(finfo.tiny),
  )


def _edges(dtype):
  """The edge table in dtype, and the same values exactly in float64."""
  x = jnp.asarray(EDGES, dtype)
  return x, np.asarray(x, np.float64)


class ValueAndDerivativeTest(chex.TestCase):
  """Values and first derivatives on the edge table, float32."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*NAMED_CASES)
  def test_value_matches_float64(self, name):
    fn, ref, _ = CASES[name]
    x, x64 = _edges(jnp.float32)
    y = self.variant(fn)(x)
    self.assertEqual(y.dtype, jnp.float32)
    with np.errstate(all='ignore'):
      assert_matches_reference(y, ref(x64)[0], jnp.float32)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*NAMED_CASES)
  def test_reverse_derivative_matches_float64(self, name):
    fn, ref, nan_derivative = CASES[name]
    x, x64 = _edges(jnp.float32)
    grad = self.variant(jax.vmap(jax.grad(fn)))(x)
    with np.errstate(all='ignore'):
      expected = ref(x64)[1]
    expected = np.where(np.isnan(x64), nan_derivative, expected)
    assert_matches_reference(grad, expected, jnp.float32)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*NAMED_CASES)
  def test_forward_derivative_matches_float64(self, name):
    fn, ref, nan_derivative = CASES[name]
    x, x64 = _edges(jnp.float32)
    jvp = self.variant(lambda x: jax.jvp(fn, (x,), (jnp.ones_like(x),))[1])
    with np.errstate(all='ignore'):
      expected = ref(x64)[1]
    expected = np.where(np.isnan(x64), nan_derivative, expected)
    assert_matches_reference(jvp(x), expected, jnp.float32)

  @parameterized.named_parameters(*NAMED_CASES)
  def test_no_nan_or_inf_derivative_where_function_is_finite(self, name):
    fn, ref, _ = CASES[name]
    x, x64 = _edges(jnp.float32)
    grad = np.asarray(jax.vmap(jax.grad(fn))(x))
    with np.errstate(all='ignore'):
      finite = np.isfinite(ref(x64)[0])
    self.assertTrue(np.all(np.isfinite(grad[finite])), grad[finite])

  @parameterized.named_parameters(*NAMED_CASES)
  def test_nan_cotangent_stays_nan(self, name):
    fn = CASES[name][0]
    x, _ = _edges(jnp.float32)
    _, vjp = jax.vjp(fn, x)
    (ct,) = vjp(jnp.full_like(x, jnp.nan))
    self.assertTrue(np.all(np.isnan(ct)), ct)

  @parameterized.named_parameters(*NAMED_CASES)
  def test_float64_matches_reference(self, name):
    fn, ref, nan_derivative = CASES[name]
    with jax.enable_x64(True):
      x, x64 = _edges(jnp.float64)
      y = fn(x)
      grad = jax.vmap(jax.grad(fn))(x)
      self.assertEqual(y.dtype, jnp.float64)
    with np.errstate(all='ignore'):
      value, derivative = ref(x64)
    assert_matches_reference(y, value, jnp.float64)
    derivative = np.where(np.isnan(x64), nan_derivative, derivative)
    assert_matches_reference(grad, derivative, jnp.float64)


class KinkAndLimitTest(chex.TestCase):
  """The convention at every kink and the limits at infinity, exactly."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_derivative_at_kinks_is_left_side(self):
    expected = {
      'relu': 0.0,
      'relu6': 0.0,
      'leaky_relu': np.float32(0.01),
      'prelu': 0.25,
      'rrelu_eval': np.float32(RRELU_EVAL_SLOPE),
      'elu': 1.0,
      'elu_alpha_0.5': 0.5,
      'selu': np.float32(SCALE * ALPHA),
      'celu': 1.0,
      'celu_alpha_0.5': 1.0,
    }
    for name, want in expected.items():
      fn = CASES[name][0]
      for zero in (0.0, -0.0):
        got = self.variant(jax.grad(fn))(jnp.float32(zero))
        self.assertEqual(float(got), float(np.float32(want)), (name, zero))
    self.assertEqual(float(jax.grad(jaxrelu.relu6)(jnp.float32(6.0))), 0.0)

  def test_limits_at_infinity(self):
    inf = jnp.float32(jnp.inf)
    self.assertEqual(float(jaxrelu.elu(-inf)), -1.0)
    self.assertEqual(float(jaxrelu.elu(-inf, alpha=2.5)), -2.5)
    self.assertEqual(float(jaxrelu.celu(-inf, alpha=0.5)), -0.5)
    self.assertEqual(
      float(jaxrelu.selu(-inf)), float(np.float32(-SCALE * ALPHA))
    )
    self.assertEqual(float(jaxrelu.relu6(inf)), 6.0)
    self.assertEqual(float(jaxrelu.relu(inf)), np.inf)
    # A zero slope gives the limit 0 at -inf, not 0 * -inf = NaN.
    self.assertEqual(float(jaxrelu.leaky_relu(-inf, 0.0)), 0.0)
    self.assertEqual(float(jaxrelu.prelu(-inf, jnp.float32(0.0))), 0.0)
    self.assertTrue(np.isnan(jaxrelu.prelu(jnp.float32(jnp.nan), 0.0)))

  @parameterized.parameters('float32', 'bfloat16', 'float16', 'float64')
  def test_per_channel_zero_slope_at_minus_infinity(self, dtype):
    # Per-channel slopes, one of them 0, against a float64 reference that
    # takes the limit 0 at -inf and keeps NaN NaN, in every dtype.
    x64 = np.array([-np.inf, -3.0, -1e-30, 0.0, np.nan, 2.0, np.inf])
    s64 = np.array([0.0, 0.25, -0.5])
    with jax.enable_x64(dtype == 'float64'):
      x = jnp.asarray(x64[:, None] * np.ones(3), dtype)
      s = jnp.asarray(s64, dtype)
      y = jaxrelu.prelu(x, s)
      self.assertEqual(y.dtype, jnp.dtype(dtype))
    xr = np.asarray(x, np.float64)
    sr = np.asarray(s, np.float64) * np.ones_like(xr)
    with np.errstate(invalid='ignore'):
      neg = np.where(np.isneginf(xr) & (sr == 0), 0.0, sr * xr)
    expected = np.where(xr > 0, xr, neg)
    np.testing.assert_array_equal(np.asarray(y, np.float64), expected)

  def test_elu_negative_side_exact_where_expm1_plus_one_fails(self):
    # jax.nn.elu computes y + alpha: 44% off at -17 and 0 below -18.
    x = jnp.array([-17.0, -18.0, -30.0, -40.0], jnp.float32)
    expected = np.exp(np.asarray(x, np.float64))
    for fn, scale in ((jaxrelu.elu, 1.0), (jaxrelu.selu, SCALE * ALPHA)):
      grad = jax.vmap(jax.grad(fn))(x)
      np.testing.assert_allclose(grad, scale * expected, rtol=4e-7)


class PReLUSlopeTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_slope_gradient_is_sum_of_negative_part(self):
    x = jax.random.normal(jax.random.key(0), (32, 4), jnp.float32)
    x = x.at[0, 0].set(0.0)
    slope = jnp.array([0.1, 0.2, 0.3, 0.4], jnp.float32)
    fn = self.variant(
      jax.grad(lambda x, s: jnp.sum(jaxrelu.prelu(x, s)), argnums=(0, 1))
    )
    gx, gs = fn(x, slope)
    x64 = np.asarray(x, np.float64)
    np.testing.assert_allclose(gs, np.minimum(x64, 0).sum(0), rtol=1e-6)
    np.testing.assert_allclose(gx, np.where(x64 > 0, 1.0, slope), rtol=0)
    self.assertEqual(gx[0, 0], slope[0])  # prelu'(0) = slope

  def test_slope_gradient_at_zero_is_zero(self):
    g = jax.grad(jaxrelu.prelu, argnums=1)(jnp.float32(0.0), jnp.float32(0.3))
    self.assertEqual(float(g), 0.0)

  def test_slope_gradient_matches_finite_difference(self):
    with jax.enable_x64(True):
      x = jax.random.normal(jax.random.key(1), (64, 3), jnp.float64)
      loss = lambda s: jnp.sum(jnp.sin(jaxrelu.prelu(x, s)))
      slope = jnp.array([0.1, 0.25, 0.5])
      grad = jax.grad(loss)(slope)
      eps = 1e-6
      for c in range(3):
        e = jnp.zeros(3).at[c].set(eps)
        fd = (loss(slope + e) - loss(slope - e)) / (2 * eps)
        np.testing.assert_allclose(grad[c], fd, rtol=1e-7)

  def test_channels_first_slope(self):
    x = jnp.full((2, 3, 4, 4), -1.0)
    slope = jnp.array([0.1, 0.2, 0.3]).reshape(3, 1, 1)
    y = jaxrelu.prelu(x, slope)
    np.testing.assert_allclose(y[1, :, 2, 2], [-0.1, -0.2, -0.3], rtol=1e-7)


class HyperparameterGradientTest(parameterized.TestCase):
  """Gradients to alpha and slope against float64 closed forms."""

  def test_elu_alpha_gradient(self):
    x = np.array([-40.0, -3.0, -0.5, 0.0, 0.7, 5.0])
    with jax.enable_x64(True):
      grad = jax.vmap(jax.grad(jaxrelu.elu, argnums=1), (0, None))(x, 1.5)
    np.testing.assert_allclose(grad, np.where(x > 0, 0, np.expm1(x)))

  def test_celu_alpha_gradient(self):
    x = np.array([-np.inf, -40.0, -3.0, -0.5, 0.0, 0.7])
    a = 0.8
    with jax.enable_x64(True):
      grad = jax.vmap(jax.grad(jaxrelu.celu, argnums=1), (0, None))(x, a)
    t = np.minimum(x, 0) / a
    with np.errstate(invalid='ignore'):
      t_exp_t = np.where(np.isneginf(t), 0.0, t * np.exp(t))
    expected = np.where(x > 0, 0.0, np.expm1(t) - t_exp_t)
    np.testing.assert_allclose(grad, expected, rtol=1e-14)

  def test_rrelu_eval_bounds_gradient(self):
    # d/dlower = d/dupper = min(x, 0) / 2 for the fixed mean slope.
    x = jnp.array([-2.0, -1.0, 3.0])
    fn = lambda lo, hi: jnp.sum(
      jaxrelu.rrelu(x, lower=lo, upper=hi, deterministic=True)
    )
    glo, ghi = jax.grad(fn, argnums=(0, 1))(jnp.float32(0.1), jnp.float32(0.3))
    self.assertAlmostEqual(float(glo), -1.5, places=6)
    self.assertAlmostEqual(float(ghi), -1.5, places=6)


class HigherOrderTest(parameterized.TestCase):
  """check_grads to order 2, forward and reverse, in float64."""

  def _points(self, shift=0.0):
    # Away from the kinks at 0 and 6, where finite differences straddle.
    x = np.linspace(-4.0, 8.0, 25) + 0.137 + shift
    return x[np.abs(x) > 0.05][np.abs(x[np.abs(x) > 0.05] - 6) > 0.05]

  @parameterized.named_parameters(*NAMED_CASES)
  def test_check_grads_order_2(self, name):
    fn = CASES[name][0]
    with jax.enable_x64(True):
      check_grads(fn, (self._points(),), order=2, modes=('fwd', 'rev'))

  def test_check_grads_hyperparameters(self):
    with jax.enable_x64(True):
      x = self._points()
      slope = np.full_like(x, 0.3)
      check_grads(jaxrelu.prelu, (x, slope), order=2, modes=('fwd', 'rev'))
      check_grads(jaxrelu.elu, (x, 1.3), order=2, modes=('fwd', 'rev'))
      check_grads(jaxrelu.celu, (x, 0.7), order=2, modes=('fwd', 'rev'))
      check_grads(
        lambda x, lo, hi: jaxrelu.rrelu(
          x, jax.random.key(3), lower=lo, upper=hi
        ),
        (x, 0.1, 0.4),
        order=2,
        modes=('fwd', 'rev'),
      )

  @parameterized.named_parameters(('elu', 1.0, 1.0), ('selu', ALPHA, SCALE))
  def test_hessian_is_diagonal_second_derivative(self, alpha, scale):
    fn = jaxrelu.elu if scale == 1.0 else jaxrelu.selu
    x = np.array([-30.0, -2.0, -0.3, 0.4, 2.0])
    with jax.enable_x64(True):
      hess = jax.hessian(lambda x: jnp.sum(fn(x)))(x)
    expected = np.diag(scale * np.where(x > 0, 0.0, alpha * np.exp(x)))
    np.testing.assert_allclose(hess, expected, rtol=1e-14, atol=0)

  def test_piecewise_linear_hessians_vanish(self):
    x = np.array([-2.0, -0.3, 0.4, 2.0, 7.0])
    for name in ('relu', 'relu6', 'leaky_relu', 'prelu', 'rrelu_eval'):
      fn = CASES[name][0]
      hess = jax.hessian(lambda x, fn=fn: jnp.sum(fn(x)))(x)
      np.testing.assert_array_equal(hess, np.zeros((5, 5)), name)


class DtypeTest(parameterized.TestCase):
  @parameterized.product(name=list(CASES), dtype=FLOAT_DTYPES)
  def test_dtype_preserved(self, name, dtype):
    fn = CASES[name][0]
    with jax.enable_x64(True):
      x = jnp.linspace(-3, 3, 7, dtype=dtype)
      self.assertEqual(fn(x).dtype, dtype)
      self.assertEqual(jax.grad(lambda x: jnp.sum(fn(x)))(x).dtype, dtype)

  @parameterized.product(name=list(CASES), dtype=(jnp.float16, jnp.bfloat16))
  def test_half_precision_is_float32_rounded_once(self, name, dtype):
    fn, ref, _ = CASES[name]
    with np.errstate(over='ignore'):  # 1e30 -> inf in float16
      x = jnp.asarray(EDGES, dtype)
    x32 = x.astype(jnp.float32)
    y = fn(x)
    np.testing.assert_array_equal(
      np.asarray(y, np.float32), np.asarray(fn(x32).astype(dtype), np.float32)
    )
    grad = jax.vmap(jax.grad(fn))(x)
    grad32 = jax.vmap(jax.grad(fn))(x32).astype(dtype)
    np.testing.assert_array_equal(
      np.asarray(grad, np.float32), np.asarray(grad32, np.float32)
    )
    # And within one ulp of the float64 value (rounding once can still land
    # on the neighbour of the correctly rounded value).
    with np.errstate(all='ignore'):
      assert_matches_reference(y, ref(np.asarray(x, np.float64))[0], dtype, 1)

  @parameterized.parameters(jnp.int8, jnp.int32, jnp.uint8)
  def test_relu_and_relu6_keep_integer_dtype(self, dtype):
    x = jnp.array([0, 1, 5, 6, 7, 100], dtype)
    if jnp.issubdtype(dtype, jnp.signedinteger):
      x = jnp.concatenate([jnp.array([-100, -1], dtype), x])
    self.assertEqual(jaxrelu.relu(x).dtype, dtype)
    self.assertEqual(jaxrelu.relu6(x).dtype, dtype)
    xs = np.asarray(x, np.int64)
    np.testing.assert_array_equal(jaxrelu.relu(x), np.maximum(xs, 0))
    np.testing.assert_array_equal(jaxrelu.relu6(x), np.clip(xs, 0, 6))

  @parameterized.parameters(
    'leaky_relu', 'prelu', 'rrelu_eval', 'elu', 'selu', 'celu'
  )
  def test_other_functions_promote_integers_to_default_float(self, name):
    x = jnp.array([-2, 0, 3], jnp.int32)
    y = CASES[name][0](x)
    self.assertEqual(y.dtype, jnp.float32)
    np.testing.assert_allclose(y, CASES[name][0](x.astype(jnp.float32)))

  @parameterized.parameters(*CASES)
  def test_bool_and_complex_rejected(self, name):
    for x in (jnp.array([True]), jnp.array([1 + 1j])):
      with self.assertRaisesRegex(TypeError, 'real integer or floating'):
        CASES[name][0](x)


class BadHyperparameterTest(parameterized.TestCase):
  def test_celu_alpha_zero(self):
    for alpha in (0, 0.0, -0.0, np.float32(0), jnp.float32(0)):
      with self.assertRaisesRegex(ValueError, r'celu: alpha must be nonzero'):
        jaxrelu.celu(jnp.ones(3), alpha=alpha)

  def test_celu_traced_alpha_zero_is_documented(self):
    # Unchecked when traced: 0 for x < 0 (the relu limit), NaN at x = 0.
    x = jnp.array([-1.0, 0.0, 1.0])
    y = jax.jit(lambda a: jaxrelu.celu(x, a))(0.0)
    np.testing.assert_array_equal(y, [0.0, np.nan, 1.0])

  @parameterized.parameters(
    ('elu', 'alpha'), ('celu', 'alpha'), ('leaky_relu', 'negative_slope')
  )
  def test_non_finite_hyperparameter(self, fn, arg):
    for bad in (np.nan, np.inf):
      with self.assertRaisesRegex(ValueError, f'{fn}: {arg} must be a finite'):
        getattr(jaxrelu, fn)(jnp.ones(3), **{arg: bad})

  @parameterized.named_parameters(
    ('lower_gt_upper', 0.5, 0.2, 'lower must not exceed upper'),
    ('lower_negative', -0.1, 0.2, r'lower must be in \[0, 1\]'),
    ('upper_above_one', 0.1, 1.5, r'upper must be in \[0, 1\]'),
    ('nan', np.nan, 0.2, r'lower must be in \[0, 1\]'),
  )
  def test_rrelu_bounds(self, lower, upper, message):
    for deterministic in (True, False):
      with self.assertRaisesRegex(ValueError, 'rrelu: ' + message):
        jaxrelu.rrelu(
          jnp.ones(3),
          jax.random.key(0),
          lower=lower,
          upper=upper,
          deterministic=deterministic,
        )

  def test_rrelu_training_needs_key(self):
    with self.assertRaisesRegex(ValueError, 'rrelu: key is None.*determinist'):
      jaxrelu.rrelu(jnp.ones(3))

  def test_slope_shape_must_broadcast_without_enlarging(self):
    x = jnp.ones((4, 5))
    for fn, shape in (
      (jaxrelu.prelu, (3,)),
      (jaxrelu.prelu, (2, 4, 5)),
      (jaxrelu.leaky_relu, (4,)),
    ):
      with self.assertRaisesRegex(
        ValueError, r'negative_slope of shape .* does not broadcast.*\(4, 5\)'
      ):
        fn(x, jnp.ones(shape))


class RReLUTrainingTest(parameterized.TestCase):
  def test_slopes_in_bounds_and_gradient_is_slope_used(self):
    x = -jnp.ones(4096, jnp.float32)
    key = jax.random.key(7)
    slopes = -np.asarray(jaxrelu.rrelu(x, key, lower=0.2, upper=0.3))
    self.assertTrue(np.all((slopes >= 0.2) & (slopes <= 0.3)))
    # Mean of U(0.2, 0.3) over 4096 draws: std 0.1 / sqrt(12 * 4096).
    self.assertLess(abs(slopes.mean() - 0.25), 5 * 0.1 / np.sqrt(12 * 4096))
    # rrelu'(0) and rrelu'(x < 0) are the slope drawn for that element.
    for point in (0.0, -3.0):
      grad = jax.grad(
        lambda x: jnp.sum(jaxrelu.rrelu(x, key, lower=0.2, upper=0.3))
      )(jnp.full(4096, point, jnp.float32))
      np.testing.assert_array_equal(grad, slopes)

  def test_same_key_same_output_new_key_new_output(self):
    x = -jnp.ones(64)
    a = jaxrelu.rrelu(x, jax.random.key(0))
    np.testing.assert_array_equal(a, jaxrelu.rrelu(x, jax.random.key(0)))
    self.assertFalse(np.array_equal(a, jaxrelu.rrelu(x, jax.random.key(1))))

  def test_raw_uint32_key(self):
    y = jaxrelu.rrelu(-jnp.ones(16), jax.random.PRNGKey(0))
    self.assertTrue(np.all((-y >= 1 / 8) & (-y <= 1 / 3)))

  def test_lower_equals_upper_is_leaky_relu(self):
    x = jnp.linspace(-3, 3, 11)
    np.testing.assert_array_equal(
      jaxrelu.rrelu(x, jax.random.key(0), lower=0.2, upper=0.2),
      np.where(np.asarray(x) > 0, x, np.float32(0.2) * np.asarray(x)),
    )


def _layers(fn, x, weights):
  for w in weights:
    x = fn(x @ w)
  return x


class TransformationTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.x = jax.random.normal(jax.random.key(0), (8, 16), jnp.float32)

  @parameterized.named_parameters(*NAMED_CASES)
  def test_vmap_matches_batched_call(self, name):
    fn = CASES[name][0]
    np.testing.assert_array_equal(jax.vmap(fn)(self.x), fn(self.x))

  @parameterized.named_parameters(*NAMED_CASES)
  def test_scan_and_checkpoint_match_unrolled(self, name):
    fn = CASES[name][0]
    w = 0.3 * jax.random.normal(jax.random.key(1), (5, 16, 16), jnp.float32)

    def scanned(x, w):
      step = lambda h, wi: (fn(h @ wi), None)
      return jnp.sum(jax.lax.scan(jax.checkpoint(step), x, w)[0])

    unrolled = lambda x, w: jnp.sum(_layers(fn, x, w))
    chex.assert_trees_all_close(
      jax.grad(scanned, argnums=(0, 1))(self.x, w),
      jax.grad(unrolled, argnums=(0, 1))(self.x, w),
      rtol=1e-5,
      atol=1e-6,
    )

  def test_rrelu_under_vmap_over_keys(self):
    keys = jax.random.split(jax.random.key(0), 4)
    ys = jax.vmap(lambda k: jaxrelu.rrelu(-jnp.ones(32), k))(keys)
    for k, y in zip(keys, ys, strict=True):
      np.testing.assert_array_equal(y, jaxrelu.rrelu(-jnp.ones(32), k))

  def test_no_retracing_under_jit(self):
    traced = {
      'elu': lambda x, a: jaxrelu.elu(x, alpha=a),
      'celu': lambda x, a: jaxrelu.celu(x, alpha=a),
      'leaky_relu': lambda x, a: jaxrelu.leaky_relu(x, a),
      'prelu': jaxrelu.prelu,
      'rrelu': lambda x, a: jaxrelu.rrelu(x, jax.random.key(0), upper=a),
    }
    for fn in traced.values():
      checked = jax.jit(chex.assert_max_traces(fn, n=1))
      for a in (0.2, 0.5, 0.9):
        checked(self.x + a, a)
    chex.clear_trace_counter()

  def test_no_retracing_of_eager_calls(self):
    # Warm up, then count trace events while hyperparameters vary.
    calls = [
      lambda a: jaxrelu.relu(self.x + a),
      lambda a: jaxrelu.elu(self.x, alpha=a),
      lambda a: jaxrelu.celu(self.x, alpha=a),
      lambda a: jaxrelu.leaky_relu(self.x, a),
      lambda a: jaxrelu.selu(self.x * a),
      lambda a: jaxrelu.rrelu(self.x, jax.random.key(1), lower=a / 2),
    ]
    for call in calls:
      call(0.5)
    events = []
    listener = lambda event, *_, **__: events.append(event)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
      for a in (0.1, 0.2, 0.3):
        for call in calls:
          call(a)
    finally:
      jax.monitoring.unregister_event_duration_listener(listener)
    traces = [e for e in events if 'trace' in e or 'compile' in e]
    self.assertEqual(traces, [])


# The registry's activations that need no hyperparameter and draw nothing.
_PLAIN = [
  (name, spec)
  for name, spec in registry.ACTIVATIONS.items()
  if not spec.random
  and all(h.default is not None for h in spec.hyperparameters)
]


class ResidualMemoryTest(parameterized.TestCase):
  """Bytes saved for the backward pass per float32 element, measured,
  against what the registry declares (`Activation.residual_bytes`)."""

  @parameterized.named_parameters(
    *((name, spec.fn, spec.residual_bytes) for name, spec in _PLAIN),
    ('rrelu_eval', functools.partial(jaxrelu.rrelu, deterministic=True), 1),
    (
      'prelu_scalar',
      lambda x: jaxrelu.prelu(x, jnp.float32(0.25)),
      registry.get('prelu').residual_bytes,
    ),
    ('prelu_channel', lambda x: jaxrelu.prelu(x, jnp.full(256, 0.25)), 1.1),
    (
      'rrelu_train',
      lambda x: jaxrelu.rrelu(x, jax.random.key(0)),
      registry.get('rrelu').residual_bytes,
    ),
  )
  def test_residual_bytes_per_element(self, fn, limit):
    x = jnp.linspace(-3, 3, 64 * 256, dtype=jnp.float32).reshape(64, 256)
    saved = memory.residual_bytes(memory.saved_residuals(fn, x))
    # The limit per element, plus room for two saved scalars (a slope).
    self.assertLessEqual(saved, limit * x.size + 8)

  @parameterized.parameters(
    *(name for name, spec in _PLAIN if spec.jax_nn is not None)
  )
  def test_mlp_step_compiled_memory_not_above_jax_nn(self, name):
    # Compiled temporary memory of a jitted SGD step (issue 2, section 3),
    # at a small size; the benchmark measures 16 x 2048 x 1024.
    spec = registry.get(name)
    ours = memory.mlp_temp_bytes(spec.fn, 4, 256, 128, jnp.float32)
    theirs = memory.mlp_temp_bytes(spec.jax_nn, 4, 256, 128, jnp.float32)
    self.assertLessEqual(ours, theirs)

  def test_prelu_with_slope_gradient_saves_only_x(self):
    x = jnp.linspace(-3, 3, 4096, dtype=jnp.float32)
    lines = memory.saved_residuals(jaxrelu.prelu, x, jnp.float32(0.25))
    self.assertLessEqual(memory.residual_bytes(lines), 4 * x.size + 8)


# Every floating dtype narrower than float32 that jax has and XLA computes
# in (float6_* cannot be held in an array; float8_e8m0fnu has no sign or
# zero).
NARROW_DTYPES = (
  jnp.float16,
  jnp.bfloat16,
  jnp.float8_e3m4,
  jnp.float8_e4m3,
  jnp.float8_e4m3fn,
  jnp.float8_e4m3fnuz,
  jnp.float8_e4m3b11fnuz,
  jnp.float8_e5m2,
  jnp.float8_e5m2fnuz,
  jnp.float4_e2m1fn,
)
NARROW_CASES = (
  'relu',
  'relu6',
  'leaky_relu',
  'prelu',
  'rrelu_eval',
  'elu',
  'selu',
  'celu_alpha_0.5',
)


def _every_value(dtype):
  """Every bit pattern of a narrow dtype: all of its values, NaNs included.

  Less float32's subnormals (bfloat16 has float32's exponent range): XLA on
  CPU flushes them to zero, in jax.nn's programs too (README, Dtypes).
  """
  bits = jnp.finfo(dtype).bits
  raw = np.arange(2**bits, dtype=np.uint16 if bits == 16 else np.uint8)
  with np.errstate(invalid='ignore'):
    x = np.unique(raw.view(np.dtype(dtype)).astype(np.float64))
  return x[~_flushed(x)]


def _flushed(v):
  v = np.abs(v)
  return (v > 0) & (v < float(jnp.finfo(jnp.float32).tiny))


def assert_rounded_once(actual, exact, dtype):
  """actual is exact rounded once to dtype, up to float32's own error.

  The functions compute in float32 (within a few ulp of exact) and round
  once. So actual must be no farther from the exact value than the
  correctly rounded one is, but for 8 float32 ulp of slack: only a value
  that close to a rounding midpoint may land on the other neighbour.
  """
  actual = np.asarray(actual, np.float64)
  with np.errstate(all='ignore'):
    # A result below float32's normal range is flushed to (signed) zero.
    exact = np.where(_flushed(exact), 0.0 * exact, exact)
    rounded = exact.astype(dtype).astype(np.float64)
  np.testing.assert_array_equal(np.isnan(actual), np.isnan(rounded))
  finite = np.isfinite(rounded)
  np.testing.assert_array_equal(actual[~finite], rounded[~finite])
  slack = 8 * float(jnp.finfo(jnp.float32).eps) * np.abs(exact[finite])
  err = np.abs(actual[finite] - exact[finite])
  best = np.abs(rounded[finite] - exact[finite])
  bad = err > best + slack
  np.testing.assert_array_equal(
    actual[finite][bad], rounded[finite][bad], err_msg=f'x64 = {exact}'
  )


class NarrowDtypeTest(parameterized.TestCase):
  """float16, bfloat16, float8, float4: every value, float64 rounded once."""

  @parameterized.parameters(*NARROW_DTYPES)
  def test_every_value_and_derivative_is_float64_rounded_once(self, dtype):
    x64 = _every_value(dtype)
    x = jnp.asarray(x64.astype(dtype))

    # One program per dtype: every function's value and derivative (one
    # jvp gives both; reverse mode is the same rule, transposed, and is
    # checked against forward mode in float32 above).
    @jax.jit
    def values_and_grads(x):
      ones = jnp.ones_like(x)
      return [jax.jvp(CASES[n][0], (x,), (ones,)) for n in NARROW_CASES]

    for name, (y, grad) in zip(NARROW_CASES, values_and_grads(x), strict=True):
      _, ref, nan_derivative = CASES[name]
      with np.errstate(all='ignore'):
        value, derivative = ref(x64)
      derivative = np.where(np.isnan(x64), nan_derivative, derivative)
      self.assertEqual(y.dtype, dtype, name)
      self.assertEqual(grad.dtype, dtype, name)
      with self.subTest(name=name, output='value'):
        assert_rounded_once(y, value, dtype)
      with self.subTest(name=name, output='derivative'):
        assert_rounded_once(grad, derivative, dtype)

  def test_leaky_relu_float8_issue_reproducer(self):
    # Was [nan nan nan 2]: a -inf floor cast to a dtype without infinity.
    x = jnp.array([-1, -0.5, 0, 2], jnp.float8_e4m3fn)
    for y in (
      jaxrelu.leaky_relu(x),
      jaxrelu.prelu(x, 0.25),
      jaxrelu.rrelu(x, deterministic=True),
      jaxrelu.rrelu(x, jax.random.key(0)),
    ):
      self.assertFalse(np.any(np.isnan(np.asarray(y, np.float32))), y)
      self.assertEqual(float(y[2]), 0.0)

  def test_unsupported_float_dtypes_refused(self):
    import ml_dtypes

    for x in (
      jnp.ones(3, jnp.float8_e8m0fnu),
      np.ones(3, ml_dtypes.float6_e2m3fn),
      np.ones(3, ml_dtypes.float6_e3m2fn),
    ):
      for name in ('relu', 'leaky_relu', 'elu'):
        with self.assertRaisesRegex(
          TypeError, f'{name}: x has dtype float[68]_.*accepted floating'
        ):
          getattr(jaxrelu, name)(x)


class NanAtEveryOrderTest(parameterized.TestCase):
  """A NaN input: derivatives of orders 1-3, forward and reverse."""

  def test_orders_one_to_three_at_nan(self):
    # One program for every function and order: 66 derivatives, one compile.
    @jax.jit
    def orders(x):
      out = {}
      for name, (fn, _, _) in CASES.items():
        rev = fwd = fn
        out[name] = [fn(x)]
        for _ in range(3):
          rev, fwd = jax.grad(rev), jax.jacfwd(fwd)
          out[name].append((rev(x), fwd(x)))
      return out

    for name, (value, *derivatives) in orders(jnp.float32(jnp.nan)).items():
      self.assertTrue(np.isnan(value), name)
      # The exponential units: NaN at every order (elu, celu and selu gave
      # 0 at orders 2 and 3 before). The piecewise-linear
      # ones take their left piece at a NaN input (a 1-byte mask cannot
      # carry a NaN): the slope at order 1 (relu: 0; PyTorch: 1), and 0
      # above, as everywhere on a linear piece.
      slope = np.float32(CASES[name][2])
      for order, (rev, fwd) in enumerate(derivatives, start=1):
        expected = slope if order == 1 else slope * 0
        for mode, got in (('rev', rev), ('fwd', fwd)):
          np.testing.assert_array_equal(
            got, expected, f'{name} order {order} {mode}'
          )


class HyperparameterDtypeTest(parameterized.TestCase):
  """Concrete hyperparameters are checked in the dtype they are used in."""

  @parameterized.parameters(
    ('leaky_relu', 'negative_slope', 1e39),
    ('leaky_relu', 'negative_slope', -1e39),
    ('prelu', 'negative_slope', 1e39),
    ('elu', 'alpha', 1e39),
    ('celu', 'alpha', 1e39),
    ('celu', 'alpha', 1e-46),
    ('celu', 'alpha', -1e-39),
  )
  def test_overflow_or_flush_in_float32_refused(self, name, arg, value):
    fn = getattr(jaxrelu, name)
    for x in (jnp.ones(3), jnp.ones(3, jnp.bfloat16)):
      for v in (value, np.float64(value), np.array([value, 1.0])):
        with self.assertRaisesRegex(
          ValueError, f'{name}: {arg} .*(finite|normal) in float32'
        ):
          fn(x, v) if name == 'prelu' else fn(x, **{arg: v})

  def test_largest_accepted_values_give_finite_results(self):
    # Just inside float32: the checks accept exactly what stays finite.
    big = float(np.float32(3.4e38))
    tiny = float(jnp.finfo(jnp.float32).tiny)
    x = jnp.array([-1.0, 0.0, 1.0])
    for y in (
      jaxrelu.leaky_relu(x, big),
      jaxrelu.elu(x, big),
      jaxrelu.celu(x, tiny),
      jaxrelu.celu(x, big),
    ):
      self.assertTrue(np.all(np.isfinite(y)), y)

  def test_float64_input_checks_in_float64(self):
    with jax.enable_x64(True):
      x = jnp.array([-1.0, 0.0], jnp.float64)
      np.testing.assert_array_equal(jaxrelu.leaky_relu(x, 1e39), [-1e39, 0])
      with self.assertRaisesRegex(ValueError, 'normal in float64'):
        jaxrelu.celu(x, 1e-310)
      # A float64 array checked for float64 x is checked again for float32.
      slope = jnp.asarray(1e39, jnp.float64)
      jaxrelu.leaky_relu(x, slope)
      with self.assertRaisesRegex(ValueError, 'finite in float32'):
        jaxrelu.leaky_relu(x.astype(jnp.float32), slope)


class CheckifyTest(parameterized.TestCase):
  """jax.experimental.checkify around every function (README, Known limits)."""

  def _user_checked(self, fn):
    def checked(x):
      checkify.check(jnp.all(x < 100), 'x must be below 100')
      return fn(x)

    return checkify.checkify(checked, errors=checkify.all_checks)

  def test_checkify_with_a_user_check_works_for_every_function(self):
    # Every function in one checked program: one compile.
    checked = jax.jit(
      self._user_checked(lambda x: [fn(x) for fn, _, _ in CASES.values()])
    )
    x = jnp.array([-1.0, 0.0, 2.0])
    err, ys = checked(x)
    self.assertIsNone(err.get())
    for (name, (_, ref, _)), y in zip(CASES.items(), ys, strict=True):
      np.testing.assert_allclose(
        y, ref(np.asarray(x, np.float64))[0], 1e-6, err_msg=name
      )
    err, _ = checked(x + 200)
    self.assertIn('x must be below 100', err.get())

  def test_jax_enable_checks_breaks_checkify_on_jax_0_10(self):
    # A jax bug (reported fixed in jax 0.11, the newest on PyPI here is
    # 0.10.2): with jax_enable_checks, checkify's error state trips an
    # internal assertion in a custom_jvp traced inside jit. jax.nn's
    # functions put custom_jvp outside jit and are not affected. When this
    # starts to pass, README's Known limits paragraph goes.
    fn = self._user_checked(jaxrelu.elu)
    with jax.enable_checks(True):
      if jax.__version_info__ < (0, 11):
        with self.assertRaises(AssertionError):
          fn(jnp.array([-1.0, 2.0]))
      else:  # pragma: no cover
        fn(jnp.array([-1.0, 2.0]))
      self._user_checked(jax.nn.elu)(jnp.array([-1.0, 2.0]))
