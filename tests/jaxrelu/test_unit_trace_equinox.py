"""diagnostics.activation_stats on Equinox models (a test-only dependency).

The reference pre-activations come from calling the model's own layers one
by one, outside the tracer, and go to the one-shot `diagnostics.dead_units`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from warning_check import warns_once

import jaxrelu
from jaxrelu import diagnostics


class EquinoxTest(absltest.TestCase):
  def test_mlp_sites_match_dead_units_on_its_own_layers(self):
    model = eqx.nn.MLP(
      4, 1, 16, 2, activation=jaxrelu.relu, key=jax.random.key(0)
    )
    # Negative biases so that some units are dead on the probe set.
    model = eqx.tree_at(
      lambda m: [layer.bias for layer in m.layers[:2]],
      model,
      [jnp.full(16, -1.0), jnp.full(16, -0.5)],
    )
    x = jax.random.normal(jax.random.key(1), (64, 4))

    @eqx.filter_jit
    def run(model, x):
      return diagnostics.activation_stats(lambda m, x: jax.vmap(m)(x))(model, x)

    out, report = run(model, x)
    np.testing.assert_allclose(out, jax.vmap(model)(x), rtol=1e-6)
    pre, h = [], x
    for layer in model.layers[:2]:
      pre.append(jax.vmap(layer)(h))
      h = jaxrelu.relu(pre[-1])
    want = diagnostics.dead_units({'0': pre[0], '1': pre[1]})
    # Equinox names its modules' scopes: both sites follow an eqx Linear.
    self.assertEqual(
      list(report), ['eqx.nn.MLP/eqx.nn.Linear', 'eqx.nn.MLP/eqx.nn.Linear#2']
    )
    first, second = report.values()
    self.assertEqual((first.kind, second.kind), ('relu', 'relu'))
    np.testing.assert_array_equal(first.dead, want['0'])
    np.testing.assert_array_equal(second.dead, want['1'])
    np.testing.assert_array_equal(first.active, np.sum(pre[0] > 0, axis=0))
    self.assertTrue(0 < float(np.mean(want['0'])) < 1)

  def test_layer_norm_clamp_is_not_a_rectifier(self):
    class Net(eqx.Module):
      lin: eqx.nn.Linear
      norm: eqx.nn.LayerNorm
      out: eqx.nn.Linear

      def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.lin = eqx.nn.Linear(4, 8, key=k1)
        self.norm = eqx.nn.LayerNorm(8)
        self.out = eqx.nn.Linear(8, 1, key=k2)

      def __call__(self, x):
        return self.out(jax.nn.relu(self.norm(self.lin(x))))

    model = eqx.tree_at(
      lambda m: m.norm.bias,
      Net(jax.random.key(4)),
      jnp.where(jnp.arange(8) < 3, -4.0, 0.0),
    )
    x = jax.random.normal(jax.random.key(5), (32, 4))
    run = lambda m, x: jax.vmap(m)(x)
    out, report = eqx.filter_jit(diagnostics.activation_stats(run))(model, x)
    # One site, the relu, named by the layer that made its input.
    self.assertEqual(list(report), ['eqx.nn.LayerNorm'])
    (s,) = report.values()
    self.assertEqual(s.kind, 'relu')
    pre = jax.vmap(model.norm)(jax.vmap(model.lin)(x))
    want = diagnostics.dead_units({'pre': pre})['pre']
    self.assertTrue(0 < float(np.mean(want)) < 1)
    np.testing.assert_array_equal(s.dead, want)
    np.testing.assert_array_equal(s.active, np.sum(np.asarray(pre) > 0, 0))
    np.testing.assert_allclose(out, run(model, x), rtol=1e-5, atol=1e-6)
    norm_only = lambda m, x: jax.vmap(m.norm)(x)
    with warns_once(self, 'no rectifier recognised'):
      report = diagnostics.activation_stats(norm_only)(model, pre)[1]
    self.assertEqual(report, {})

  def test_gradients_through_the_traced_model(self):
    model = eqx.nn.MLP(
      3, 2, 8, 2, activation=jax.nn.relu, key=jax.random.key(2)
    )
    x = jax.random.normal(jax.random.key(3), (16, 3))

    def loss(model, x):
      return jnp.mean(jax.vmap(model)(x) ** 2)

    traced = lambda m, x: diagnostics.activation_stats(loss)(m, x)[0]
    got = eqx.filter_jit(eqx.filter_grad(traced))(model, x)
    want = eqx.filter_jit(eqx.filter_grad(loss))(model, x)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8),
      eqx.filter(got, eqx.is_array),
      eqx.filter(want, eqx.is_array),
    )


if __name__ == '__main__':
  absltest.main()
