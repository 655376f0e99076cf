"""jaxrelu.selu_theory against the paper's numbers and Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import jaxrelu
from jaxrelu import selu_theory

# Klambauer et al. (2017), typed in.
ALPHA01 = 1.6732632423543772848170429916717
SCALE01 = 1.0507009873554804934193349852946


class SeluTheoryTest(parameterized.TestCase):
  def test_selu_parameters_reproduce_the_paper(self):
    alpha, scale = selu_theory.selu_parameters(0.0, 1.0)
    self.assertAlmostEqual(alpha, ALPHA01, delta=1e-12)
    self.assertAlmostEqual(scale, SCALE01, delta=1e-12)
    alpha, scale = selu_theory.selu_parameters(0.0, 2.0)
    self.assertAlmostEqual(alpha, 1.97126, delta=5e-6)
    self.assertAlmostEqual(scale, 1.06071, delta=5e-6)

  def test_zero_one_is_a_fixed_point(self):
    with jax.enable_x64(True):
      mean, var = selu_theory.selu_moments(0.0, 1.0)
      p = selu_theory.fixed_point(init=(0.7, 3.0))
    self.assertAlmostEqual(float(mean), 0.0, delta=1e-14)
    self.assertAlmostEqual(float(var), 1.0, delta=1e-14)
    np.testing.assert_allclose(p, (0.0, 1.0), atol=1e-12)

  def test_jacobian_at_zero_one(self):
    with jax.enable_x64(True):
      jac = np.asarray(selu_theory.moment_map_jacobian(0.0, 1.0))
    # Paper: J12 = 0.088834, J22 = 0.782648 (6 decimals), norm 0.7877.
    self.assertAlmostEqual(jac[0, 1], 0.088834, delta=1e-6)
    self.assertAlmostEqual(jac[1, 1], 0.782648, delta=1e-6)
    self.assertAlmostEqual(np.linalg.norm(jac, 2), 0.7877, delta=5e-5)
    np.testing.assert_allclose(jac[:, 0], 0.0, atol=1e-15)  # omega = 0

  def test_jacobian_matches_finite_difference(self):
    with jax.enable_x64(True):
      kw = dict(omega=0.3, tau=1.2)
      jac = np.asarray(selu_theory.moment_map_jacobian(0.4, 1.3, **kw))
      eps = 1e-6
      for j, (dm, dv) in enumerate(((eps, 0), (0, eps))):
        hi = np.array(selu_theory.selu_moments(0.4 + dm, 1.3 + dv, **kw))
        lo = np.array(selu_theory.selu_moments(0.4 - dm, 1.3 - dv, **kw))
        np.testing.assert_allclose(jac[:, j], (hi - lo) / (2 * eps), rtol=1e-7)

  def test_backward_gain(self):
    with jax.enable_x64(True):
      gain = float(selu_theory.selu_backward_gain(0.0, 1.0))
    self.assertAlmostEqual(gain, 1.0716, delta=5e-5)

  @parameterized.parameters(
    (0.0, 1.0, 0.0, 1.0), (0.5, 2.0, 1.0, 1.1), (-1.0, 0.3, -0.5, 0.9)
  )
  def test_moments_match_monte_carlo(self, mean, var, omega, tau):
    n = 4_000_000
    z = mean * omega + np.sqrt(var * tau) * np.asarray(
      jax.random.normal(jax.random.key(0), (n,), jnp.float32), np.float64
    )
    neg = np.minimum(z, 0)
    y = SCALE01 * np.where(z > 0, z, ALPHA01 * np.expm1(neg))
    d = SCALE01 * np.where(z > 0, 1.0, ALPHA01 * np.exp(neg))
    with jax.enable_x64(True):
      m, v = selu_theory.selu_moments(mean, var, omega=omega, tau=tau)
      g = selu_theory.selu_backward_gain(mean, var, omega=omega, tau=tau)
    # 6 standard errors of each Monte Carlo estimate.
    self.assertLess(abs(float(m) - y.mean()), 6 * y.std() / np.sqrt(n))
    se_var = np.sqrt(np.mean((y - y.mean()) ** 4) - y.var() ** 2) / np.sqrt(n)
    self.assertLess(abs(float(v) - y.var()), 6 * se_var)
    se_gain = tau * (d**2).std() / np.sqrt(n)
    self.assertLess(abs(float(g) - tau * np.mean(d**2)), 6 * se_gain)

  def test_generic_quadrature_matches_closed_forms(self):
    with jax.enable_x64(True):
      got = selu_theory.activation_moments(jaxrelu.selu, 0.3, 1.7, omega=1.0)
      want = selu_theory.selu_moments(0.3, 1.7, omega=1.0)
      gain = selu_theory.selu_backward_gain(0.3, 1.7, omega=1.0)
      relu = selu_theory.activation_moments(jaxrelu.relu, 0.0, 1.0)
    np.testing.assert_allclose(got, (*want, gain), rtol=1e-10, atol=1e-13)
    # relu on N(0, 1): mean 1/sqrt(2 pi), variance 1/2 - 1/(2 pi), gain 1/2.
    expected = (1 / np.sqrt(2 * np.pi), 0.5 - 1 / (2 * np.pi), 0.5)
    np.testing.assert_allclose(relu, expected, rtol=1e-10)

  def test_alpha_dropout_affine_keeps_target_moments(self):
    # For a target (mu, nu), the corrected mixture has mean mu, variance nu.
    alpha_p = -SCALE01 * ALPHA01
    for rate, mu, nu in ((0.1, 0.0, 1.0), (0.2, 0.5, 2.0), (0.05, -0.3, 0.5)):
      with jax.enable_x64(True):
        a, b = (
          float(v)
          for v in selu_theory.alpha_dropout_affine(rate, mean=mu, var=nu)
        )
      q = 1 - rate
      mean = a * (q * mu + (1 - q) * alpha_p) + b
      second = q * (nu + mu**2) + (1 - q) * alpha_p**2
      var = a**2 * (second - (q * mu + (1 - q) * alpha_p) ** 2)
      self.assertAlmostEqual(mean, mu, places=12)
      self.assertAlmostEqual(var, nu, places=12)

  def test_negative_controls_settle_where_the_issue_says(self):
    with jax.enable_x64(True):
      for tau, std in ((1.1, 1.19), (0.95, 0.91)):
        _, var = selu_theory.fixed_point(tau=tau)
        self.assertAlmostEqual(float(np.sqrt(var)), std, delta=0.01)

  def test_bad_variance(self):
    with self.assertRaisesRegex(ValueError, 'var must be finite and > 0'):
      selu_theory.selu_parameters(0.0, 0.0)


if __name__ == '__main__':
  absltest.main()


class AlphaDropoutMomentsTest(absltest.TestCase):
  def test_against_sampling_and_the_fixed_point(self):
    with jax.enable_x64(True):
      m, v = selu_theory.alpha_dropout_moments(0.0, 1.0, 0.1)
      self.assertAlmostEqual(float(m), 0.0, places=12)
      self.assertAlmostEqual(float(v), 1.0, places=12)
      m, v = selu_theory.alpha_dropout_moments(0.5, 2.0, 0.2)
    # Monte Carlo of the layer itself (float64 NumPy), off the fixed point.
    rng = np.random.default_rng(0)
    n = 2_000_000
    x = 0.5 + np.sqrt(2.0) * rng.standard_normal(n)
    keep = rng.random(n) < 0.8
    a, b = (float(t) for t in selu_theory.alpha_dropout_affine(0.2))
    y = a * np.where(keep, x, -jaxrelu.SELU_SCALE * jaxrelu.SELU_ALPHA) + b
    self.assertAlmostEqual(float(m), y.mean(), delta=4 * y.std() / np.sqrt(n))
    self.assertAlmostEqual(float(v), y.var(), delta=0.01)


class CorrelationMapTest(absltest.TestCase):
  def test_relu_matches_arc_cosine_kernel(self):
    # E[relu(u) relu(v)] = (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi).
    with jax.enable_x64(True):
      for c in (0.0, 0.3, -0.5, 0.9):
        got = float(selu_theory.correlation_map(jaxrelu.relu, c))
        cross = (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) / (2 * np.pi)
        mean, var = 1 / np.sqrt(2 * np.pi), 0.5 - 1 / (2 * np.pi)
        self.assertAlmostEqual(got, (cross - mean**2) / var, places=10)

  def test_selu_keeps_independent_samples_independent(self):
    # C(0) = 0, C(1) = 1, and C'(0) = E[selu']^2 = 0.9707 < 1: c* = 0.
    with jax.enable_x64(True):
      self.assertAlmostEqual(
        float(selu_theory.correlation_map(jaxrelu.selu, 0.0)), 0.0, places=12
      )
      self.assertAlmostEqual(
        float(selu_theory.correlation_map(jaxrelu.selu, 1.0)), 1.0, places=10
      )
      eps = 1e-4
      slope = float(selu_theory.correlation_map(jaxrelu.selu, eps)) / eps
      d1 = float(
        selu_theory.gaussian_expectation(lambda z: jaxrelu.selu(z) * z)
      )
    self.assertAlmostEqual(slope, d1**2, places=4)
    self.assertAlmostEqual(d1**2, 0.9707, places=4)
    self.assertAlmostEqual(
      selu_theory.correlation_fixed_point(jaxrelu.selu), 0.0, places=10
    )
