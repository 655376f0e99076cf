"""diagnostics.activation_stats: unit statistics of unchanged models.

References are independent of the tracer: pre-activations computed by hand
in float64 NumPy, or exposed by the model itself (linen's
capture_intermediates, nnx submodule calls) and handed to the existing
one-shot `diagnostics.dead_units`; derivatives from `jax.vjp` of the
activation itself.
"""

import functools
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest
from flax import nnx
from jax import lax
from jax.experimental import io_callback
from warning_check import warns_once

import jaxrelu
from jaxrelu import diagnostics

# Unit offsets: always dead (-30, -20), sometimes active (-1, 0, 1), active
# and above relu6's cap (8). Unit 1 (-20) is where jax.nn.elu's derivative
# (computed as y + alpha) underflows to 0 in float32 and jaxrelu's does not.
_OFFSETS = np.array([-30.0, -20.0, -1.0, 0.0, 1.0, 8.0], np.float32)
_X = np.array(
  jax.random.normal(jax.random.key(0), (64, 6)) + _OFFSETS, np.float32
)
_X[:3, 2:5] = 0.0  # exact zeros: the kink conventions count too
_KEY = jax.random.key(7)

# name -> (activation, reported kind)
_ACTIVATIONS = {
  'jaxrelu.relu': (jaxrelu.relu, 'relu'),
  'jaxrelu.relu6': (jaxrelu.relu6, 'relu6'),
  'jaxrelu.leaky_relu': (jaxrelu.leaky_relu, 'leaky_relu'),
  'jaxrelu.leaky_relu_0': (lambda x: jaxrelu.leaky_relu(x, 0.0), 'leaky_relu'),
  'jaxrelu.prelu': (
    lambda x: jaxrelu.prelu(x, jnp.linspace(0.1, 0.3, 6)),
    'leaky_relu',
  ),
  'jaxrelu.rrelu_eval': (
    lambda x: jaxrelu.rrelu(x, deterministic=True),
    'leaky_relu',
  ),
  'jaxrelu.rrelu': (lambda x: jaxrelu.rrelu(x, _KEY), 'rrelu'),
  'jaxrelu.elu': (jaxrelu.elu, 'elu'),
  'jaxrelu.selu': (jaxrelu.selu, 'selu'),
  'jaxrelu.celu': (lambda x: jaxrelu.celu(x, 0.5), 'celu'),
  'jax.nn.relu': (jax.nn.relu, 'relu'),
  'jax.nn.relu6': (jax.nn.relu6, 'relu6'),
  'jax.nn.leaky_relu': (jax.nn.leaky_relu, 'leaky_relu'),
  'jax.nn.elu': (jax.nn.elu, 'elu'),
  'jax.nn.selu': (jax.nn.selu, 'selu'),
  'jax.nn.celu': (jax.nn.celu, 'celu'),
  'jnp.maximum(x, 0)': (lambda x: jnp.maximum(x, 0), 'maximum'),
  'jnp.maximum(0., x)': (lambda x: jnp.maximum(0.0, x), 'maximum'),
  'lax.max(x, zeros)': (lambda x: lax.max(x, jnp.zeros_like(x)), 'maximum'),
}


def _all_activations(x):
  total = 0.0
  for name, (act, _) in _ACTIVATIONS.items():
    with jax.named_scope(name):
      total = total + jnp.sum(act(x))
  return total


def _derivative(act, x):
  """Elementwise derivative of an elementwise function, from jax.vjp."""
  y, pullback = jax.vjp(act, x)
  return pullback(jnp.ones_like(y))[0]


@functools.cache
def _references():
  """Per activation: (zero-derivative counts, float64 sum of |act(x)|)."""

  @jax.jit
  def derivatives_and_outputs(x):
    return {n: (_derivative(a, x), a(x)) for n, (a, _) in _ACTIVATIONS.items()}

  return {
    name: (
      (np.asarray(deriv) == 0).sum(0),
      np.abs(np.asarray(y, np.float64)).sum(0),
    )
    for name, (deriv, y) in derivatives_and_outputs(_X).items()
  }


