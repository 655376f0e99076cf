"""The residual counter itself, on functions whose residuals are known."""

import functools

import jax
import jax.numpy as jnp
from absl.testing import absltest

import jaxrelu
from experiments.benchmark_activations import memory


class ResidualBytesTest(absltest.TestCase):
  def test_linear_function_saves_nothing(self):
    # At most a scalar literal (4 bytes in all), nothing per element.
    x = jnp.ones(1000, jnp.float32)
    lines = memory.saved_residuals(lambda x: 2 * x, x)
    self.assertLessEqual(memory.residual_bytes(lines), 4)

  def test_sin_saves_cos_in_input_dtype(self):
    # d/dx sin = cos(x): one array of x's dtype.
    for dtype, size in ((jnp.float32, 4), (jnp.bfloat16, 2)):
      x = jnp.ones(1000, dtype)
      per_element = memory.residual_bytes_per_element(jnp.sin, x)
      self.assertAlmostEqual(per_element, size, delta=0.01)

  def test_square_saves_the_input(self):
    x = jnp.ones((10, 100), jnp.float32)
    per_element = memory.residual_bytes_per_element(lambda x: x * x, x)
    self.assertAlmostEqual(per_element, 4, delta=0.01)

  def test_unknown_line_raises(self):
    with self.assertRaisesRegex(ValueError, 'cannot parse'):
      memory.residual_bytes(['c64[3] from somewhere'])


class CompiledStepMemoryTest(absltest.TestCase):
  """What a training step holds, from XLA's memory analysis (no timing).

  4 hidden layers of 256 x 512 float32 activations (0.5 MiB each): the
  weight gradients need every layer's output kept (2 MiB); a rule that also
  keeps the pre-activation, or an exp shared between value and derivative,
  adds an array per layer (the 4.5 MiB jax.nn's exponential units take).
  """

  def test_exponential_units_keep_one_array_per_layer(self):
    temp = functools.partial(
      memory.mlp_temp_bytes, layers=4, width=512, batch=256,
      dtype=jnp.float32,
    )  # fmt: skip
    relu = temp(jaxrelu.relu)
    for fn in (jaxrelu.elu, jaxrelu.selu, jaxrelu.celu):
      self.assertLessEqual(temp(fn), relu, fn.__name__)
    # The reference it beats: jax.nn's elu keeps two arrays per layer.
    self.assertGreaterEqual(temp(jax.nn.elu) - relu, 4 * 256 * 512 * 4)


if __name__ == '__main__':
  absltest.main()
