"""jaxrelu.alpha_dropout against its closed form and sampling bounds."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized
from jax.test_util import check_grads

import jaxrelu
from experiments.benchmark_activations import memory

# -scale * alpha of SELU, typed from Klambauer et al. (2017).
ALPHA_PRIME = (
  -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717
)


def affine64(rate):
  """(a, b) in float64, written independently of the library."""
  q = 1.0 - rate
  a = (q + ALPHA_PRIME**2 * q * (1.0 - q)) ** -0.5
  return a, -a * (1.0 - q) * ALPHA_PRIME


def output_moments(rate):
  """Exact mean, variance and 4th central moment of the output on N(0, 1).

  With probability q the output is a x + b, x ~ N(0, 1); with 1 - q it is
  the constant c = a alpha' + b.
  """
  a, b = affine64(rate)
  q = 1.0 - rate
  c = a * ALPHA_PRIME + b
  mean = q * b + (1 - q) * c
  m2 = q * (a**2 + b**2) + (1 - q) * c**2
  var = m2 - mean**2
  # E[(a x + b - mean)^4] with d = b - mean: a^4 3 + 6 a^2 d^2 + d^4.
  d = b - mean
  m4 = q * (3 * a**4 + 6 * a**2 * d**2 + d**4) + (1 - q) * (c - mean) ** 4
  return mean, var, m4


class AffineConstantsTest(parameterized.TestCase):
  @parameterized.parameters(
    (0.05, 0.954844, 0.083936),
    (0.10, 0.921285, 0.161971),
  )
  def test_paper_values(self, rate, a, b):
    # The paper's values are rounded to 6 decimals: half a unit of slack.
    with jax.enable_x64(True):
      got_a, got_b = jaxrelu.alpha_dropout_affine(rate)
    self.assertAlmostEqual(float(got_a), a, delta=5e-7)
    self.assertAlmostEqual(float(got_b), b, delta=5e-7)

  @parameterized.parameters(0.0, 0.05, 0.1, 0.2, 0.5, 0.9)
  def test_output_moments_are_zero_and_one(self, rate):
    # The closed form itself: exact mean 0 and variance 1 for every rate.
    mean, var, _ = output_moments(rate)
    self.assertAlmostEqual(mean, 0.0, places=12)
    self.assertAlmostEqual(var, 1.0, places=12)

  def test_float64_constants(self):
    with jax.enable_x64(True):
      a, b = jaxrelu.alpha_dropout_affine(0.2)
    np.testing.assert_allclose([a, b], affine64(0.2), rtol=1e-15)


class AlphaDropoutTest(chex.TestCase):
  def setUp(self):
    super().setUp()
    self.x = jax.random.normal(jax.random.key(0), (2**20,), jnp.float32)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.05, 0.1, 0.2)
  def test_values_are_kept_or_saturated(self, rate):
    y = np.asarray(
      self.variant(lambda x: jaxrelu.alpha_dropout(x, rate, jax.random.key(1)))(
        self.x
      ),
      np.float64,
    )
    a, b = affine64(rate)
    x = np.asarray(self.x, np.float64)
    kept = np.isclose(y, a * x + b, rtol=1e-6, atol=1e-6)
    dropped = np.isclose(y, a * ALPHA_PRIME + b, rtol=1e-6)
    self.assertTrue(np.all(kept | dropped))
    # Dropped fraction: binomial, 5 standard errors.
    frac = np.mean(dropped & ~kept)
    self.assertLess(abs(frac - rate), 5 * np.sqrt(rate * (1 - rate) / x.size))

  @parameterized.parameters(0.05, 0.1, 0.2)
  def test_mean_zero_variance_one_within_sampling_error(self, rate):
    n = self.x.size
    ys = [
      np.asarray(jaxrelu.alpha_dropout(self.x, rate, k), np.float64)
      for k in jax.random.split(jax.random.key(2), 3)
    ]
    _, var, m4 = output_moments(rate)
    for y in ys:
      # Standard errors of the sample mean and the sample variance.
      se_mean = np.sqrt(var / n)
      se_var = np.sqrt((m4 - var**2) / n)
      self.assertLess(abs(y.mean()), 5 * se_mean)
      self.assertLess(abs(y.var() - 1.0), 5 * se_var)

  def test_gradient_is_a_on_kept_and_zero_on_dropped(self):
    rate, key = 0.2, jax.random.key(3)
    x = self.x[:4096]
    y = jaxrelu.alpha_dropout(x, rate, key)
    grad = jax.grad(lambda x: jnp.sum(jaxrelu.alpha_dropout(x, rate, key)))(x)
    a, b = affine64(rate)
    dropped = np.isclose(np.asarray(y), a * ALPHA_PRIME + b, rtol=1e-6)
    np.testing.assert_allclose(grad, np.where(dropped, 0.0, a), rtol=1e-6)

  def test_check_grads_and_nan_cotangent(self):
    key = jax.random.key(4)
    with jax.enable_x64(True):
      x = np.linspace(-3, 3, 41)
      check_grads(
        lambda x: jaxrelu.alpha_dropout(x, 0.3, key),
        (x,),
        order=2,
        modes=('fwd', 'rev'),
      )
    _, vjp = jax.vjp(lambda x: jaxrelu.alpha_dropout(x, 0.5, key), self.x[:64])
    self.assertTrue(np.all(np.isnan(vjp(jnp.full(64, jnp.nan))[0])))

  def test_residual_is_the_keep_mask(self):
    x = self.x[:4096].reshape(64, 64)
    fn = lambda x: jaxrelu.alpha_dropout(x, 0.1, jax.random.key(0))
    saved = memory.residual_bytes(memory.saved_residuals(fn, x))
    self.assertLessEqual(saved, 1 * x.size + 8)

  def test_identity_cases(self):
    x = self.x[:100]
    for y in (
      jaxrelu.alpha_dropout(x, 0.0, jax.random.key(0)),
      jaxrelu.alpha_dropout(x, 0.0),
      jaxrelu.alpha_dropout(x, 0.5, deterministic=True),
    ):
      np.testing.assert_array_equal(y, x)

  def test_same_key_same_mask_new_key_new_mask(self):
    x = self.x[:1000]
    a = jaxrelu.alpha_dropout(x, 0.5, jax.random.key(0))
    np.testing.assert_array_equal(
      a, jaxrelu.alpha_dropout(x, 0.5, jax.random.key(0))
    )
    self.assertFalse(
      np.array_equal(a, jaxrelu.alpha_dropout(x, 0.5, jax.random.key(1)))
    )

  @parameterized.parameters(jnp.bfloat16, jnp.float16, jnp.float32)
  def test_dtype_preserved(self, dtype):
    y = jaxrelu.alpha_dropout(self.x[:64].astype(dtype), 0.1, jax.random.key(0))
    self.assertEqual(y.dtype, dtype)

  @parameterized.parameters(-0.1, 1.0, 1.5, np.nan)
  def test_bad_rate(self, rate):
    with self.assertRaisesRegex(
      ValueError, r'alpha_dropout: rate must be in \[0, 1\)'
    ):
      jaxrelu.alpha_dropout(self.x, rate, jax.random.key(0))

  def test_missing_key(self):
    with self.assertRaisesRegex(
      ValueError, 'alpha_dropout: key is None.*deterministic=True'
    ):
      jaxrelu.alpha_dropout(self.x, 0.1)