class RecognitionTest(absltest.TestCase):
  def assert_counts(self, report, name, kind):
    """The site of one activation applied to _X, against NumPy."""
    s = report[name]
    x64 = _X.astype(np.float64)
    dead_ref = np.asarray(diagnostics.dead_units({'x': _X})['x'])
    np.testing.assert_array_equal(dead_ref, [1, 1, 0, 0, 0, 0])
    zero_ref, abs_ref = _references()[name]
    self.assertEqual(s.kind, kind, name)
    np.testing.assert_array_equal(s.examples, [64] * 6, name)
    np.testing.assert_array_equal(s.active, (x64 > 0).sum(0), name)
    np.testing.assert_array_equal(s.nan, [0] * 6, name)
    np.testing.assert_array_equal(s.dead, dead_ref, name)
    np.testing.assert_array_equal(s.zero_grad, zero_ref, name)
    np.testing.assert_allclose(s.abs_sum, abs_ref, rtol=2e-6)

  def test_every_rectifier_is_found_with_exact_counts(self):
    out, report = jax.jit(diagnostics.activation_stats(_all_activations))(_X)
    self.assertEqual(list(report), list(_ACTIVATIONS))
    np.testing.assert_allclose(out, _all_activations(_X), rtol=1e-6)
    for name, (_, kind) in _ACTIVATIONS.items():
      self.assert_counts(report, name, kind)
    # The gradient-flow view tells the implementations apart.
    x64 = _X.astype(np.float64)
    for relu in ('jaxrelu.relu', 'jax.nn.relu', 'jnp.maximum(x, 0)'):
      np.testing.assert_array_equal(report[relu].zero_grad[:2], [64, 64])
    np.testing.assert_array_equal(
      report['jaxrelu.relu6'].zero_grad, ((x64 <= 0) | (x64 >= 6)).sum(0)
    )
    self.assertGreater(int(report['jaxrelu.relu6'].zero_grad[5]), 50)
    self.assertEqual(int(report['jax.nn.elu'].zero_grad[1]), 64)
    self.assertEqual(int(report['jaxrelu.elu'].zero_grad[1]), 0)
    self.assertEqual(int(report['jaxrelu.leaky_relu'].zero_grad.sum()), 0)
    np.testing.assert_array_equal(
      report['jaxrelu.leaky_relu_0'].zero_grad[:2], [64, 64]
    )

  def test_a_differentiating_fn_reports_its_forward_sites_only(self):
    # A training step differentiates: JAX splits each jitted activation
    # into a forward and a backward part of the same name; only the
    # forward application is a site, with the forward counts.
    step = jax.value_and_grad(_all_activations)
    (value, grad), report = jax.jit(diagnostics.activation_stats(step))(_X)
    self.assertEqual(list(report), list(_ACTIVATIONS))
    for name, (_, kind) in _ACTIVATIONS.items():
      self.assert_counts(report, name, kind)
    want_value, want_grad = jax.jit(step)(_X)
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6)

  def test_hand_written_forms_against_numpy(self):
    # Each form on z = _X (exact zeros included), by hand in float64:
    # (name, form, kind, inputs with zero derivative, activation).
    z = _X.astype(np.float64)
    relu, relu6 = np.maximum(z, 0), np.clip(z, 0, 6)
    forms = [
      ('where', lambda z: jnp.where(z > 0, z, 0), 'where', z <= 0, relu),
      ('where >=', lambda z: jnp.where(z >= 0, z, 0.0), 'where', z < 0, relu),
      (
        'where 0 <',
        lambda z: jnp.where(0 < z, z, jnp.zeros_like(z)),
        'where',
        z <= 0,
        relu,
      ),
      ('where <=', lambda z: jnp.where(z <= 0, 0, z), 'where', z <= 0, relu),
      (
        'select',
        lambda z: lax.select(lax.lt(0.0, z), z, jnp.zeros_like(z)),
        'where',
        z <= 0,
        relu,
      ),
      ('mask', lambda z: z * (z > 0), 'mask', z <= 0, relu),
      ('mask first', lambda z: (z > 0) * z, 'mask', z <= 0, relu),
      (
        'mask astype',
        lambda z: z * (z >= 0).astype(z.dtype),
        'mask',
        z < 0,
        relu,
      ),
      # JAX takes max's derivative at a tie as 1/2: not 0 at z == 0.
      ('clip', lambda z: jnp.clip(z, 0), 'clip', z < 0, relu),
      ('clip 6', lambda z: jnp.clip(z, 0, 6), 'clip', (z < 0) | (z > 6), relu6),
      ('clip min', lambda z: jnp.clip(z, min=0), 'clip', z < 0, relu),
    ]
    # Not rectifiers, so not reported: (form, its value by hand).
    others = {
      'where swapped': (lambda z: jnp.where(z > 0, 0, z), np.minimum(z, 0)),
      'where other': (lambda z: jnp.where(z > 0, 2 * z, 0), 2 * relu),
      'negative mask': (lambda z: z * (z < 0), np.minimum(z, 0)),
      'clip 1': (lambda z: jnp.clip(z, 1), np.maximum(z, 1)),
      'clip max': (lambda z: jnp.clip(z, None, 6), np.minimum(z, 6)),
      # A clip written in a library (optax's schedule) is not the user's.
      'optax': (
        optax.polynomial_schedule(1.0, 0.0, 1, 10, transition_begin=2),
        1 - np.clip(z - 2, 0, 10) / 10,
      ),
    }

    named = [(name, form, act) for name, form, *_, act in forms]
    named += [(name, *other) for name, other in others.items()]

    def f(z):
      total = 0.0
      for name, form, _ in named:
        with jax.named_scope(name):
          total = total + jnp.sum(form(z))
      return total

    # Exact zeros tell z > 0 from z >= 0, and max's 1/2 from 0.
    self.assertTrue(np.any(z == 0) and not np.any(z == 6))
    want = sum(np.sum(a) for *_, a in named)
    for fn in (f, jax.value_and_grad(f)):
      out, report = jax.jit(diagnostics.activation_stats(fn))(_X)
      self.assertEqual(list(report), [name for name, *_ in forms])
      value = out if fn is f else out[0]
      # Sums of 6,528 float32 terms against float64.
      np.testing.assert_allclose(value, want, rtol=1e-5)
      for name, _, kind, zero_grad, act in forms:
        s = report[name]
        self.assertEqual(s.kind, kind, name)
        np.testing.assert_array_equal(s.examples, [64] * 6, name)
        np.testing.assert_array_equal(s.active, (z > 0).sum(0), name)
        np.testing.assert_array_equal(s.dead, z.max(0) <= 0, name)
        np.testing.assert_array_equal(s.zero_grad, zero_grad.sum(0), name)
        np.testing.assert_allclose(s.abs_sum, act.sum(0), rtol=2e-6)

  def test_no_rectifier_warns_naming_the_function(self):
    def f(x):
      # Library functions that use max(., 0) inside are opaque.
      return jnp.tanh(x) + jax.nn.softplus(x) + jax.nn.hard_swish(x)

    pattern = (
      r'^activation_stats: no rectifier recognised in '
      r'RecognitionTest\.test_no_rectifier_warns_naming_the_function'
      r'\.<locals>\.f, so the report is empty\. Recognised: .*relu6.*'
      r'jnp\.where\(z > 0, z, 0\), z \* \(z > 0\) and jnp\.clip\(z, 0\)'
    )
    with warns_once(self, pattern) as caught:
      out, report = diagnostics.activation_stats(f)(_X[:2])
    self.assertNotIn('\n', str(caught[0].message))
    self.assertEqual(caught[0].filename, __file__)
    self.assertEqual(report, {})
    np.testing.assert_allclose(out, f(_X[:2]), rtol=1e-6)
    with warns_once(self, 'no rectifier recognised in sum,'):
      self.assertEqual(diagnostics.activation_stats(jnp.sum)(_X)[1], {})

  def test_outputs_and_gradients_are_the_model_s(self):
    w = jax.random.normal(jax.random.key(1), (6, 6))

    @jax.custom_vjp
    def doubled_grad(x):
      return jax.nn.relu(x)

    doubled_grad.defvjp(
      lambda x: (doubled_grad(x), x), lambda x, g: (2 * g * (x > 0),)
    )

    def f(x):
      h = jaxrelu.relu(jnp.tanh(x) @ w)
      return jnp.sum(doubled_grad(h @ w - 0.5) ** 2)

    traced = lambda x: diagnostics.activation_stats(f)(x)[0]
    np.testing.assert_allclose(jax.jit(traced)(_X), jax.jit(f)(_X), rtol=1e-6)
    np.testing.assert_allclose(
      jax.jit(jax.grad(traced))(_X), jax.jit(jax.grad(f))(_X), rtol=1e-6
    )
    # The custom_vjp's rule still applies: its 2x is in both gradients.
    report = diagnostics.activation_stats(f)(_X)[1]
    self.assertEqual([s.kind for s in report.values()], ['relu', 'relu'])

  def test_custom_functions_run_their_side_effects_once(self):
    calls = []

    def count(v):
      calls.append(float(v))
      return np.zeros((), np.float32)

    def side_effect(x):
      shape = jax.ShapeDtypeStruct((), jnp.float32)
      io_callback(count, shape, jnp.sum(x), ordered=True)

    @jax.custom_vjp
    def smooth(x):  # no rectifier: bound once, as is
      side_effect(x)
      return jnp.tanh(x)

    smooth.defvjp(
      lambda x: (smooth(x), x), lambda x, g: (g / jnp.cosh(x) ** 2,)
    )

    @jax.custom_vjp
    def block(x):  # a rectifier, and a side effect it does not need
      side_effect(x)
      return 2 * jax.nn.relu(x - 0.5)

    block.defvjp(lambda x: (block(x), x), lambda x, g: (2 * g * (x > 0.5),))

    out, report = diagnostics.activation_stats(lambda x: block(smooth(x)))(_X)
    jax.effects_barrier()
    self.assertLen(calls, 2)  # once each
    pre = np.tanh(_X.astype(np.float64)) - 0.5
    np.testing.assert_allclose(out, 2 * np.maximum(pre, 0), atol=1e-6)
    (s,) = report.values()
    self.assertEqual(s.kind, 'relu')
    self.assertGreater(np.min(np.abs(pre)), 1e-4)
    np.testing.assert_array_equal(s.active, (pre > 0).sum(0))
    np.testing.assert_array_equal(
      s.dead, diagnostics.dead_units({'pre': pre})['pre']
    )

  def test_model_code_compiles_unchanged(self):
    # In a fresh process: the model's program before jaxrelu is imported is
    # the reference; importing diagnostics and running activation_stats on
    # the model (eagerly and under jit) must leave it unchanged.
    result = _run_python(_UNCHANGED)
    self.assertEqual(result.returncode, 0, result.stderr[-4000:])
    self.assertIn('model program unchanged', result.stdout)


