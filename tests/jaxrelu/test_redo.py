"""diagnostics.recycle_units: ReDo on linen, nnx and plain pytrees.

Dead units are found independently of the code under test (pre-activations
captured by the model, handed to the one-shot `diagnostics.dead_units`),
except in the training test, which runs the whole loop a user would write.
Every recycling that claims to keep the model's output asks `check_output`
to verify it, and the tests compare the outputs themselves too.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats
from absl.testing import absltest
from flax import nnx

import jaxrelu
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
_apply = jax.jit(lambda params, x: MLP().apply({'params': params}, x))


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


def _forward64(params, x):
  """The MLP in float64 NumPy: an independent reference."""
  h = np.asarray(x, np.float64)
  for name in ('Dense_0', 'Dense_1', 'Dense_2'):
    k, b = (np.asarray(params[name][n], np.float64) for n in ('kernel', 'bias'))
    h = h @ k + b
    h = np.maximum(h, 0.0) if name != 'Dense_2' else h
  return h


class LinenTest(absltest.TestCase):
  def test_output_unchanged_and_only_dead_units_touched(self):
    model, x, params, opt_state, masks = _setup()
    for name in _PAIRS:  # not vacuous: some dead, some alive
      self.assertTrue(0 < float(np.mean(masks[name])) < 1, name)
    key = jax.random.key(2)
    new, new_opt = diagnostics.recycle_units(
      params,
      masks,
      key,
      pairs=_PAIRS,
      opt_state=opt_state,
      check_output=lambda p: _apply(p, x),
    )
    np.testing.assert_allclose(
      _forward64(new, x), _forward64(params, x), rtol=1e-6, atol=1e-7
    )
    # Jittable: without the check, under jit, the same result.
    jitted = jax.jit(
      lambda p, o, m, k: diagnostics.recycle_units(
        p, m, k, pairs=_PAIRS, opt_state=o
      )
    )(params, opt_state, masks, key)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
      jitted,
      (new, new_opt),
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
      # Optimizer state: the kernels' moments reset exactly where they
      # changed; the biases' kept, as the reference does.
      for moment in ('mu', 'nu'):
        old_m = getattr(adam, moment)
        new_m = getattr(new_adam, moment)
        np.testing.assert_array_equal(new_m[name]['bias'], 7.0)
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
    _, x, params, _, masks = _setup()
    check = lambda p: _apply(p, x)
    new, opt = diagnostics.recycle_units(
      params,
      {'Dense_1': masks['Dense_1']},
      jax.random.key(3),
      pairs=_PAIRS,
      kernel_init={'Dense_1': jax.nn.initializers.constant(0.5)},
      bias_init=jax.nn.initializers.constant(0.1),
      check_output=check,
    )
    self.assertIsNone(opt)
    dead = np.asarray(masks['Dense_1'])
    np.testing.assert_array_equal(new['Dense_1']['kernel'][:, dead], 0.5)
    np.testing.assert_array_equal(new['Dense_1']['bias'][dead], np.float32(0.1))
    np.testing.assert_array_equal(new['Dense_0'], params['Dense_0'])
    np.testing.assert_allclose(
      _forward64(new, x), _forward64(params, x), rtol=1e-6, atol=1e-7
    )
    same, _ = diagnostics.recycle_units(
      params, {}, jax.random.key(3), pairs=_PAIRS, check_output=check
    )
    jax.tree.map(np.testing.assert_array_equal, same, params)

  def test_check_output_names_the_layer_that_changed_it(self):
    _, x, params, _, masks = _setup()
    # One live unit of Dense_1 recycled with the dead ones (as a dormant
    # unit would be): its contribution to the output goes.
    mask = np.asarray(masks['Dense_1']).copy()
    live = int(np.flatnonzero(~mask)[0])
    mask[live] = True
    # The change, independently: the float64 output without that unit.
    without = jax.tree.map(np.asarray, params)
    without['Dense_2']['kernel'] = without['Dense_2']['kernel'].copy()
    without['Dense_2']['kernel'][live] = 0.0
    want = np.max(np.abs(_forward64(without, x) - _forward64(params, x)))
    self.assertGreater(want, 1e-3)
    with self.assertRaisesRegex(ValueError, 'check_output') as caught:
      diagnostics.recycle_units(
        params,
        {'Dense_0': masks['Dense_0'], 'Dense_1': jnp.asarray(mask)},
        jax.random.key(4),
        pairs=_PAIRS,
        check_output=lambda p: _apply(p, x),
      )
    message = str(caught.exception)
    self.assertNotIn('\n', message)
    worst = float(re.search(r'by up to ([^ ]+) ', message).group(1))
    np.testing.assert_allclose(worst, want, rtol=5e-3)
    # Dense_0's dead units changed nothing: only Dense_1 is named.
    self.assertRegex(message, r"by layer, alone: 'Dense_1' [0-9.e+-]+\. ")


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
    graphdef = nnx.graphdef(model)
    params, opt_state = diagnostics.recycle_units(
      nnx.state(model, nnx.Param),
      {'l1': dead},
      jax.random.key(6),
      pairs={'l1': 'l2'},
      opt_state=nnx.state(optimizer),
      check_output=lambda state: nnx.merge(graphdef, state)(x),
    )
    nnx.update(model, params)
    nnx.update(optimizer, opt_state)
    np.testing.assert_allclose(model(x), before, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(model.l2.kernel[...][dead], 0.0)
    # The reference's moments: the kernels' zeroed, the biases' kept.
    adam = optimizer.opt_state[0]
    np.testing.assert_array_equal(adam.mu['l1']['kernel'][...][:, dead], 0.0)
    np.testing.assert_array_equal(adam.mu['l1']['kernel'][...][:, ~dead], 7.0)
    np.testing.assert_array_equal(adam.mu['l1']['bias'][...], 7.0)
    self.assertEqual(int(adam.count[...]), 7)
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
      (dict(kernel_init='glorot'), ValueError, 'kernel_init must be'),
      (dict(kernel_init={'a': 'he'}), ValueError, 'kernel_init must be'),
      (dict(norms={'b': 'a'}), ValueError, 'norms has layers'),
      (dict(norms={'a': 'q'}), ValueError, r"norms\['a'\] = 'q' has no"),
      (dict(norms={'a': 'b'}), ValueError, r"norms\['a'\] = 'b' has a"),
    ]
    for change, error, message in cases:
      kwargs = dict(masks={'a': mask}, key=key, pairs={'a': 'b'})
      kwargs.update(change)
      with self.assertRaisesRegex(error, message, msg=str(change)):
        diagnostics.recycle_units(
          params, kwargs.pop('masks'), kwargs.pop('key'), **kwargs
        )
    # The check compares values on the host: not under jit.
    with self.assertRaisesRegex(ValueError, 'check_output compares outputs'):
      jax.jit(
        lambda p: diagnostics.recycle_units(
          p, {'a': mask}, key, pairs={'a': 'b'}, check_output=lambda q: q
        )
      )(params)

  def test_default_redraw_is_xavier_uniform_framework_lecun_normal(self):
    # The reference (dopamine labs/redo weight_recyclers.py,
    # weight_reinit_random) redraws from xavier_uniform; 'framework' is
    # Flax Dense's lecun_normal. 4096 draws of a 64 x 64 kernel.
    params = {
      'a': {'kernel': jnp.zeros((64, 64)), 'bias': jnp.zeros(64)},
      'b': {'kernel': jnp.zeros((64, 8))},
    }
    mask = jnp.ones(64, bool)
    uniform = scipy.stats.uniform(-np.sqrt(6 / 128), 2 * np.sqrt(6 / 128))
    # lecun_normal: a normal truncated at 2 std, scaled to variance 1/64.
    normal = scipy.stats.truncnorm(-2, 2, scale=1 / 8 / 0.87962566103423978)
    for kernel_init, law, other in (
      ('xavier_uniform', uniform, normal),
      ('framework', normal, uniform),
    ):
      new, _ = diagnostics.recycle_units(
        params,
        {'a': mask},
        jax.random.key(1),
        pairs={'a': 'b'},
        **(
          {}
          if kernel_init == 'xavier_uniform'
          else {'kernel_init': 'framework'}
        ),
      )
      draws = np.asarray(new['a']['kernel'], np.float64).ravel()
      self.assertGreater(scipy.stats.kstest(draws, law.cdf).pvalue, 1e-3)
      self.assertLess(scipy.stats.kstest(draws, other.cdf).pvalue, 1e-6)


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
        # schedule-free's z is a copy of the parameters: biases included.
        z = np.asarray(new_state.z[layer][name])
        np.testing.assert_array_equal(z[touched], want[touched])
        np.testing.assert_array_equal(z[~touched], 7.0)
        # The base optimizer's second moment is zeroed for the kernels.
        nu = np.asarray(new_state.base_optimizer_state[0].nu[layer][name])
        zeroed = touched if name == 'kernel' else np.zeros_like(touched)
        np.testing.assert_array_equal(nu[zeroed], 0.0)
        np.testing.assert_array_equal(nu[~zeroed], 7.0)
    np.testing.assert_array_equal(new['a']['kernel'][:, 0], 3.0)

  def test_bias_moments_kept_as_the_reference_unless_reset(self):
    # The reference's reset_momentum zeroes Adam's mu and nu through the
    # kernels' masks only: a bias has none (dopamine labs/redo
    # weight_recyclers.py, NeuronRecycler.create_masks).
    state = jax.tree.map(
      lambda a: jnp.full_like(a, 7), optax.adam(1e-2).init(self.params)
    )
    for reset, bias_moment in ((False, 7.0), (True, 0.0)):
      _, (adam, _) = self.recycle(state, reset_bias_moments=reset)
      for m in (adam.mu, adam.nu):
        np.testing.assert_array_equal(
          m['a']['bias'], np.where(self.mask, bias_moment, 7.0)
        )
        for layer in ('a', 'b'):
          touched = self.touched[layer]['kernel']
          np.testing.assert_array_equal(
            m[layer]['kernel'], np.where(touched, 0.0, 7.0)
          )
        np.testing.assert_array_equal(m['b']['bias'], 7.0)

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


class Block(nn.Module):
  """A stem read by a residual connection, a Dense behind a BatchNorm, and
  one behind a LayerNorm."""

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(8, name='stem')(x)
    r = nn.Dense(8, name='a')(nn.relu(h))
    r = nn.relu(nn.BatchNorm(use_running_average=True, name='bn')(r))
    h = h + nn.Dense(8, name='b')(r)
    g = nn.LayerNorm(name='ln')(nn.Dense(8, name='c')(nn.relu(h)))
    return nn.Dense(2, name='head')(nn.relu(g))


_block_apply = jax.jit(
  lambda params, stats, x: Block().apply(
    {'params': params, 'batch_stats': stats}, x
  )
)


class StructureTest(absltest.TestCase):
  """What check_output refuses, and BatchNorm support through norms."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    rng = np.random.default_rng(0)
    cls.x = rng.normal(size=(64, 4)).astype('f4')
    cls.stats = {'bn': {'mean': np.zeros(8, 'f4'), 'var': np.ones(8, 'f4')}}
    # Units 0-2 of the stem and of the BatchNorm start at -10: dead.
    cls.dead = np.arange(8) < 3
    dead_bias = np.where(cls.dead, -10.0, 0.0).astype('f4')

    def dense(fan_in, units, bias=None):
      kernel = rng.normal(size=(fan_in, units)) / np.sqrt(fan_in)
      bias = np.zeros(units, 'f4') if bias is None else bias
      return {'kernel': kernel.astype('f4'), 'bias': bias}

    cls.params = {
      'stem': dense(4, 8, dead_bias),
      'a': dense(8, 8),
      'bn': {'scale': np.ones(8, 'f4'), 'bias': dead_bias},
      'b': dense(8, 8),
      'c': dense(8, 8),
      'ln': {'scale': np.ones(8, 'f4'), 'bias': np.zeros(8, 'f4')},
      'head': dense(8, 2),
    }

  def check(self, params):
    return _block_apply(params, self.stats, self.x)

  def bn_out(self, params):
    """BatchNorm's output (the pre-activation of a's units), in float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    h = np.maximum(self.x @ p['stem']['kernel'] + p['stem']['bias'], 0)
    r = h @ p['a']['kernel'] + p['a']['bias']
    return r / np.sqrt(1 + 1e-5) * p['bn']['scale'] + p['bn']['bias']

  def test_residual_connection_is_refused_naming_the_layer(self):
    pre = np.asarray(self.x, np.float64) @ self.params['stem']['kernel']
    pre += self.params['stem']['bias']
    self.assertTrue(np.all(pre[:, self.dead] <= 0))  # dead on the batch
    masks, key = {'stem': jnp.asarray(self.dead)}, jax.random.key(2)
    with self.assertRaisesRegex(
      ValueError,
      r"the units of 'stem' reach 'c', which pairs\['stem'\] does not name "
      r'\(through a residual connection\)',
    ):
      diagnostics.recycle_units(
        self.params, masks, key, pairs={'stem': 'a'}, check_output=self.check
      )
    # Rightly: without the check, the revived units reach the output
    # through the skip.
    new, _ = diagnostics.recycle_units(
      self.params, masks, key, pairs={'stem': 'a'}
    )
    change = np.abs(
      np.asarray(self.check(new), np.float64)
      - np.asarray(self.check(self.params), np.float64)
    )
    self.assertGreater(np.max(change), 0.1)
    # A LayerNorm mixes its units: refused too.
    with self.assertRaisesRegex(
      ValueError, "the units of 'c' are mixed by a reduction over units"
    ):
      diagnostics.recycle_units(
        self.params,
        {'c': jnp.asarray(self.dead)},
        key,
        pairs={'c': 'head'},
        check_output=self.check,
      )

  def test_batchnorm_scale_and_bias_reset_with_norms(self):
    dead = jnp.asarray(self.dead)
    self.assertTrue(np.all(self.bn_out(self.params)[:, self.dead] <= 0))
    key = jax.random.key(3)
    with self.assertRaisesRegex(
      ValueError,
      r"the units of 'a' pass through per-unit parameters 'bn/bias', "
      r"'bn/scale' .* norms=\{'a': \.\.\.\}",
    ):
      diagnostics.recycle_units(
        self.params, {'a': dead}, key, pairs={'a': 'b'}, check_output=self.check
      )
    # Rightly: revived without resetting the BatchNorm, they stay dead.
    new, _ = diagnostics.recycle_units(
      self.params, {'a': dead}, key, pairs={'a': 'b'}
    )
    self.assertTrue(np.all(self.bn_out(new)[:, self.dead] <= 0))
    # With norms, its scale and bias restart at 1 and 0 for them: the
    # output is kept and they live; their moments are kept, as biases'.
    opt_state = jax.tree.map(
      lambda a: jnp.full_like(a, 7), optax.adam(1e-2).init(self.params)
    )
    new, (adam, _) = diagnostics.recycle_units(
      self.params,
      {'a': dead},
      key,
      pairs={'a': 'b'},
      norms={'a': 'bn'},
      opt_state=opt_state,
      check_output=self.check,
    )
    for name, value in (('scale', 1.0), ('bias', 0.0)):
      np.testing.assert_array_equal(
        new['bn'][name], np.where(self.dead, value, self.params['bn'][name])
      )
      np.testing.assert_array_equal(adam.mu['bn'][name], 7.0)
    np.testing.assert_allclose(
      self.check(new), self.check(self.params), rtol=1e-6, atol=1e-6
    )
    alive = np.any(self.bn_out(new) > 0, axis=0)
    self.assertTrue(np.all(alive[self.dead]))

  def test_per_unit_slope_is_not_refused(self):
    # A per-channel PReLU slope scales the units but cannot hold a revived
    # one dead: the check accepts it (units 0-2 have slope 0 and bias -10:
    # dead).
    rng = np.random.default_rng(4)
    params = {
      'a': {
        'kernel': rng.normal(size=(4, 8)).astype('f4') / 2,
        'bias': np.where(self.dead, -10.0, 0.0).astype('f4'),
      },
      'prelu': {'negative_slope': np.where(self.dead, 0, 0.25).astype('f4')},
      'b': {'kernel': rng.normal(size=(8, 2)).astype('f4')},
    }

    def check(p):
      h = self.x @ p['a']['kernel'] + p['a']['bias']
      h = jaxrelu.prelu(h, p['prelu']['negative_slope'])
      return h @ p['b']['kernel']

    new, _ = diagnostics.recycle_units(
      params,
      {'a': jnp.asarray(self.dead)},
      jax.random.key(4),
      pairs={'a': 'b'},
      check_output=check,
    )
    np.testing.assert_array_equal(new['b']['kernel'][self.dead], 0.0)


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
    def dead_masks(params):
      report = stats({'params': params}, x)[1]
      return {n: report[f'Net/{n}'].dead for n in pairs}

    output = jax.jit(lambda p: model.apply({'params': p}, x))

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
          params, opt_state = diagnostics.recycle_units(
            params,
            dead_masks(params),
            jax.random.fold_in(jax.random.key(1), chunk),
            pairs=pairs,
            opt_state=opt_state,
            check_output=output,
          )
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
