"""jaxrelu's Flax layers accept what Flax's own PReLU accepts.

Code written for `flax.nnx.PReLU` / `flax.linen.PReLU` must run unchanged
against jaxrelu's layers, with Flax's meaning for every keyword; only the
default initial slope differs (0.25 here, 0.01 in Flax). References are
float64 NumPy formulas.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from flax import nnx

from jaxrelu import linen as jrl
from jaxrelu import nnx as jrn

_X = np.linspace(-3.0, 3.0, 13)


def _reference(x, slope):
  x = np.asarray(x, np.float64)
  return np.where(x > 0, x, slope * x)


class NnxPReLUKeywordsTest(parameterized.TestCase):
  def test_first_positional_argument_is_the_initial_slope(self):
    layer = jrn.PReLU(0.1)
    self.assertEqual(layer.negative_slope[...].shape, ())
    np.testing.assert_allclose(
      layer(jnp.asarray(_X, jnp.float32)), _reference(_X, 0.1), rtol=1e-6
    )
    self.assertEqual(float(jrn.PReLU().negative_slope[...]), 0.25)

  @parameterized.product(
    dtype=[jnp.float32, jnp.float16, jnp.bfloat16],
    param_dtype=[jnp.float32, jnp.float16],
  )
  def test_dtype_is_the_computation_dtype(self, dtype, param_dtype):
    layer = jrn.PReLU(0.5, dtype=dtype, param_dtype=param_dtype)
    self.assertEqual(layer.negative_slope[...].dtype, param_dtype)
    y = layer(jnp.asarray(_X, jnp.float32))
    self.assertEqual(y.dtype, dtype)
    np.testing.assert_allclose(
      np.asarray(y, np.float64), _reference(_X, 0.5), rtol=1e-2
    )

  def test_without_dtype_the_input_dtype_wins(self):
    layer = jrn.PReLU(0.5, param_dtype=jnp.float32)
    self.assertEqual(layer(jnp.ones(3, jnp.float16)).dtype, jnp.float16)

  def test_custom_promote_dtype_is_called_with_dtype(self):
    seen = []

    def promote(arrays, *, dtype=None):
      seen.append(dtype)
      return tuple(jnp.asarray(a, dtype) for a in arrays)

    layer = jrn.PReLU(0.1, dtype=jnp.float32, promote_dtype=promote)
    y = layer(jnp.asarray(_X, jnp.float16))
    self.assertEqual(seen, [jnp.float32])
    self.assertEqual(y.dtype, jnp.float32)

  def test_slope_metadata_reaches_the_param(self):
    layer = jrn.PReLU(negative_slope_metadata={'my_tag': 'slope'})
    self.assertIsInstance(layer.negative_slope, nnx.Param)
    self.assertEqual(layer.negative_slope.my_tag, 'slope')

  def test_per_channel_slopes_with_flax_keywords(self):
    layer = jrn.PReLU(0.2, num_channels=3, dtype=jnp.float32)
    x = np.arange(-6.0, 6.0).reshape(4, 3)
    np.testing.assert_allclose(
      layer(jnp.asarray(x, jnp.float32)), _reference(x, 0.2), rtol=1e-6
    )

  def test_bad_arguments_name_themselves(self):
    with self.assertRaisesRegex(TypeError, 'negative_slope_init must be a'):
      jrn.PReLU(True)
    with self.assertRaisesRegex(TypeError, 'num_channels must be a positive'):
      jrn.PReLU(num_channels=2.5)
    with self.assertRaisesRegex(ValueError, 'axis=1 needs num_channels'):
      jrn.PReLU(axis=1)

  def test_linen_and_nnx_agree_on_outputs_and_slope_gradients(self):
    x = jnp.asarray(_X, jnp.float32)
    linen = jrl.PReLU(negative_slope_init=0.02, param_dtype=jnp.float32)
    variables = linen.init(jax.random.key(0), x)
    layer = jrn.PReLU(negative_slope_init=0.02, param_dtype=jnp.float32)
    np.testing.assert_allclose(layer(x), linen.apply(variables, x))
    g_linen = jax.grad(lambda v: linen.apply(v, x).mean())(variables)
    g_nnx = nnx.grad(lambda m: m(x).mean())(layer)
    # d/da mean(a * min(x, 0)) = mean(min(x, 0)).
    expected = np.minimum(_X, 0).mean()
    np.testing.assert_allclose(
      g_linen['params']['negative_slope'], expected, rtol=1e-6
    )
    np.testing.assert_allclose(g_nnx.negative_slope[...], expected, rtol=1e-6)


if __name__ == '__main__':
  absltest.main()
