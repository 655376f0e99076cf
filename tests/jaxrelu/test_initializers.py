"""jaxrelu.initializers against closed forms, integrals and sampling bounds."""

import functools
import math
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from scipy import stats

from jaxrelu import initializers


def _second_moment(f, n=2_000_001):
  """E[f(z)^2], z ~ N(0, 1), by a fine trapezoid rule in float64."""
  z = np.linspace(-12.0, 12.0, n)
  pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
  return float(np.trapezoid(f(z) ** 2 * pdf, z))


class GainTest(parameterized.TestCase):
  def test_known_values(self):
    self.assertAlmostEqual(initializers.gain('relu'), math.sqrt(2), places=12)
    self.assertAlmostEqual(initializers.gain('leaky_relu', 0.01), 1.41414, 5)
    self.assertAlmostEqual(
      initializers.gain('prelu'), math.sqrt(2 / (1 + 0.25**2)), places=12
    )
    self.assertEqual(initializers.gain('selu'), 1.0)
    self.assertEqual(initializers.gain('linear'), 1.0)
    self.assertAlmostEqual(initializers.gain('tanh'), 5 / 3, places=12)

  def test_rrelu_uses_the_mean_square_slope(self):
    lo, hi = 0.1, 0.3
    slopes = np.linspace(lo, hi, 1_000_001)
    mean_square = np.mean(slopes**2)
    self.assertAlmostEqual(
      initializers.gain('rrelu', (lo, hi)),
      math.sqrt(2 / (1 + mean_square)),
      places=7,  # the grid average's own O(1/N) error
    )

  @parameterized.parameters(('elu', 1.0), ('elu', 0.5), ('celu', 2.0))
  def test_exponential_units_keep_unit_second_moment(self, name, alpha):
    if name == 'elu':
      f = lambda z: np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))
    else:
      f = lambda z: np.where(
        z > 0, z, alpha * np.expm1(np.minimum(z, 0) / alpha)
      )
    expected = 1 / math.sqrt(_second_moment(f))
    self.assertAlmostEqual(initializers.gain(name, alpha), expected, places=8)

  def test_relu_rule_matches_the_unit_scale_rule(self):
    # The He formula is the same rule: 1 / sqrt(E[relu(z)^2]) = sqrt(2).
    expected = 1 / math.sqrt(_second_moment(lambda z: np.maximum(z, 0)))
    self.assertAlmostEqual(initializers.gain('relu'), expected, places=8)

  def test_usable_inside_jit(self):
    # Initializers are often built inside jitted init functions.
    @jax.jit
    def init(key):
      return initializers.for_activation('elu')(key, (64, 32))

    w = init(jax.random.key(0))
    self.assertEqual(w.shape, (64, 32))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "unknown activation 'swish'"):
      initializers.gain('swish')
    with self.assertRaisesRegex(ValueError, 'lower must not exceed upper'):
      initializers.gain('rrelu', (0.5, 0.1))


class VarianceScalingTest(parameterized.TestCase):
  @parameterized.product(
    name=('relu', 'leaky_relu', 'selu', 'elu', 'tanh'),
    distribution=('normal', 'truncated_normal', 'uniform'),
  )
  def test_variance_is_gain_squared_over_fan_in(self, name, distribution):
    fan_in, fan_out = 400, 500
    init = initializers.for_activation(name, distribution=distribution)
    w = np.asarray(init(jax.random.key(0), (fan_in, fan_out)), np.float64)
    target = initializers.gain(name) ** 2 / fan_in
    # Sample variance of N draws: SE <= var * sqrt(2 / N) (normal tails;
    # lighter for truncated normal and uniform).
    se = target * math.sqrt(2 / w.size)
    self.assertLess(abs(w.var() - target), 5 * se)
    self.assertLess(abs(w.mean()), 5 * math.sqrt(target / w.size))