class UserRectifierTest(absltest.TestCase):
  """A user's own jitted rectifier, declared with `rectifiers=`."""

  def test_a_declared_rectifier_is_a_site_of_its_own_name(self):
    @jax.jit
    def capped_where(z):
      return jnp.minimum(jnp.where(z > 0, z, 0.0), 3.0)

    w = jnp.array([[1.0, -1.0, 0.5], [0.0, -1.0, 2.0]])
    x = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])

    def f(x, w):
      with jax.named_scope('hidden'):
        h = x @ w
      return capped_where(h).sum()

    stats = diagnostics.activation_stats(f, rectifiers=[capped_where])
    out, report = jax.jit(stats)(x, w)
    # Independent reference: the pre-activations by hand, in float64.
    h = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    self.assertAlmostEqual(float(out), np.minimum(np.maximum(h, 0), 3).sum())
    (site,) = report.values()
    self.assertEqual(site.kind, 'capped_where')
    np.testing.assert_array_equal(site.active, (h > 0).sum(0))
    np.testing.assert_array_equal(site.dead, (h <= 0).all(0))
    # Gradients are the model's own.
    grad = jax.grad(lambda w: stats(x, w)[0])(w)
    np.testing.assert_allclose(grad, jax.grad(f, argnums=1)(x, w))
    # Undeclared, the tracer sees only the form inside it.
    _, plain = diagnostics.activation_stats(f)(x, w)
    self.assertEqual([s.kind for s in plain.values()], ['where'])

  def test_a_function_that_is_not_jitted_is_refused(self):
    def swish(z):
      return z * jax.nn.sigmoid(z)

    with self.assertRaisesRegex(TypeError, 'rectifiers: .* not a jax.jit'):
      diagnostics.activation_stats(lambda x: swish(x), rectifiers=[swish])
    with self.assertRaisesRegex(TypeError, 'pre-activation alone'):
      diagnostics.activation_stats(
        lambda x: x, rectifiers=[jax.jit(lambda z, b: z * b)]
      )


