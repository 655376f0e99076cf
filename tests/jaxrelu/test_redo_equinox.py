"""diagnostics.recycle_units on Equinox models: (out, in) weights.

Dead units are found independently of the code under test: the model's own
layers are called one by one and their outputs handed to the one-shot
`diagnostics.dead_units`. A recycling that claims to keep the output asks
`check_output` to verify it.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

from jaxrelu import diagnostics

_PAIRS = {'layers/0': 'layers/1', 'layers/1': 'layers/2'}


@eqx.filter_jit
def _preactivations(model, x):
  """The Linear outputs feeding the ReLUs."""
  pre, h = {}, x
  for i, layer in enumerate(model.layers[:-1]):
    pre[f'layers/{i}'] = jax.vmap(layer)(h)
    h = jax.nn.relu(pre[f'layers/{i}'])
  return pre


class EquinoxTest(absltest.TestCase):
  def test_mlp_output_unchanged_and_dead_units_revived(self):
    # Hidden layers 16 x 16: square, so a wrong layout would still chain.
    model = eqx.nn.MLP(
      4, 2, 16, 2, activation=jax.nn.relu, key=jax.random.key(0)
    )
    model = eqx.tree_at(
      lambda m: [m.layers[0].bias, m.layers[1].bias],
      model,
      [jnp.linspace(-2.0, 0.0, 16), jnp.linspace(-1.0, 0.5, 16)],
    )
    x = jax.random.normal(jax.random.key(1), (64, 4))
    masks = diagnostics.dead_units(_preactivations(model, x))
    for name in _PAIRS:  # not vacuous: some dead, some alive
      self.assertTrue(0 < float(np.mean(masks[name])) < 1, name)
    params, static = eqx.partition(model, eqx.is_array)
    # Adam's state, filled with 7s so that every reset is visible.
    opt_state = jax.tree.map(
      lambda a: np.full_like(a, 7), optax.adam(1e-2).init(params)
    )
    run = eqx.filter_jit(lambda m, x: jax.vmap(m)(x))
    new, new_opt = diagnostics.recycle_units(
      params,
      masks,
      jax.random.key(2),
      pairs=_PAIRS,
      opt_state=opt_state,
      check_output=lambda p: run(eqx.combine(p, static), x),
    )
    new_model = eqx.combine(new, static)
    np.testing.assert_allclose(
      run(new_model, x), run(model, x), rtol=1e-6, atol=1e-7
    )
    # Compare in NumPy (no op-by-op JAX dispatch).
    old_np, new_np = (jax.tree.map(np.asarray, m) for m in (params, new))
    new_opt = jax.tree.map(np.asarray, new_opt)
    dead = [np.asarray(masks[n]) for n in _PAIRS] + [np.zeros(2, bool)]
    prev = [np.zeros(4, bool), *dead]
    for i in range(3):
      old_w, new_w = old_np.layers[i].weight, new_np.layers[i].weight
      # Rows of this layer's dead units are redrawn (xavier_uniform, on
      # +-sqrt(6 / (fan_in + fan_out)), as the reference), columns of the
      # previous layer's dead units are zeroed, the rest is untouched;
      # Adam's moments are zeroed exactly where the weights changed.
      rows, cols = dead[i][:, None], prev[i][None, :]
      redrawn = new_w[rows[:, 0]][:, ~prev[i]]
      self.assertTrue(np.all(redrawn != old_w[rows[:, 0]][:, ~prev[i]]))
      bound = np.sqrt(6 / sum(old_w.shape))
      self.assertLessEqual(np.max(np.abs(redrawn), initial=0), bound)
      np.testing.assert_array_equal(np.where(cols, new_w, 0.0), 0.0)
      keep = ~rows & ~cols
      np.testing.assert_array_equal(new_w[keep], old_w[keep])
      for moment in ('mu', 'nu'):
        new_m = getattr(new_opt[0], moment).layers[i].weight
        np.testing.assert_array_equal(new_m[keep], 7.0)
        np.testing.assert_array_equal(new_m[~keep], 0.0)
      old_b, new_b = old_np.layers[i].bias, new_np.layers[i].bias
      np.testing.assert_array_equal(new_b[dead[i]], 0.0)
      np.testing.assert_array_equal(new_b[~dead[i]], old_b[~dead[i]])
      # The biases' moments are kept, as the reference does.
      np.testing.assert_array_equal(new_opt[0].mu.layers[i].bias, 7.0)
    after = diagnostics.dead_units(_preactivations(new_model, x))
    for name in _PAIRS:
      self.assertLess(float(np.mean(after[name])), float(np.mean(masks[name])))

  def test_layout_follows_names_and_pairs_need_one(self):
    w1, w2 = jnp.ones((3, 3)), jnp.ones((3, 3))
    mask = jnp.array([True, False, False])
    key = jax.random.key(0)
    # Equinox names: 'weight' is (out, in): unit 0 is row 0 of w1, and
    # column 0 of w2.
    params = {'a': {'weight': w1, 'bias': jnp.ones(3)}, 'b': {'weight': w2}}
    init = jax.nn.initializers.constant(2.0)
    new, _ = diagnostics.recycle_units(
      params, {'a': mask}, key, pairs={'a': 'b'}, kernel_init=init
    )
    np.testing.assert_array_equal(new['a']['weight'][0], [2.0] * 3)
    np.testing.assert_array_equal(new['a']['weight'][1:], 1.0)
    np.testing.assert_array_equal(new['b']['weight'][:, 0], 0.0)
    np.testing.assert_array_equal(new['b']['weight'][:, 1:], 1.0)
    # A bare pair is ambiguous without layout; with it, it is followed.
    pair = [(w1, jnp.ones(3)), (w2, jnp.ones(3))]
    with self.assertRaisesRegex(ValueError, r"layout of params\['0'\]"):
      diagnostics.recycle_units(pair, {'0': mask}, key, pairs={'0': '1'})
    new, _ = diagnostics.recycle_units(
      pair, {'0': mask}, key, pairs={'0': '1'}, layout='out_in'
    )
    np.testing.assert_array_equal(new[0][1], [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(new[1][0][:, 0], 0.0)
    with self.assertRaisesRegex(ValueError, 'layout must be'):
      diagnostics.recycle_units(
        pair, {'0': mask}, key, pairs={'0': '1'}, layout='io'
      )

  def test_out_in_redraws_are_xavier_uniform_or_the_framework_uniform(self):
    # All 64 units of a (64, 32) weight redrawn: 2048 uniform draws, whose
    # largest is within 1% of the bound (probability 1 - 0.99^2048).
    params = {
      'a': {'weight': jnp.zeros((64, 32))},
      'b': {'weight': jnp.zeros((8, 64))},
    }
    mask = jnp.ones(64, bool)
    for kernel_init, bound in (
      ('xavier_uniform', np.sqrt(6 / (32 + 64))),
      ('framework', 1 / np.sqrt(32)),  # Equinox's and PyTorch's Linear
    ):
      new, _ = diagnostics.recycle_units(
        params,
        {'a': mask},
        jax.random.key(1),
        pairs={'a': 'b'},
        kernel_init=kernel_init,
      )
      top = float(np.max(np.abs(np.asarray(new['a']['weight']))))
      self.assertLessEqual(top, bound, kernel_init)
      self.assertGreater(top, 0.99 * bound, kernel_init)


if __name__ == '__main__':
  absltest.main()