class RAITest(absltest.TestCase):
  def test_shapes_and_reproducibility(self):
    w, b = initializers.rai(jax.random.key(0), 7, 5)
    self.assertEqual(w.shape, (7, 5))
    self.assertEqual(b.shape, (5,))
    w2, _ = initializers.rai(jax.random.key(0), 7, 5)
    np.testing.assert_array_equal(w, w2)
    w3, _ = initializers.rai(jax.random.key(1), 7, 5)
    self.assertFalse(np.array_equal(w, w3))
    with self.assertRaisesRegex(ValueError, 'fan_in and fan_out must be >= 1'):
      initializers.rai(jax.random.key(0), 0, 5)

  def test_statistics(self):
    # fan_in = 3: each column has 4 entries, one from Beta(2, 1).
    n, units = 3, 40_000
    w, b = initializers.rai(jax.random.key(3), n, units)
    v = np.concatenate([np.asarray(w), np.asarray(b)[None]], 0).astype(
      np.float64
    )
    sigma2 = initializers.RAI_SIGMA**2 / n
    # Fraction of positive entries: (n / 2 + 1) / (n + 1) = 0.625 (0.5 for
    # a symmetric init).
    frac = np.mean(v > 0)
    se = math.sqrt(0.625 * 0.375 / v.size)
    self.assertLess(abs(frac - 0.625), 5 * se)
    # Column sums: Beta(2, 1) mean 2/3 plus n normal entries.
    sums = v.sum(0)
    var_sum = n * sigma2 + 1 / 18
    self.assertLess(abs(sums.mean() - 2 / 3), 5 * math.sqrt(var_sum / units))
    # Column sums of squares: n * sigma^2 + E[Beta^2] = sigma_RAI^2 + 1/2.
    sq = (v**2).sum(0)
    expected = n * sigma2 + 0.5
    # Beta(2, 1)'s moments are E[B^k] = 2 / (k + 2): Var[B^2] = 1/3 - 1/4.
    var_sq = n * 2 * sigma2**2 + (1 / 3 - 1 / 4)
    self.assertLess(abs(sq.mean() - expected), 5 * math.sqrt(var_sq / units))

  def test_asymmetric_entry_is_positive_even_for_a_zero_uniform_draw(self):
    # float32 uniforms are 0 with probability 2^-23; Beta(2, 1)'s entry must
    # stay positive (no unit born dead for every input) even then.
    zeros = lambda key, shape, dtype: jnp.zeros(shape, dtype)
    with mock.patch.object(jax.random, 'uniform', zeros):
      w, b = initializers.rai(jax.random.key(0), 4, 6)
    v = np.concatenate([np.asarray(w), np.asarray(b)[None]], 0)
    # sqrt(1 - 0) = 1 in every column: the Beta entry, positive.
    np.testing.assert_array_equal((v == 1.0).sum(0), np.ones(6))

  def test_entries_follow_the_normal_and_beta_mixture(self):
    # Each entry of V = [W; b] is, with probability 1 / (fan_in + 1), the
    # Beta(2, 1) draw (CDF x^2 on [0, 1]), else N(0, sigma^2 / fan_in).
    n, units = 3, 40_000
    w, b = initializers.rai(jax.random.key(4), n, units)
    v = np.concatenate([np.asarray(w), np.asarray(b)[None]], 0).ravel()
    sigma = initializers.RAI_SIGMA / math.sqrt(n)

    def mixture_cdf(x, beta_cdf=lambda x: np.clip(x, 0, 1) ** 2):
      return n / (n + 1) * stats.norm.cdf(x / sigma) + beta_cdf(x) / (n + 1)

    self.assertGreater(stats.kstest(v, mixture_cdf).pvalue, 1e-3)
    # The test has the power to tell Beta(2, 1) from a uniform draw.
    uniform_cdf = functools.partial(
      mixture_cdf, beta_cdf=lambda x: np.clip(x, 0, 1)
    )
    self.assertLess(stats.kstest(v, uniform_cdf).pvalue, 1e-6)

  def test_rai_is_born_dead_less_often_than_he(self):
    # Depth 10, width 3, 1-D inputs: Lu et al. report ~60% born dead with
    # symmetric He init; RAI's asymmetric entries make it rarer.
    depth, width, trials = 10, 3, 2000
    x = jnp.linspace(-1.0, 1.0, 64)[:, None]
    keys = jax.random.split(jax.random.key(0), trials)
    layer_keys = jax.vmap(lambda k: jax.random.split(k, depth + 1))(keys)

    def init(key, fan_in, fan_out, use_rai):
      if use_rai:
        return initializers.rai(key, fan_in, fan_out)
      w = jax.random.normal(key, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
      return w, jnp.zeros(fan_out)

    def layer(h, keys, fan_in, fan_out, use_rai, relu=True):
      w, b = jax.vmap(
        functools.partial(init, fan_in=fan_in, fan_out=fan_out, use_rai=use_rai)
      )(keys)
      h = jnp.einsum('tnk,tkm->tnm', h, w) + b[:, None, :]
      return jax.nn.relu(h) if relu else h

    # One program per init; the depth - 1 middle layers share one scan body.
    @functools.partial(jax.jit, static_argnums=0)
    def born_dead_fraction(use_rai):
      h = jnp.broadcast_to(x, (trials, *x.shape))
      h = layer(h, layer_keys[:, 0], 1, width, use_rai)
      h, _ = jax.lax.scan(
        lambda h, k: (layer(h, k, width, width, use_rai), None),
        h,
        jnp.swapaxes(layer_keys[:, 1:depth], 0, 1),
      )
      h = layer(h, layer_keys[:, depth], width, 1, use_rai, relu=False)
      dead = jnp.max(h, axis=(1, 2)) == jnp.min(h, axis=(1, 2))
      return jnp.mean(dead)

    he, rai = float(born_dead_fraction(False)), float(born_dead_fraction(True))
    self.assertGreater(he, 0.4)  # the phenomenon is real at this size
    self.assertLess(rai, he - 10 * math.sqrt(0.25 / trials))


if __name__ == '__main__':
  absltest.main()