class ArgumentsTest(absltest.TestCase):
  def test_unit_axis_selects_the_unit_axes(self):
    x = np.asarray(
      jax.random.normal(jax.random.key(2), (4, 3, 5, 2))
      + np.array([-9.0, 0.0, 9.0])[:, None, None],
      np.float32,
    )
    report = diagnostics.activation_stats(jax.nn.relu, unit_axis=1)(x)[1]
    (s,) = report.values()
    np.testing.assert_array_equal(s.examples, [40, 40, 40])
    np.testing.assert_array_equal(s.active, (x > 0).sum((0, 2, 3)))
    np.testing.assert_array_equal(s.dead, x.max((0, 2, 3)) <= 0)
    report = diagnostics.activation_stats(jax.nn.relu, unit_axis=(1, 3))(x)[1]
    (s,) = report.values()
    np.testing.assert_array_equal(s.active, (x > 0).sum((0, 2)))
    self.assertEqual(s.unit_ndim, 2)

  def test_bad_unit_axis_is_an_error_naming_it(self):
    for bad in ('last', 1.5, (), True, None):
      with self.assertRaisesRegex(TypeError, 'unit_axis'):
        diagnostics.activation_stats(jax.nn.relu, unit_axis=bad)
    stats = diagnostics.activation_stats(jax.nn.relu, unit_axis=2)
    with self.assertRaisesRegex(
      ValueError, r'unit_axis=2 is out of range for the rectifier .*\(2, 3\)'
    ):
      stats(jnp.ones((2, 3)))

  def test_static_and_integer_arguments(self):
    table = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)

    def embed(tokens, table, *, train, tag):
      assert isinstance(train, bool) and tag == 'ok'
      h = table[tokens]
      return jax.nn.relu(h * 2 if train else h)

    tokens = np.array([0, 3, 3, 1], np.int32)
    out, report = diagnostics.activation_stats(embed)(
      tokens, table, train=True, tag='ok'
    )
    np.testing.assert_array_equal(out, jax.nn.relu(table[tokens] * 2))
    (s,) = report.values()
    np.testing.assert_array_equal(s.active, (table[tokens] > 0).sum(0))

  def test_python_numbers_are_static_and_a_rectifier_of_one_a_0d_site(self):
    out, report = diagnostics.activation_stats(jax.nn.relu)(-1.5)
    self.assertEqual(float(out), 0.0)
    (s,) = report.values()
    self.assertEqual((s.unit_ndim, int(s.examples)), (0, 1))
    self.assertTrue(bool(s.dead))
    # Literals inside fn are sites too.
    f = lambda x: jnp.sum(jax.nn.relu(x)) + jaxrelu.relu(2.0)
    out, report = diagnostics.activation_stats(f)(_X[:2])
    self.assertEqual(
      [int(np.sum(s.examples)) for s in report.values()], [12, 1]
    )
    np.testing.assert_allclose(out, f(_X[:2]), rtol=1e-6)

  def test_any_argument_gives_a_result_or_an_error_naming_it(self):
    def f(x, **kwargs):
      return {'y': jax.nn.relu(jnp.asarray(x, jnp.float32)), 'n': 3}

    stats = diagnostics.activation_stats(f)
    inputs = [
      -1.0,
      2,
      True,
      np.float64(-3.0),
      np.array([1, -2, 0], np.int8),
      np.array([0.5, -0.5], jnp.bfloat16),
      [1.0, -1.0, 2.0],
      (0.5, -0.25),
      jnp.array([[1.0, -1.0]]),
    ]
    for x in inputs:
      out, report = stats(x, tag='ok', train=False, scale=None)
      ref = np.asarray(x, np.float64)
      np.testing.assert_array_equal(out['y'], np.maximum(ref, 0), str(x))
      self.assertIs(type(out['n']), int)  # as fn returned it
      (s,) = report.values()
      units = np.shape(ref)[-1:]
      self.assertEqual(np.shape(s.active), units, str(x))
      np.testing.assert_array_equal(
        s.active, (ref > 0).reshape(-1, *units).sum(0), str(x)
      )
    for bad, name in (
      (dict(x=np.array(['a', 'b'])), r"kwargs\['x'\]"),
      (dict(x=1.0, names=np.array([object()])), r"kwargs\['names'\]"),
      (dict(x={'t': np.array(['2024'], 'datetime64[D]')}), r"\['x'\]\['t'\]"),
    ):
      with self.assertRaisesRegex(TypeError, name):
        stats(**bad)
    with self.assertRaisesRegex(TypeError, r'args\[0\]\[1\] is a NumPy'):
      diagnostics.activation_stats(lambda p: p)((1.0, np.array(['a'])))


