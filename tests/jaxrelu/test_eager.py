"""The eager fast paths: cached device scalars and accepted arrays."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import test_activations
from absl.testing import absltest

import jaxrelu
from jaxrelu import _checks


class EagerScalarTest(absltest.TestCase):
  def test_no_tracer_is_cached_from_inside_a_trace(self):
    # A concrete array closed over by a jitted function takes the eager
    # path while tracing; the cached scalar must not be the trace's.
    const = jnp.array([-2.0, -1.0, 1.0, 2.0])
    with jax.checking_leaks():
      got = jax.jit(lambda y: jaxrelu.prelu(const, 0.8125) * y)(2.0)
    np.testing.assert_array_equal(got, [-3.25, -1.625, 2.0, 4.0])
    np.testing.assert_array_equal(
      jaxrelu.prelu(const, 0.8125), [-1.625, -0.8125, 1.0, 2.0]
    )

  def test_committed_arrays_get_the_float(self):
    # The scalar lives on the default device: for an array placed on a
    # device (or sharded) the float is passed, so no device-to-device copy.
    x = jax.device_put(jnp.ones(3), jax.devices()[0])
    self.assertIs(type(_checks.eager_scalar(0.5, x)), float)
    self.assertIsNot(type(_checks.eager_scalar(0.5, jnp.ones(3))), float)
    np.testing.assert_allclose(
      jaxrelu.elu(-x, 2.0), 2.0 * np.expm1(-1.0), rtol=2e-7
    )

  def test_cached_scalar_follows_x64(self):
    x = jnp.array([-1.0])
    self.assertEqual(jaxrelu.elu(x, 0.75).dtype, jnp.float32)
    with jax.enable_x64(True):
      x64 = jnp.array([-1.0], jnp.float64)
      got = jaxrelu.elu(x64, 0.75)
      self.assertEqual(got.dtype, jnp.float64)
      np.testing.assert_allclose(got, 0.75 * np.expm1(-1.0), rtol=1e-15)


class AcceptedArrayTest(absltest.TestCase):
  """An array hyperparameter that passed the checks skips them when seen
  again with an input of the same shape, and only then."""

  # test_activations' float64 references, here with an array slope/alpha.
  CASES = (
    ('leaky_relu', jaxrelu.leaky_relu, test_activations.ref_leaky),
    ('prelu', jaxrelu.prelu, test_activations.ref_leaky),
    ('elu', jaxrelu.elu, test_activations.ref_elu),
    ('celu', jaxrelu.celu, test_activations.ref_celu),
  )

  def test_second_call_equals_the_formula(self):
    x = jnp.linspace(-3.0, 3.0, 12).reshape(3, 4)
    a = jnp.array([0.5, 1.0, 1.5, 2.0])
    for name, fn, reference in self.CASES:
      for _ in range(2):  # the checked call, then the fast path
        expected, _ = reference(np.float64(a))(np.float64(x))
        np.testing.assert_allclose(
          fn(x, a), expected, rtol=1e-6, atol=1e-7, err_msg=name
        )

  def test_other_shapes_and_other_arrays_are_checked(self):
    a = jnp.array([0.5, 1.0, 1.5, 2.0])
    for name, fn, _ in self.CASES:
      fn(jnp.ones((3, 4)), a)  # accepted for x of shape (3, 4)
      # Another x shape is checked afresh: (3, 5) does not broadcast.
      with self.assertRaisesRegex(ValueError, 'does not broadcast'):
        fn(jnp.ones((3, 5)), a)
      # Another array of the same shape is checked afresh, even at the
      # same address once the first is gone.
      bad = jnp.array([0.5, math.nan, 1.5, 2.0])
      with self.assertRaisesRegex(ValueError, r'\[1\] = nan'):
        fn(jnp.ones((3, 4)), bad)
      with self.assertRaisesRegex(ValueError, r'\[1\] = nan'):
        fn(jnp.ones((3, 4)), bad)  # never accepted
      self.assertFalse(_checks.accepted(bad, jnp.ones((3, 4))), name)

  def test_a_dead_array_is_not_taken_for_a_new_one(self):
    a = jnp.array([0.5, 1.0])
    jaxrelu.prelu(jnp.ones((2, 2)), a)
    key = id(a)
    self.assertTrue(_checks.accepted(a, jnp.ones((2, 2))))
    del a
    # Whatever now lives at that address, the weak reference is dead.
    ref = _checks._ACCEPTED[(key, (2, 2), jnp.dtype(jnp.float32))]
    self.assertIsNone(ref())


if __name__ == '__main__':
  absltest.main()
