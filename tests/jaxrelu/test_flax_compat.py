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

import jaxrelu
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


class FieldOrderTest(parameterized.TestCase):
  """Positional fields mean what they mean in Flax's own PReLU."""

  def test_linen_first_field_is_param_dtype_as_in_flax(self):
    import flax.linen as nn

    x = jnp.asarray(_X, jnp.float32)
    ours = jrl.PReLU(jnp.bfloat16)
    theirs = nn.PReLU(jnp.bfloat16)
    self.assertEqual(ours.param_dtype, theirs.param_dtype)
    variables = ours.init(jax.random.key(0), x)
    self.assertEqual(variables['params']['negative_slope'].dtype, jnp.bfloat16)
    # Flax's positional order, both fields: (param_dtype, negative_slope_init).
    y = jrl.PReLU(jnp.float32, 0.5).apply(
      {'params': {'negative_slope': jnp.float32(0.5)}}, x
    )
    np.testing.assert_allclose(y, _reference(_X, 0.5), rtol=1e-6)

  def test_slope_given_as_param_dtype_names_the_mistake(self):
    # The old order took the slope first: a one-line error, not a TypeError
    # from inside the initializer.
    for make in (
      lambda: jrl.PReLU(0.25).init(jax.random.key(0), jnp.ones(3)),
      lambda: jrn.PReLU(param_dtype=0.25),
    ):
      with self.assertRaisesRegex(
        TypeError, r'PReLU: param_dtype must be a floating dtype.*0\.25'
      ):
        make()

  def test_nnx_stochastic_errors_use_flax_dropout_wording(self):
    x = jnp.ones(3)
    for make in (lambda **k: jrn.AlphaDropout(0.1, **k), jrn.RReLU):
      layer = make()
      name = type(layer).__name__
      with self.assertRaisesRegex(
        ValueError,
        rf'^`deterministic` is False, but no `rngs` argument was provided to '
        rf'{name} as either a __call__ argument or class attribute',
      ):
        layer(x)
      undecided = make(deterministic=None, rngs=nnx.Rngs(dropout=0))
      with self.assertRaisesRegex(
        ValueError, rf'^No `deterministic` argument was provided to {name}'
      ):
        undecided(x)
      with self.assertRaisesRegex(
        TypeError, r'rngs must be a Rngs, RngStream or jax\.Array, but got'
      ):
        layer(x, rngs='key')


if __name__ == '__main__':
  absltest.main()


_ALPHA_P = (
  -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717
)


def _affine(rate):
  """Klambauer et al.'s a and b, in float64."""
  q = 1.0 - rate
  a = (q + _ALPHA_P**2 * q * (1 - q)) ** -0.5
  return a, -a * (1 - q) * _ALPHA_P


class AlphaDropoutBroadcastDimsTest(absltest.TestCase):
  def _check_shared_along_rows(self, x, y, rate):
    a, b = _affine(rate)
    dropped = np.isclose(np.asarray(y, np.float64), a * _ALPHA_P + b, atol=1e-6)
    # One mask for every row: each column is dropped in all rows or none.
    self.assertTrue(np.all(dropped == dropped[:1]))
    self.assertTrue(dropped[0].any() and not dropped[0].all())
    kept = ~dropped
    np.testing.assert_allclose(
      np.asarray(y, np.float64)[kept],
      a * np.asarray(x, np.float64)[kept] + b,
      rtol=1e-5,
      atol=1e-6,
    )

  def test_functional_mask_is_shared_along_broadcast_dims(self):
    x = jax.random.normal(jax.random.key(0), (64, 32))
    y = jrl.AlphaDropout(0.5, broadcast_dims=(0,)).apply(
      {}, x, deterministic=False, rngs={'dropout': jax.random.key(1)}
    )
    self._check_shared_along_rows(x, y, 0.5)
    layer = jrn.AlphaDropout(
      0.5, broadcast_dims=(-2,), rngs=nnx.Rngs(dropout=2)
    )
    self._check_shared_along_rows(x, layer(x), 0.5)

  def test_shared_masks_keep_mean_zero_and_variance_one(self):
    # Each row of 8 is kept or dropped whole; 20000 independent rows.
    x = jax.random.normal(jax.random.key(3), (20_000, 8))
    layer = jrn.AlphaDropout(0.1, broadcast_dims=(1,), rngs=nnx.Rngs(dropout=4))
    y = np.asarray(layer(x), np.float64)
    # Row-level draws: the standard error of the mean is about
    # sqrt(8 / 160000) = 0.007; 0.03 is over 4 of them.
    self.assertLess(abs(y.mean()), 0.03)
    self.assertLess(abs(y.std() - 1.0), 0.03)

  def test_bad_broadcast_dims_name_themselves(self):
    x = jnp.ones((4, 3))
    key = jax.random.key(0)
    for dims in ((2,), (0, -2), (True,)):
      with self.assertRaisesRegex(
        ValueError, 'broadcast_dims must be distinct'
      ):
        jaxrelu.alpha_dropout(x, 0.1, key, broadcast_dims=dims)
    with self.assertRaisesRegex(ValueError, 'varies along broadcast_dims'):
      jaxrelu.alpha_dropout(
        x, jnp.array([[0.1], [0.2], [0.1], [0.1]]), key, broadcast_dims=(0,)
      )
    # Checked in evaluation mode too.
    with self.assertRaisesRegex(ValueError, 'broadcast_dims'):
      jaxrelu.alpha_dropout(x, 0.1, deterministic=True, broadcast_dims=(5,))
