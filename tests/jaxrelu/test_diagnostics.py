"""jaxrelu.diagnostics on constructed networks and against one-shot results."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from jaxrelu import diagnostics


def _mlp_preactivations(x, params):
  """Pre-activations of a ReLU MLP, one leaf per layer."""
  pre = {}
  h = x
  for i, (w, b) in enumerate(params):
    z = h @ w + b
    pre[f'layer{i}'] = z
    h = jax.nn.relu(z)
  return pre, h


class DeadUnitsTest(absltest.TestCase):
  def test_constructed_dead_and_live_units(self):
    x = jax.random.normal(jax.random.key(0), (256, 4))
    w1 = jax.random.normal(jax.random.key(1), (4, 3))
    # Unit 0 forced dead by its bias, unit 2 forced alive, unit 1 ordinary.
    b1 = jnp.array([-100.0, 0.0, 100.0])
    w2 = jnp.ones((3, 2))
    b2 = jnp.array([-1e6, 0.0])  # output unit 0 dead too
    pre, _ = _mlp_preactivations(x, [(w1, b1), (w2, b2)])
    masks = diagnostics.dead_units(pre)
    np.testing.assert_array_equal(masks['layer0'], [True, False, False])
    np.testing.assert_array_equal(masks['layer1'], [True, False])
    fractions = diagnostics.dead_fraction(pre)
    self.assertAlmostEqual(float(fractions['layer0']), 1 / 3, places=6)
    self.assertAlmostEqual(float(fractions['layer1']), 0.5, places=6)

  def test_threshold_and_multi_axis_units(self):
    pre = jnp.array([[[0.5, -1.0], [2.0, 0.0]], [[0.1, -2.0], [3.0, 0.0]]])
    np.testing.assert_array_equal(
      diagnostics.dead_units(pre), [[False, True], [False, True]]
    )
    np.testing.assert_array_equal(
      diagnostics.dead_units(pre, threshold=1.0), [[True, True], [False, True]]
    )

  def test_leaf_without_batch_axis_is_an_error(self):
    with self.assertRaisesRegex(ValueError, r'shape \(batch, \.\.\.units\)'):
      diagnostics.dead_fraction({'a': jnp.ones(3)})


class TrackerTest(absltest.TestCase):
  def test_streaming_equals_one_shot_exactly(self):
    key = jax.random.key(0)
    # Per-unit offsets from -6 (dead for any 1000 probes) to 0 (alive).
    pre = {
      'a': jax.random.normal(key, (1000, 64)) + jnp.linspace(-6, 0, 64),
      'b': jax.random.normal(jax.random.key(1), (1000, 8, 4))
      + jnp.linspace(-6, 0, 4),
    }
    update = jax.jit(diagnostics.tracker_update)
    state = diagnostics.tracker_init(
      jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), pre)
    )
    for start in range(0, 1000, 128):  # uneven last batch
      batch = jax.tree.map(lambda x, s=start: x[s : s + 128], pre)
      state = update(state, batch)
    self.assertEqual(int(state.examples), 1000)
    one_shot = diagnostics.dead_units(pre)
    for name in pre:
      np.testing.assert_array_equal(
        state.max_preactivation[name] <= 0, one_shot[name]
      )
    got = diagnostics.tracker_dead_fraction(state)
    want = diagnostics.dead_fraction(pre)
    for name in pre:
      self.assertEqual(float(got[name]), float(want[name]))
    # Some units are dead and some alive, so the check is not vacuous.
    self.assertTrue(0 < float(want['a']) < 1)

  def test_merge_of_halves_equals_whole(self):
    pre = {'a': jax.random.normal(jax.random.key(2), (500, 32)) - 2.0}
    init = diagnostics.tracker_init(pre)
    first = diagnostics.tracker_update(init, {'a': pre['a'][:250]})
    second = diagnostics.tracker_update(init, {'a': pre['a'][250:]})
    whole = diagnostics.tracker_update(init, pre)
    merged = diagnostics.tracker_merge(first, second)
    np.testing.assert_array_equal(
      merged.max_preactivation['a'], whole.max_preactivation['a']
    )
    self.assertEqual(int(merged.examples), 500)


class BornDeadTest(absltest.TestCase):
  def test_dead_layer_makes_output_constant(self):
    x = jnp.linspace(-3, 3, 101)[:, None]
    w1 = jnp.ones((1, 4))
    dead = [(w1, jnp.full(4, -10.0)), (jnp.ones((4, 1)), jnp.array([0.3]))]
    live = [(w1, jnp.zeros(4)), (jnp.ones((4, 1)), jnp.array([0.3]))]
    _, y_dead = _mlp_preactivations(x, dead)
    _, y_live = _mlp_preactivations(x, live)
    self.assertTrue(bool(diagnostics.born_dead(y_dead)))
    self.assertFalse(bool(diagnostics.born_dead(y_live)))

  def test_tolerances(self):
    y = jnp.array([1.0, 1.0 + 1e-7, 1.0])
    self.assertFalse(bool(diagnostics.born_dead(y)))
    self.assertTrue(bool(diagnostics.born_dead(y, rtol=1e-6)))
    with self.assertRaisesRegex(ValueError, 'batch axis'):
      diagnostics.born_dead(jnp.float32(1.0))


if __name__ == '__main__':
  absltest.main()