class ModelTest(absltest.TestCase):
  def test_linen_matches_dead_units_on_captured_preactivations(self):
    class MLP(nn.Module):
      @nn.compact
      def __call__(self, x):
        bias = nn.initializers.constant(-0.5)
        h = nn.relu(nn.Dense(16, bias_init=bias)(x))
        h = jaxrelu.relu(nn.Dense(16, bias_init=bias)(h))
        h = jnp.maximum(nn.Dense(16, bias_init=bias)(h), 0.0)
        return nn.Dense(1)(h)

    model = MLP()
    x = jax.random.normal(jax.random.key(3), (32, 4))
    variables = jax.jit(model.init)(jax.random.key(4), x)
    out, report = jax.jit(diagnostics.activation_stats(model.apply))(
      variables, x
    )
    out_ref, state = jax.jit(
      functools.partial(
        model.apply, capture_intermediates=True, mutable=['intermediates']
      )
    )(variables, x)
    layers = ['Dense_0', 'Dense_1', 'Dense_2']
    self.assertEqual(list(report), [f'MLP/{n}' for n in layers])
    self.assertEqual(
      [s.kind for s in report.values()], ['relu', 'relu', 'maximum']
    )
    pre = {n: state['intermediates'][n]['__call__'][0] for n in layers}
    want = diagnostics.dead_units(pre)
    for n in layers:
      np.testing.assert_array_equal(report[f'MLP/{n}'].dead, want[n])
      np.testing.assert_array_equal(
        report[f'MLP/{n}'].active, np.sum(np.asarray(pre[n]) > 0, 0)
      )
    fractions = [float(np.mean(want[n])) for n in layers]
    self.assertTrue(any(0 < f < 1 for f in fractions), fractions)
    np.testing.assert_allclose(out, out_ref, rtol=1e-6)

  def test_nnx_names_sites_by_source_line(self):
    class MLP(nnx.Module):
      def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 16, rngs=rngs)
        self.l2 = nnx.Linear(16, 16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

      def __call__(self, x):
        h = nnx.relu(self.l1(x) - 0.5)
        return self.out(jaxrelu.relu(self.l2(h) - 0.5))

    model = MLP(nnx.Rngs(5))
    x = jax.random.normal(jax.random.key(6), (32, 4))
    graphdef, state = nnx.split(model)
    fn = lambda state, x: nnx.merge(graphdef, state)(x)
    out, report = jax.jit(diagnostics.activation_stats(fn))(state, x)
    pre1 = model.l1(x) - 0.5
    pre2 = model.l2(jax.nn.relu(pre1)) - 0.5
    want = diagnostics.dead_units({'a': pre1, 'b': pre2})
    names = list(report)
    self.assertLen(names, 2)
    for name in names:
      self.assertRegex(name, r'^test_unit_trace\.py:\d+$')
    self.assertNotEqual(names[0], names[1])
    np.testing.assert_array_equal(report[names[0]].dead, want['a'])
    np.testing.assert_array_equal(report[names[1]].dead, want['b'])
    np.testing.assert_allclose(out, model(x), rtol=1e-6)

  def test_linen_normalisation_clamps_are_not_rectifiers(self):
    # LayerNorm and BatchNorm clamp their variance with jnp.maximum(0., v):
    # library code, not a rectifier of the model.
    class Net(nn.Module):
      @nn.compact
      def __call__(self, x):
        h = nn.relu(nn.LayerNorm()(nn.Dense(8)(x)))
        h = nn.BatchNorm(use_running_average=False)(nn.Dense(8)(h))
        return nn.Dense(1)(nn.relu(h))

    model = Net()
    x = jax.random.normal(jax.random.key(11), (32, 4))
    variables = jax.jit(model.init)(jax.random.key(12), x)
    # Negative norm offsets kill some units.
    shift = jnp.where(jnp.arange(8) < 3, -4.0, 0.0)
    params = dict(variables['params'])
    for norm in ('LayerNorm_0', 'BatchNorm_0'):
      params[norm] = {**params[norm], 'bias': shift}
    variables = {**variables, 'params': params}

    def apply(variables, x):
      return model.apply(variables, x, mutable=['batch_stats'])

    (out, _), report = jax.jit(diagnostics.activation_stats(apply))(
      variables, x
    )
    self.assertEqual(list(report), ['Net/LayerNorm_0', 'Net/BatchNorm_0'])
    self.assertEqual([s.kind for s in report.values()], ['relu', 'relu'])
    out_ref, state = jax.jit(
      functools.partial(
        model.apply,
        capture_intermediates=True,
        mutable=['intermediates', 'batch_stats'],
      )
    )(variables, x)
    pre = {
      n: state['intermediates'][n]['__call__'][0]
      for n in ('LayerNorm_0', 'BatchNorm_0')
    }
    want = diagnostics.dead_units(pre)
    for n in pre:
      np.testing.assert_array_equal(report[f'Net/{n}'].dead, want[n])
      np.testing.assert_array_equal(
        report[f'Net/{n}'].active, np.sum(np.asarray(pre[n]) > 0, 0)
      )
      self.assertTrue(0 < float(np.mean(want[n])) < 1, n)
    np.testing.assert_allclose(out, out_ref, rtol=1e-5, atol=1e-6)

  def test_norm_only_models_give_empty_reports_and_warn(self):
    x = jax.random.normal(jax.random.key(13), (8, 4))
    for norm in (nn.LayerNorm(), nn.BatchNorm(use_running_average=False)):
      variables = jax.jit(norm.init)(jax.random.key(0), x)
      apply = lambda v, x, norm=norm: norm.apply(v, x, mutable=['batch_stats'])
      with warns_once(self, 'no rectifier recognised'):
        report = diagnostics.activation_stats(apply)(variables, x)[1]
      self.assertEqual(report, {})
    graphdef, state = nnx.split(nnx.LayerNorm(4, rngs=nnx.Rngs(0)))
    fn = lambda state, x: nnx.merge(graphdef, state)(x)
    with warns_once(self, 'no rectifier recognised'):
      self.assertEqual(diagnostics.activation_stats(fn)(state, x)[1], {})

  def test_nnx_layer_norm_then_relu(self):
    class Net(nnx.Module):
      def __init__(self, rngs):
        self.lin = nnx.Linear(4, 8, rngs=rngs)
        self.norm = nnx.LayerNorm(8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

      def __call__(self, x):
        return self.out(nnx.relu(self.norm(self.lin(x))))

    model = Net(nnx.Rngs(14))
    model.norm.bias[...] = jnp.where(jnp.arange(8) < 3, -4.0, 0.0)
    x = jax.random.normal(jax.random.key(15), (32, 4))
    graphdef, state = nnx.split(model)
    fn = lambda state, x: nnx.merge(graphdef, state)(x)
    out, report = jax.jit(diagnostics.activation_stats(fn))(state, x)
    ((name, s),) = report.items()
    self.assertRegex(name, r'^test_unit_trace\.py:\d+$')
    self.assertEqual(s.kind, 'relu')
    pre, out_ref = nnx.jit(lambda m, x: (m.norm(m.lin(x)), m(x)))(model, x)
    want = diagnostics.dead_units({'pre': pre})['pre']
    self.assertTrue(0 < float(np.mean(want)) < 1)
    np.testing.assert_array_equal(s.dead, want)
    np.testing.assert_array_equal(s.active, np.sum(np.asarray(pre) > 0, 0))
    np.testing.assert_allclose(out, out_ref, rtol=1e-6)


def _deep_net(x, ws, bs, w_out, flag, steps):
  """Rectifiers inside lax.scan, jax.checkpoint, lax.cond and a while."""

  def layer(h, wb):
    w, b = wb
    return jaxrelu.relu(h @ w + b), None

  h, _ = lax.scan(layer, x, (ws, bs))
  h = jax.checkpoint(lambda h: jax.nn.relu(h @ w_out - 0.25))(h)
  h = lax.cond(flag, jax.nn.relu6, lambda h: jax.nn.elu(h - 1.0), h)
  h = lax.fori_loop(0, steps, lambda i, h: jnp.maximum(h - 0.5, 0.0), h)
  return jnp.sum(h)


class ControlFlowTest(absltest.TestCase):
  def test_scan_checkpoint_cond_and_while_against_numpy(self):
    keys = jax.random.split(jax.random.key(8), 4)
    x = np.asarray(jax.random.normal(keys[0], (48, 8)), np.float64)
    ws = np.asarray(jax.random.normal(keys[1], (3, 8, 8)), np.float64) / 2
    bs = np.asarray(jax.random.normal(keys[2], (3, 8)), np.float64) - 0.5
    w_out = np.asarray(jax.random.normal(keys[3], (8, 8)), np.float64) / 2
    args = [a.astype(np.float32) for a in (x, ws, bs, w_out)]
    stats = jax.jit(diagnostics.activation_stats(_deep_net))
    plain = jax.jit(_deep_net)

    # Reference pre-activations, by hand in float64.
    pre, h = [], x
    for w, b in zip(ws, bs, strict=True):
      pre.append(h @ w + b)
      h = np.maximum(pre[-1], 0)
    ckpt = h @ w_out - 0.25
    h = np.maximum(ckpt, 0)
    for z in [*pre, ckpt]:  # no value close enough to 0 to flip in float32
      self.assertGreater(np.min(np.abs(z)), 1e-4)

    for flag, steps in ((True, 2), (False, 3)):
      out, report = stats(*args, flag, steps)
      np.testing.assert_allclose(out, plain(*args, flag, steps), rtol=1e-5)
      kinds = [s.kind for s in report.values()]
      # Branches in index order: lax.cond's false branch is branch 0.
      self.assertEqual(kinds, ['relu', 'relu', 'elu', 'relu6', 'maximum'])
      scan, remat, elu, relu6, loop = report.values()
      # Scan: one row per iteration (layer).
      self.assertEqual(scan.active.shape, (3, 8))
      np.testing.assert_array_equal(
        scan.active, np.stack([(z > 0).sum(0) for z in pre])
      )
      np.testing.assert_array_equal(
        scan.dead, diagnostics.dead_units(np.stack(pre, 1))
      )
      np.testing.assert_array_equal(scan.dead_fraction.shape, (3,))
      np.testing.assert_array_equal(remat.active, (ckpt > 0).sum(0))
      np.testing.assert_array_equal(remat.dead, ckpt.max(0) <= 0)
      # Cond: only the branch taken counts.
      taken, other = (relu6, elu) if flag else (elu, relu6)
      np.testing.assert_array_equal(taken.examples, [48] * 8)
      np.testing.assert_array_equal(other.examples, [0] * 8)
      self.assertFalse(np.any(other.dead) or np.any(other.dormant()))
      branch_in = h if flag else h - 1.0
      np.testing.assert_array_equal(taken.active, (branch_in > 0).sum(0))
      # While: counts summed over iterations.
      g = np.clip(h, 0, 6) if flag else np.where(h > 1, h - 1, np.expm1(h - 1))
      active = 0
      for _ in range(steps):
        active = active + (g - 0.5 > 0).sum(0)
        g = np.maximum(g - 0.5, 0)
      np.testing.assert_array_equal(loop.examples, [48 * steps] * 8)
      np.testing.assert_array_equal(loop.active, active)
    self.assertTrue(0 < float(np.mean(scan.dead)) < 1)

  def test_gradients_through_scan_and_checkpoint_unchanged(self):
    ws = jax.random.normal(jax.random.key(9), (3, 6, 6)) / 2

    def f(x):
      def layer(h, w):
        return jax.checkpoint(lambda h: jaxrelu.relu(h @ w - 0.1))(h), None

      return jnp.sum(lax.scan(layer, x, ws)[0] ** 2)

    traced = lambda x: diagnostics.activation_stats(f)(x)[0]
    np.testing.assert_allclose(
      jax.jit(jax.grad(traced))(_X), jax.jit(jax.grad(f))(_X), rtol=1e-6
    )

  def test_while_condition_sites_count_every_evaluation(self):
    x = np.asarray(jax.random.normal(jax.random.key(16), (8, 3)) + 1.5)

    def f(x):
      def cond(carry):
        h, i = carry
        return (jnp.sum(jax.nn.relu(h - 1.0)) > 0) & (i < 10)

      return lax.while_loop(cond, lambda c: (c[0] - 0.5, c[1] + 1), (x, 0))

    (h, steps), report = jax.jit(diagnostics.activation_stats(f))(x)
    # By hand: the condition runs on x, x - 0.5, ... until it is false.
    pre, g = [], x.astype(np.float64)
    while True:
      pre.append(g - 1.0)
      if not (np.maximum(pre[-1], 0).sum() > 0 and len(pre) <= 10):
        break
      g = g - 0.5
    self.assertEqual(int(steps), len(pre) - 1)
    self.assertGreater(len(pre), 2)
    np.testing.assert_allclose(h, g, rtol=1e-6)
    (s,) = report.values()
    self.assertEqual(s.kind, 'relu')
    np.testing.assert_array_equal(s.examples, [8 * len(pre)] * 3)
    np.testing.assert_array_equal(s.active, sum((p > 0).sum(0) for p in pre))


class StatisticsTest(absltest.TestCase):
  def test_dormancy_score_against_numpy(self):
    scale = np.array([0.01, 0.05, 1.0, 2.0], np.float32)
    x = np.abs(np.asarray(jax.random.normal(jax.random.key(10), (50, 4))))
    x = (x * scale).astype(np.float32)
    (s,) = diagnostics.activation_stats(jax.nn.relu)(x)[1].values()
    mean_abs = np.abs(x.astype(np.float64)).mean(0)
    score = mean_abs / mean_abs.mean()
    np.testing.assert_allclose(s.dormancy_score, score, rtol=1e-5)
    for tau in (0.0, 0.03, 0.1, 0.5):
      self.assertTrue(np.all(np.abs(score - tau) > 1e-3))
      np.testing.assert_array_equal(s.dormant(tau), score <= tau)
    np.testing.assert_array_equal(s.dormant(), [True, True, False, False])
    np.testing.assert_array_equal(s.dead, [False] * 4)

  def test_nan_preactivations_agree_with_dead_units(self):
    nan = np.nan
    x = np.array(
      [[nan, -1.0, 2.0, -1.0], [-1.0, -2.0, nan, -3.0], [-2.0, -3.0, 1.0, nan]],
      np.float32,
    )
    (s,) = diagnostics.activation_stats(jax.nn.relu)(x)[1].values()
    want = np.asarray(diagnostics.dead_units({'x': x})['x'])
    np.testing.assert_array_equal(want, [False, True, False, False])
    np.testing.assert_array_equal(s.dead, want)
    np.testing.assert_array_equal(s.nan, np.isnan(x).sum(0))
    np.testing.assert_array_equal(s.active, (np.nan_to_num(x) > 0).sum(0))

  def test_streaming_totals_equal_one_shot_exactly(self):
    fn = diagnostics.activation_stats(lambda x: jaxrelu.relu6(x * 3))
    step = jax.jit(
      lambda total, x: diagnostics.merge_unit_stats(total, fn(x)[1])
    )
    total = diagnostics.unit_stats_init(jax.eval_shape(fn, _X[:16])[1])
    for start in range(0, 64, 16):
      total = step(total, _X[start : start + 16])
    whole = fn(_X)[1]
    for name in whole:
      for field in ('examples', 'active', 'zero_grad'):
        np.testing.assert_array_equal(
          getattr(total[name], field), getattr(whole[name], field)
        )
      np.testing.assert_allclose(
        total[name].abs_sum, whole[name].abs_sum, rtol=1e-6
      )
    with self.assertRaisesRegex(ValueError, 'different sites'):
      diagnostics.merge_unit_stats(total, {})

  def test_table_and_plot(self):
    def f(x):
      with jax.named_scope('first'):
        x = jax.nn.elu(x)
      return jax.nn.relu6(x)

    x = _X[:4]
    report = diagnostics.activation_stats(f)(x)[1]
    table = diagnostics.report_table(report).splitlines()
    self.assertLen(table, 4)
    dead = diagnostics.dead_fraction({'x': x, 'h': jax.nn.elu(x)})
    # The relu6 consumes the output of scope 'first' too: 'first#2'.
    self.assertTrue(
      table[2].startswith(f'| first | elu | 6 | {float(dead["x"]):.3f} |')
    )
    self.assertTrue(
      table[3].startswith(f'| first#2 | relu6 | 6 | {float(dead["h"]):.3f} |')
    )
    history = {'a': [0.0, 0.5, 0.25], 'b': [1.0, 1.0, 0.0]}
    ax = diagnostics.plot_dead_fraction([0, 10, 20], history)
    self.assertLen(ax.lines, 2)
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [1.0, 1.0, 0.0])
    with self.assertRaisesRegex(ValueError, r"history\['a'\] has 3 values"):
      diagnostics.plot_dead_fraction([0, 1], history)


_UNCHANGED = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp

    def make_model():  # a new function each time: no tracing cache
      w = jnp.linspace(-1.0, 1.0, 18).reshape(6, 3)
      def model(x):
        h = jax.nn.relu(x @ w)
        return jnp.sum(jnp.maximum(h @ w.T, 0.0)) + jnp.sum(jax.nn.elu(h))
      return model

    x = jnp.linspace(-2.0, 2.0, 24).reshape(4, 6)
    program = lambda: jax.jit(make_model()).lower(x).as_text()
    assert not any(m.startswith('jaxrelu') for m in sys.modules)
    reference = program()
    from jaxrelu import diagnostics
    after_import = program()
    model = jax.jit(make_model())
    diagnostics.activation_stats(model)(x)
    jax.jit(diagnostics.activation_stats(model))(x)
    after_use = program()
    assert after_import == reference, 'importing diagnostics changed it'
    assert after_use == reference, 'activation_stats changed it'
    instrumented = jax.jit(diagnostics.activation_stats(model)).lower(x)
    assert instrumented.as_text() != reference  # it does measure something
    print('model program unchanged')
""")


def _run_python(code: str, devices: int = 1) -> subprocess.CompletedProcess:
  """Runs code in a fresh Python on `devices` CPU devices."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (
    env.get('XLA_FLAGS', '')
    + f' --xla_force_host_platform_device_count={devices}'
  )
  env['JAX_PLATFORMS'] = 'cpu'
  return subprocess.run(
    [sys.executable, '-c', code],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )


_SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    from jaxrelu import diagnostics

    assert jax.device_count() == 8, jax.devices()
    mesh = jax.make_mesh((8,), ('batch',))  # explicit axes
    sharding = NamedSharding(mesh, P('batch'))
    k = jax.random.split(jax.random.key(0), 3)
    x_host = np.asarray(jax.random.normal(k[0], (64, 16)), np.float64)
    w1 = np.asarray(jax.random.normal(k[1], (16, 32)), np.float64) / 4
    w2 = np.asarray(jax.random.normal(k[2], (32, 1)), np.float64)
    b1 = np.linspace(-4.0, 0.5, 32)

    def model(params, x):
      w1, b1, w2 = params
      h = jax.nn.relu(x @ w1 + b1)  # a custom_jvp around a jit
      return h @ w2

    params = tuple(np.asarray(p, np.float32) for p in (w1, b1, w2))
    pre = x_host @ w1 + b1
    assert np.min(np.abs(pre)) > 1e-4
    want = np.asarray(diagnostics.dead_units({'a': pre})['a'])
    assert 0 < want.mean() < 1, want.mean()
    x = jax.device_put(x_host.astype(np.float32), sharding)
    # Jitted and eager (no jit around it) on the explicitly sharded batch.
    for step in (jax.jit(diagnostics.activation_stats(model)),
                 diagnostics.activation_stats(model)):
      out, report = step(params, x)
      assert out.sharding.is_equivalent_to(sharding, 2), out.sharding
      (s,) = report.values()
      np.testing.assert_array_equal(np.asarray(s.dead), want)
      np.testing.assert_array_equal(np.asarray(s.active), (pre > 0).sum(0))
      np.testing.assert_array_equal(np.asarray(s.examples), [64] * 32)
    # Streaming: two sharded batches fold into a replicated total.
    total = jax.jit(diagnostics.merge_unit_stats)(report, report)
    np.testing.assert_array_equal(np.asarray(total[list(total)[0]].active),
                                  2 * (pre > 0).sum(0))

    # An inner jit's out_shardings is kept (an automatic mesh): its output
    # is placed as when fn runs under jit without the statistics.
    auto = jax.make_mesh((8,), ('batch',), axis_types=(AxisType.Auto,))
    x = jax.device_put(x_host.astype(np.float32),
                       NamedSharding(auto, P('batch')))
    inner = jax.jit(model, out_shardings=NamedSharding(auto, P()))
    fn = lambda params, x: 2 * inner(params, x)
    want_sharding = jax.jit(fn)(params, x).sharding
    assert want_sharding.is_fully_replicated, want_sharding
    for step in (jax.jit(diagnostics.activation_stats(fn)),
                 diagnostics.activation_stats(fn)):
      out, report = step(params, x)
      assert out.sharding.is_equivalent_to(want_sharding, 2), out.sharding
      (s,) = report.values()
      np.testing.assert_array_equal(np.asarray(s.dead), want)
    print('sharded unit stats ok')
