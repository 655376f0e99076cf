"""diagnostics.recycle_units: ReDo on linen, nnx and plain pytrees.

Dead units are found independently of the code under test (pre-activations
captured by the model, handed to the one-shot `diagnostics.dead_units`),
except in the training test, which runs the whole loop a user would write.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest
from flax import nnx

from jaxrelu import diagnostics


class MLP(nn.Module):
  """Two hidden ReLU layers; negative biases kill some units at init."""

  @nn.compact
  def __call__(self, x):
    for bias in (-1.5, -0.5):
      init = nn.initializers.constant(bias)
      x = nn.relu(nn.Dense(16, bias_init=init)(x))
    return nn.Dense(2)(x)


_PAIRS = {'Dense_0': 'Dense_1', 'Dense_1': 'Dense_2'}


def _preactivations(model, params, x):
  """The Dense outputs feeding the ReLUs, captured by linen itself."""
  _, state = model.apply(
    {'params': params},
    x,
    capture_intermediates=True,
    mutable=['intermediates'],
  )
  return {n: state['intermediates'][n]['__call__'][0] for n in _PAIRS}


def _setup():
  model = MLP()
  x = jax.random.normal(jax.random.key(0), (64, 4))
  params = model.init(jax.random.key(1), x)['params']
  # Adam's state, filled with 7s so that every reset is visible (a dead
  # unit's own gradients, and so its moments, are 0 already).
  opt_state = jax.tree.map(
    lambda a: jnp.full_like(a, 7), optax.adam(1e-2).init(params)
  )
  pre = jax.jit(_preactivations, static_argnums=0)(model, params, x)
  return model, x, params, opt_state, diagnostics.dead_units(pre)


class LinenTest(absltest.TestCase):
  def test_output_unchanged_and_only_dead_units_touched(self):
    model, x, params, opt_state, masks = _setup()
    for name in _PAIRS:  # not vacuous: some dead, some alive
      self.assertTrue(0 < float(np.mean(masks[name])) < 1, name)
    new, new_opt = jax.jit(
      lambda p, o, m, k: diagnostics.recycle_units(
        p, m, k, pairs=_PAIRS, opt_state=o
      )
    )(params, opt_state, masks, jax.random.key(2))
    np.testing.assert_allclose(
      model.apply({'params': new}, x),
      model.apply({'params': params}, x),
      rtol=1e-6,
      atol=1e-7,
    )
    adam, new_adam = opt_state[0], new_opt[0]
    self.assertEqual(int(new_adam.count), int(adam.count))
    for name, out in _PAIRS.items():
      dead = np.asarray(masks[name])
      old_k, new_k = params[name]['kernel'], new[name]['kernel']
      # Incoming: dead columns redrawn, live columns untouched (except rows
      # zeroed as outgoing weights of the previous layer's dead units).
      prev = [m for m, o in _PAIRS.items() if o == name]
      rows = np.asarray(masks[prev[0]]) if prev else np.zeros(4, bool)
      keep = ~rows[:, None] & ~dead[None, :]
      np.testing.assert_array_equal(
        np.where(keep, new_k, 0), np.where(keep, old_k, 0)
      )
      self.assertTrue(np.all(new_k[~rows][:, dead] != old_k[~rows][:, dead]))
      np.testing.assert_array_equal(new[name]['bias'][dead], 0.0)
      np.testing.assert_array_equal(
        new[name]['bias'][~dead], params[name]['bias'][~dead]
      )
      # Outgoing rows of dead units zeroed, the others untouched where the
      # next layer's own units are alive.
      np.testing.assert_array_equal(new[out]['kernel'][dead], 0.0)
      # Optimizer state: reset exactly where parameters changed.
      for moment in ('mu', 'nu'):
        old_m = getattr(adam, moment)
        new_m = getattr(new_adam, moment)
        np.testing.assert_array_equal(new_m[name]['bias'][dead], 0.0)
        np.testing.assert_array_equal(
          new_m[name]['bias'][~dead], old_m[name]['bias'][~dead]
        )
        np.testing.assert_array_equal(new_m[out]['kernel'][dead], 0.0)
        changed = np.asarray(new[name]['kernel'] != params[name]['kernel'])
        np.testing.assert_array_equal(new_m[name]['kernel'][changed], 0.0)
        np.testing.assert_array_equal(
          new_m[name]['kernel'][keep], old_m[name]['kernel'][keep]
        )
    # The head: rows of live units and its bias untouched.
    live = ~np.asarray(masks['Dense_1'])
    np.testing.assert_array_equal(
      new['Dense_2']['kernel'][live], params['Dense_2']['kernel'][live]
    )
    np.testing.assert_array_equal(
      new['Dense_2']['bias'], params['Dense_2']['bias']
    )
    # Revived units are alive on the probe set again.
    after = diagnostics.dead_fraction(_preactivations(model, new, x))
    for name in _PAIRS:
      self.assertLess(float(after[name]), float(np.mean(masks[name])), name)

  def test_initializers_and_no_mask_is_a_no_op(self):
    _, _, params, _, masks = _setup()
    new, opt = diagnostics.recycle_units(
      params,
      {'Dense_1': masks['Dense_1']},
      jax.random.key(3),
      pairs=_PAIRS,
      kernel_init={'Dense_1': jax.nn.initializers.constant(0.5)},
      bias_init=jax.nn.initializers.constant(0.1),
    )
    self.assertIsNone(opt)
    dead = np.asarray(masks['Dense_1'])
    np.testing.assert_array_equal(new['Dense_1']['kernel'][:, dead], 0.5)
    np.testing.assert_array_equal(new['Dense_1']['bias'][dead], np.float32(0.1))
    np.testing.assert_array_equal(new['Dense_0'], params['Dense_0'])
    same, _ = diagnostics.recycle_units(
      params, {}, jax.random.key(3), pairs=_PAIRS
    )
    jax.tree.map(np.testing.assert_array_equal, same, params)


class NnxTest(absltest.TestCase):
  def test_state_and_optimizer(self):
    class Net(nnx.Module):
      def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 16, rngs=rngs)
        self.l2 = nnx.Linear(16, 1, rngs=rngs)

      def __call__(self, x):
        return self.l2(nnx.relu(self.l1(x) - 1.0))

    model = Net(nnx.Rngs(4))
    x = jax.random.normal(jax.random.key(5), (64, 4))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
      loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(model)
      optimizer.update(model, grads)
      return loss

    step(model, optimizer)
    dead = diagnostics.dead_units({'l1': model.l1(x) - 1.0})['l1']
    self.assertTrue(0 < float(jnp.mean(dead)) < 1)
    before = model(x)
    # Dead units' moments are 0 already (no gradient): fill the state with
    # 7s so that the reset is visible.
    nnx.update(
      optimizer,
      jax.tree.map(lambda a: jnp.full_like(a, 7), nnx.state(optimizer)),
    )
    params, opt_state = diagnostics.recycle_units(
      nnx.state(model, nnx.Param),
      {'l1': dead},
      jax.random.key(6),
      pairs={'l1': 'l2'},
      opt_state=nnx.state(optimizer),
    )
    nnx.update(model, params)
    nnx.update(optimizer, opt_state)
    np.testing.assert_allclose(model(x), before, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(model.l2.kernel[...][dead], 0.0)
    mu = optimizer.opt_state[0].mu['l1']['bias'][...]
    np.testing.assert_array_equal(mu[dead], 0.0)
    np.testing.assert_array_equal(mu[~dead], 7.0)
    self.assertEqual(int(optimizer.opt_state[0].count[...]), 7)
    self.assertTrue(np.isfinite(float(step(model, optimizer))))


class PlainPytreeTest(absltest.TestCase):
  def test_tuples_w_b_dicts_conv_and_two_heads(self):
    k = jax.random.split(jax.random.key(7), 4)
    mask = jnp.array([True, False, True])
    # A list of (weight, bias) pairs.
    layers = [(jnp.ones((2, 3)), jnp.ones(3)), (jnp.ones((3, 2)), jnp.ones(2))]
    new, _ = diagnostics.recycle_units(
      layers, {'0': mask}, k[0], pairs={'0': '1'}, layout='in_out'
    )
    self.assertIsInstance(new, list)
    np.testing.assert_array_equal(new[0][1], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(new[1][0][:, 0], [0.0, 1.0, 0.0])
    # A mask may be a plain list of bools.
    same, _ = diagnostics.recycle_units(
      layers,
      {'0': [True, False, True]},
      k[0],
      pairs={'0': '1'},
      layout='in_out',
    )
    jax.tree.map(np.testing.assert_array_equal, same, new)
    # Haiku-style w/b, one trunk feeding two heads.
    params = {
      'trunk': {'w': jnp.ones((2, 3)), 'b': jnp.ones(3)},
      'head_a': {'w': jnp.ones((3, 1)), 'b': jnp.ones(1)},
      'head_b': {'w': jnp.ones((3, 4)), 'b': jnp.ones(4)},
    }
    new, _ = diagnostics.recycle_units(
      params, {'trunk': mask}, k[1], pairs={'trunk': ('head_a', 'head_b')}
    )
    for head in ('head_a', 'head_b'):
      np.testing.assert_array_equal(new[head]['w'][:, 0], [0.0, 1.0, 0.0])
    # Convolutions: channels on the last two kernel axes.
    convs = {
      'c1': {'kernel': jnp.ones((3, 3, 2, 3))},
      'c2': {'kernel': jnp.ones((3, 3, 3, 5))},
    }
    new, _ = diagnostics.recycle_units(
      convs,
      {'c1': mask},
      k[2],
      pairs={'c1': 'c2'},
      kernel_init=jax.nn.initializers.constant(2.0),
    )
    np.testing.assert_array_equal(new['c1']['kernel'][..., 0], 2.0)
    np.testing.assert_array_equal(new['c1']['kernel'][..., 1], 1.0)
    np.testing.assert_array_equal(new['c2']['kernel'][:, :, 0], 0.0)
    np.testing.assert_array_equal(new['c2']['kernel'][:, :, 1], 1.0)

  def test_bad_arguments_are_errors_naming_them(self):
    params = {
      'a': {'kernel': jnp.ones((2, 3)), 'bias': jnp.ones(3)},
      'b': {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)},
      'i': {'kernel': jnp.ones((3, 3), jnp.int32)},
      # Layers stacked by nn.scan: (L, in, out) kernels, (L, out) biases.
      's': {'kernel': jnp.ones((4, 2, 3)), 'bias': jnp.ones((4, 3))},
    }
    mask = jnp.array([True, False, True])
    key = jax.random.key(0)
    cases = [
      (dict(masks={'a': [1, 0, 1]}), TypeError, r"masks\['a'\] must be"),
      (dict(masks={'a': ['x', 'y', 'z']}), TypeError, r"masks\['a'\] must"),
      (dict(masks={'a': mask[None]}), ValueError, 'Stacked layers'),
      (dict(masks={}, pairs={'s': 'b'}), ValueError, 'stack of layers'),
      (dict(masks={'a': mask[:2]}), ValueError, r"masks\['a'\] has shape"),
      (dict(masks={'a': jnp.bool_(True)}), ValueError, r"masks\['a'\]"),
      (dict(masks={'a': mask * 1.0}), TypeError, r"masks\['a'\] must be"),
      (dict(masks={'z': mask}), ValueError, 'masks has layers'),
      (dict(pairs={'a': 'q'}), ValueError, "pairs names layer 'q'"),
      (dict(masks={}, pairs={'b': 'b'}), ValueError, r"pairs\['b'\] = 'b'"),
      (dict(pairs={'a': 'i'}), TypeError, r"params\['i'\] needs a floating"),
      (dict(pairs=[('a', 'b')]), TypeError, 'pairs must be a mapping'),
      (dict(key=0), TypeError, 'key must be a PRNG key'),
    ]
    for change, error, message in cases:
      kwargs = dict(masks={'a': mask}, key=key, pairs={'a': 'b'})
      kwargs.update(change)
      with self.assertRaisesRegex(error, message, msg=str(change)):
        diagnostics.recycle_units(
          params, kwargs.pop('masks'), kwargs.pop('key'), **kwargs
        )


class OptimizerStateTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.params = {
      'a': {'kernel': jnp.ones((2, 3)), 'bias': jnp.ones(3)},
      'b': {'kernel': jnp.ones((3, 1)), 'bias': jnp.ones(1)},
    }
    self.mask = jnp.array([True, False, False])
    self.touched = {  # where recycle_units changes each parameter
      'a': {'kernel': np.array([[1, 0, 0]] * 2, bool), 'bias': self.mask},
      'b': {'kernel': np.array([[1], [0], [0]], bool), 'bias': [False]},
    }

  def recycle(self, opt_state, **kwargs):
    return diagnostics.recycle_units(
      self.params,
      {'a': self.mask},
      jax.random.key(0),
      pairs={'a': 'b'},
      opt_state=opt_state,
      kernel_init=jax.nn.initializers.constant(3.0),
      **kwargs,
    )

  def test_parameter_copies_get_the_new_values_and_moments_zero(self):
    tx = optax.contrib.schedule_free_adamw(1e-2)
    state = jax.tree.map(lambda a: jnp.full_like(a, 7), tx.init(self.params))
    new, new_state = self.recycle(state)
    for layer in ('a', 'b'):
      for name in ('kernel', 'bias'):
        touched = np.asarray(self.touched[layer][name])
        want = np.asarray(new[layer][name])
        # schedule-free's z is a copy of the parameters.
        z = np.asarray(new_state.z[layer][name])
        np.testing.assert_array_equal(z[touched], want[touched])
        np.testing.assert_array_equal(z[~touched], 7.0)
        # The base optimizer's second moment is zeroed.
        nu = np.asarray(new_state.base_optimizer_state[0].nu[layer][name])
        np.testing.assert_array_equal(nu[touched], 0.0)
        np.testing.assert_array_equal(nu[~touched], 7.0)
    np.testing.assert_array_equal(new['a']['kernel'][:, 0], 3.0)

  def test_state_of_unknown_role_is_an_error_unless_named(self):
    state = {'acc': jax.tree.map(jnp.ones_like, self.params)}
    with self.assertRaisesRegex(ValueError, r"opt_state entry 'acc/a/bias'"):
      self.recycle(state)
    for role, want in (('moment', 0.0), ('param', 3.0), ('keep', 1.0)):
      _, new_state = self.recycle(state, state_roles={'acc': role})
      np.testing.assert_array_equal(new_state['acc']['a']['kernel'][:, 0], want)
      np.testing.assert_array_equal(new_state['acc']['a']['kernel'][:, 1], 1.0)
    with self.assertRaisesRegex(ValueError, r"state_roles\['acc'\]"):
      self.recycle(state, state_roles={'acc': 'zero'})
    # Untouched parameters need no role: nothing to reset.
    _, same = diagnostics.recycle_units(
      self.params, {}, jax.random.key(0), pairs={'a': 'b'}, opt_state=state
    )
    jax.tree.map(np.testing.assert_array_equal, same, state)


class TrainingTest(absltest.TestCase):
  def test_redo_revives_units_that_sgd_killed(self):
    class Net(nn.Module):
      @nn.compact
      def __call__(self, x):
        for _ in range(2):
          x = nn.relu(nn.Dense(32)(x))
        return nn.Dense(1)(x)

    model = Net()
    kx, kp = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (256, 8))
    y = jnp.sin(2 * x[:, :1]) + x[:, 1:2] ** 2
    params0 = model.init(kp, x)['params']
    # A high learning rate with momentum kills most of the second layer.
    tx = optax.sgd(0.2, momentum=0.9)
    pairs = {'Dense_0': 'Dense_1', 'Dense_1': 'Dense_2'}
    stats = diagnostics.activation_stats(model.apply)

    def loss_fn(p):
      return jnp.mean((model.apply({'params': p}, x) - y) ** 2)

    @jax.jit
    def train(params, opt_state):  # 25 steps
      def body(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

      (params, opt_state), losses = jax.lax.scan(
        body, (params, opt_state), length=25
      )
      return params, opt_state, losses[-1]

    @jax.jit
    def redo(params, opt_state, key):
      out, report = stats({'params': params}, x)
      masks = {n: report[f'Net/{n}'].dead for n in pairs}
      params, opt_state = diagnostics.recycle_units(
        params, masks, key, pairs=pairs, opt_state=opt_state
      )
      change = jnp.max(jnp.abs(model.apply({'params': params}, x) - out))
      return params, opt_state, change

    @jax.jit
    def dead_fraction(params):
      report = stats({'params': params}, x)[1]
      return jnp.mean(jnp.stack([s.dead_fraction for s in report.values()]))

    results = {}
    for use_redo in (False, True):
      params, opt_state = params0, tx.init(params0)
      losses = []
      for chunk in range(12):
        params, opt_state, loss = train(params, opt_state)
        losses.append(float(loss))
        if use_redo and chunk < 11:
          params, opt_state, change = redo(
            params, opt_state, jax.random.fold_in(jax.random.key(1), chunk)
          )
          self.assertLessEqual(float(change), 1e-6)
      results[use_redo] = (float(dead_fraction(params)), losses)
    dead_plain, losses_plain = results[False]
    dead_redo, losses_redo = results[True]
    self.assertGreater(dead_plain, 0.3)  # units did die
    self.assertLess(dead_redo, dead_plain / 4)
    # The loss keeps falling after recycling, to below the plain run's.
    self.assertLess(losses_redo[-1], losses_redo[1] / 10)
    self.assertLess(losses_redo[-1], losses_plain[-1])


if __name__ == '__main__':
  absltest.main()
