"""The eager fast paths' cached device scalars."""

import jax
import jax.numpy as jnp
import numpy as np
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


if __name__ == '__main__':
  absltest.main()