""")


_SHARD_MAP = textwrap.dedent("""
    import warnings
    from jax import lax

    warnings.simplefilter('error')
    # shard_map on a 2-D mesh: rows split over 'batch', units over 'model'
    # (a tensor-parallel layer). Each device's counts are combined into
    # those of the whole array, as if unsharded.
    mesh = jax.make_mesh((4, 2), ('batch', 'model'))
    specs = (P('batch'), P(None, 'model'), P('model'))
    w1, b1 = (np.asarray(p, np.float32) for p in (w1, b1))

    def body(x, w1, b1):
      h = x @ w1 + b1
      y = jax.nn.relu(h) + jnp.where(h > 0, h, 0) + h * (h > 0)
      y = y + jnp.clip(h, 0, 6)
      # Values the same on several devices count once: w1 gathered (the
      # same on every device), b1 (on every 'batch' device).
      w_all = lax.all_gather(w1, 'model', axis=1, tiled=True)
      y = lax.psum(jnp.sum(y, 0), 'batch') + jnp.sum(jnp.maximum(w_all, 0))
      return y + jnp.maximum(b1, 0)

    layer = jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=P('model'))
    args = [jax.device_put(a, NamedSharding(mesh, spec))
            for a, spec in zip((x_host.astype(np.float32), w1, b1), specs)]
    out, report = jax.jit(diagnostics.activation_stats(layer))(*args)
    relu = np.maximum(pre, 0)
    want_out = (3 * relu + np.clip(pre, 0, 6)).sum(0) + np.maximum(b1, 0)
    want_out += np.maximum(w1, 0).sum()
    np.testing.assert_allclose(np.asarray(out), want_out, rtol=1e-5)
    kinds = [s.kind for s in report.values()]
    assert kinds == ['relu', 'where', 'mask', 'clip', 'maximum', 'maximum']
    *sites, weight, bias = report.values()
    np.testing.assert_array_equal(np.asarray(weight.examples), [16] * 32)
    np.testing.assert_array_equal(np.asarray(weight.active), (w1 > 0).sum(0))
    assert np.min(np.abs(pre - 6)) > 1e-4
    for s in sites:
      act, flat = (np.clip(pre, 0, 6), pre > 6) if s.kind == 'clip' else (
          relu, False)
      np.testing.assert_array_equal(np.asarray(s.examples), [64] * 32)
      np.testing.assert_array_equal(np.asarray(s.active), (pre > 0).sum(0))
      np.testing.assert_array_equal(np.asarray(s.dead), want)
      np.testing.assert_array_equal(np.asarray(s.zero_grad),
                                    ((pre < 0) | flat).sum(0))
      np.testing.assert_allclose(np.asarray(s.abs_sum), act.sum(0),
                                 rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(bias.examples), [1] * 32)
    np.testing.assert_array_equal(np.asarray(bias.active), b1 > 0)

    # pmap (a shard_map inside jax): the mapped axis is summed over, an
    # unmapped argument counts once.
    def per_device(x, b1):
      h = x @ w1 + b1
      return h * (h > 0), jnp.where(b1 > 0, b1, 0)

    xs = x_host.astype(np.float32).reshape(8, 8, 16)
    fn = jax.pmap(per_device, in_axes=(0, None))
    (y, _), report = diagnostics.activation_stats(fn)(xs, b1)
    np.testing.assert_allclose(np.asarray(y).reshape(64, 32), relu,
                               rtol=1e-5, atol=1e-6)
    mask, bias = report.values()
    assert (mask.kind, bias.kind) == ('mask', 'where')
    np.testing.assert_array_equal(np.asarray(mask.examples), [64] * 32)
    np.testing.assert_array_equal(np.asarray(mask.active), (pre > 0).sum(0))
    np.testing.assert_array_equal(np.asarray(mask.dead), want)
    np.testing.assert_array_equal(np.asarray(bias.examples), [1] * 32)
    np.testing.assert_array_equal(np.asarray(bias.active), b1 > 0)

    # Where the units' splitting is lost (all_to_all), it warns.
    mesh = jax.make_mesh((8,), ('batch',), axis_types=(AxisType.Auto,))
    swap = jax.shard_map(
        lambda x: jax.nn.relu(lax.all_to_all(x, 'batch', 1, 0, tiled=True)),
        mesh=mesh, in_specs=P('batch'), out_specs=P('batch'))
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      jax.eval_shape(diagnostics.activation_stats(swap), x_host)
    (message,) = [str(w.message) for w in caught]
    assert "mesh axes ['batch'] split the units of the site" in message, message
    print('shard_map and pmap unit stats ok')
""")


class ShardedTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # One process on 8 CPU devices for both tests (its start is most of
    # their time).
    cls.result = _run_python(_SHARDED + _SHARD_MAP, devices=8)

  def test_eight_device_batch(self):
    self.assertIn(
      'sharded unit stats ok', self.result.stdout, self.result.stderr[-4000:]
    )

  def test_shard_map_and_pmap_bodies(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr[-4000:])
    self.assertIn('shard_map and pmap unit stats ok', self.result.stdout)


if __name__ == '__main__':
  absltest.main()
