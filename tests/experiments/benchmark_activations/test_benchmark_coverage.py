"""The activation benchmark times every public path (issue 34 item 1).

Reads experiments/benchmark_activations/paths.py, the table of rows, not
the binary (binaries define flags and are not imported by tests).
"""

import contextlib
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import jaxrelu
from experiments.benchmark_activations import paths as bp
from jaxrelu import linen, nnx


class CoverageTest(absltest.TestCase):
  def test_every_public_function_and_layer_has_a_row(self):
    self.assertEmpty(bp.uncovered())

  def test_the_names_checked(self):
    names = bp.public_names()
    for name in (
      'jaxrelu.relu',
      'jaxrelu.alpha_dropout',
      'jaxrelu.linen.PReLU',
      'jaxrelu.nnx.AlphaDropout',
      'jaxrelu.diagnostics.recycle_units',
      'jaxrelu.diagnostics.activation_stats',
    ):
      self.assertIn(name, names)
    self.assertNotIn('jaxrelu.SELU_ALPHA', names)  # a constant, not a path
    # A row covers only real public names (no typo hides a gap).
    self.assertContainsSubset(bp.covered(), names)

  def test_a_new_public_name_without_a_row_fails(self):
    fakes = (
      (jaxrelu, 'fake_relu', lambda x: x),
      (linen, 'FakeLayer', type('FakeLayer', (), {})),
      (nnx, 'FakeLayer', type('FakeLayer', (), {})),
    )
    with contextlib.ExitStack() as stack:
      for module, name, value in fakes:
        stack.enter_context(mock.patch.object(module, name, value, create=True))
        stack.enter_context(
          mock.patch.object(module, '__all__', (*module.__all__, name))
        )
      self.assertEqual(
        bp.uncovered(),
        [
          'jaxrelu.fake_relu',
          'jaxrelu.linen.FakeLayer',
          'jaxrelu.nnx.FakeLayer',
        ],
      )
    # A row dropped from the tables is missed too.
    paths = {n: p for n, p in bp.PATHS.items() if n != 'recycle_units'}
    self.assertEqual(
      bp.uncovered(paths=paths), ['jaxrelu.diagnostics.recycle_units']
    )

  def test_references_compute_the_same_values(self):
    # Each formula reference draws its keys as ours does: the same output
    # (float32, 1024 elements, un-jitted: no compile of the timed modes).
    x = jax.random.normal(jax.random.key(1), (1, 1024))
    for name in ('prelu_learnable_channel', 'rrelu_train_key', 'alpha_dropout'):
      built = bp.PATHS[name].build(x)
      np.testing.assert_allclose(
        built.ours(x, built.d, built.c),
        built.reference(x, built.reference_d, built.c),
        rtol=1e-6,
        atol=1e-7,  # a * x + b near 0: rounded in another order
        err_msg=name,
      )
    self.assertTrue(jnp.any(built.ours(x, built.d, built.c) != x))


if __name__ == '__main__':
  absltest.main()
