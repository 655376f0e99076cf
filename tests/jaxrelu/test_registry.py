"""jaxrelu.registry: every activation described once, and the tables
derived from it: the tracer's kinds, initializers.gain, and the
experiments' activations (issue 30, item 1)."""

import inspect
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
from absl.testing import absltest, parameterized
from scipy import integrate

import jaxrelu
from jaxrelu import _unit_trace, initializers, registry

_REPO = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)

# Independent float64 formulas (NumPy), not the library's.
_SELU = (1.6732632423543772, 1.0507009873554805)
_FORMULAS = {
  'relu': lambda z: np.maximum(z, 0),
  'relu6': lambda z: np.clip(z, 0, 6),
  'leaky_relu': lambda z: np.where(z > 0, z, 0.01 * z),
  'prelu': lambda z: np.where(z > 0, z, 0.25 * z),
  'elu': lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
  'celu': lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
  'selu': lambda z: (
    _SELU[1] * np.where(z > 0, z, _SELU[0] * np.expm1(np.minimum(z, 0)))
  ),
}


def _second_moment(f) -> float:
  """E[f(z)^2], z ~ N(0, 1), by adaptive quadrature."""
  density = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
  value = lambda z: float(f(np.float64(z))) ** 2 * density(z)
  return sum(integrate.quad(value, a, b)[0] for a, b in ((-40, 0), (0, 40)))


class RegistryTest(parameterized.TestCase):
  def test_every_public_activation_is_registered_and_nothing_else(self):
    public = {
      name
      for name in jaxrelu.__all__
      if callable(getattr(jaxrelu, name))
      and not name.startswith('alpha_dropout')
    }
    self.assertEqual(set(registry.ACTIVATIONS), public)
    for name, spec in registry.ACTIVATIONS.items():
      self.assertIs(spec.fn, getattr(jaxrelu, name))
      self.assertIs(registry.get(name), spec)

  def test_hyperparameters_are_the_functions_keywords_and_defaults(self):
    for name, spec in registry.ACTIVATIONS.items():
      params = inspect.signature(spec.fn).parameters
      for h in spec.hyperparameters:
        self.assertIn(h.name, params, name)
        default = params[h.name].default
        expected = None if default is inspect.Parameter.empty else default
        self.assertEqual(h.default, expected, (name, h.name))

  @parameterized.parameters(*_FORMULAS)
  def test_gain_keeps_the_second_moment(self, name):
    # He et al.'s rule: gain = 1 / sqrt(E[f(z)^2]) at the unit scale; for
    # selu that is 1, its fixed point; relu6's cap moves it by < 1e-8.
    expected = 1 / math.sqrt(_second_moment(_FORMULAS[name]))
    self.assertAlmostEqual(registry.get(name).gain(), expected, places=7)

  def test_rrelu_gain_averages_the_slope(self):
    lo, hi = 1 / 8, 1 / 3
    # E over a ~ U(lo, hi) of E[f(z)^2 | a] = (1 + a^2) / 2.
    second = integrate.quad(lambda a: (1 + a * a) / 2, lo, hi)[0] / (hi - lo)
    self.assertAlmostEqual(
      registry.get('rrelu').gain(), 1 / math.sqrt(second), places=7
    )

  def test_initializers_gain_reads_it(self):
    for name, spec in registry.ACTIVATIONS.items():
      self.assertEqual(initializers.gain(name), spec.gain(), name)
    self.assertEqual(
      initializers.gain('leaky_relu', 0.2),
      registry.get('leaky_relu').gain(negative_slope=0.2),
    )
    with self.assertRaisesRegex(TypeError, "unknown hyperparameter 'beta'"):
      registry.get('elu').gain(beta=1.0)
    with self.assertRaisesRegex(ValueError, "unknown activation 'gelu'"):
      registry.get('gelu')

  def test_the_test_tables_and_readme_cover_every_activation(self):
    # The float64 reference table every value, derivative and dtype test
    # runs over, and README's API table (its row names the function with
    # its hyperparameters and their defaults).
    from test_activations import CASES

    with open(os.path.join(_REPO, 'README.md')) as f:
      readme = f.read()
    for name, spec in registry.ACTIVATIONS.items():
      self.assertTrue(
        any(c == name or c.startswith(f'{name}_') for c in CASES), name
      )
      row = next(
        (
          line for line in readme.splitlines() if line.startswith(f'| `{name}(')
        ),
        None,
      )
      self.assertIsNotNone(row, f'README API table has no row for {name}')
      for h in spec.hyperparameters:
        self.assertIn(h.name, row)

  def test_readme_memory_table_is_the_registrys(self):
    # README's residual-bytes table states each activation's declared
    # figure (rrelu's is in training; the tests measure them all).
    with open(os.path.join(_REPO, 'README.md')) as f:
      lines = f.read().splitlines()
    header = next(x for x in lines if x.startswith('| | relu | relu6 |'))
    ours = lines[lines.index(header) + 3]
    self.assertTrue(ours.startswith('| jaxrelu |'), ours)
    names = [c.split(' (')[0].strip() for c in header.split('|')[2:-1]]
    cells = [c.strip() for c in ours.split('|')[2:-1]]
    self.assertCountEqual(names, registry.ACTIVATIONS)
    for name, cell in zip(names, cells, strict=True):
      stated = cell.split(' / ')[-1] if name == 'rrelu' else cell.split()[0]
      self.assertEqual(
        float(stated), registry.get(name).residual_bytes, (name, cell)
      )

  def test_a_users_activation_from_its_path(self):
    folder = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, folder)
    with open(os.path.join(folder, 'my_acts.py'), 'w') as f:
      f.write(
        textwrap.dedent(
          """
        import jax, jax.numpy as jnp

        def swish(x, beta=1.0):
          return x * jax.nn.sigmoid(beta * x)

        def softmax(x):
          return jax.nn.softmax(x, axis=0)

        def total(x):
          return x.sum()

        def broken(x):
          raise RuntimeError('no')
        """
        ),
      )
    sys.path.insert(0, folder)
    self.addCleanup(sys.path.remove, folder)
    spec = registry.from_path('my_acts:swish', hyperparameters={'beta': 2.0})
    self.assertEqual(spec.name, 'my_acts:swish')
    self.assertFalse(spec.rectifier or spec.learnable or spec.random)
    self.assertIn('gain', spec.derived)
    self.assertIn('rectifier', spec.derived)
    # The gain by quadrature, against an independent float64 formula.
    swish = lambda z: z / (1 + np.exp(-2.0 * z))
    expected = 1 / math.sqrt(_second_moment(swish))
    self.assertAlmostEqual(spec.gain(), expected, places=6)
    self.assertEqual(
      registry.from_path('my_acts:swish', label='swish', rectifier=True).name,
      'swish',
    )
    for path, message in (
      ('my_acts', 'expected package.module:function'),
      ('my_acts:', 'expected package.module:function'),
      ('no_such_module:f', "cannot import 'no_such_module'"),
      ('my_acts:nothing', "has no function 'nothing'"),
      ('my_acts:softmax', 'is not elementwise'),
      ('my_acts:total', 'keeps the shape and dtype'),
      ('my_acts:broken', 'fails on a float32 test array'),
    ):
      with self.assertRaisesRegex(ValueError, message) as raised:
        registry.from_path(path)
      self.assertNotIn('\n', str(raised.exception))
      self.assertIn(repr(path), str(raised.exception))

  def test_the_tracer_knows_every_core(self):
    kinds = {
      core.name: core.kind
      for spec in registry.ACTIVATIONS.values()
      for core in spec.cores
    }
    self.assertEqual(
      {k: v[0] for k, v in _unit_trace._JAXRELU_KINDS.items()}, kinds
    )
    for name in registry.ACTIVATIONS:
      self.assertIn(name, _unit_trace._RECOGNISED)

  def test_a_throwaway_activation_reaches_every_derived_table(self):
    # Added to the registry before the modules that derive from it are
    # imported (in a fresh interpreter, so this process is untouched).
    code = textwrap.dedent(
      """
      import jax, jax.numpy as jnp
      from jaxrelu import registry
      capped = jax.jit(lambda x: jnp.clip(x, 0, 3))
      spec = registry.Activation(
        'capped_relu3', capped, (), rectifier=True,
        cores=(registry.Core('_capped', 'capped_relu3', 1, capped),),
        gain_fn=lambda: 1.5, jax_nn=None, style=('#123456', '-', 'o'),
        residual_bytes=8)
      registry.ACTIVATIONS = type(registry.ACTIVATIONS)(
        {**registry.ACTIVATIONS, 'capped_relu3': spec})
      from jaxrelu import _unit_trace, initializers
      assert initializers.gain('capped_relu3') == 1.5
      assert 'capped_relu3' in initializers.ACTIVATIONS
      assert _unit_trace._JAXRELU_KINDS['_capped'][0] == 'capped_relu3'
      assert 'capped_relu3' in _unit_trace._RECOGNISED
      # The experiments' activations, their gains and their layer function.
      from experiments import model
      assert model.ACTIVATIONS[-1] == 'capped_relu3', model.ACTIVATIONS
      assert model.gains(1.0)['capped_relu3'] == 1.5
      f = model._activation('capped_relu3', train=True, rate=0.1, celu_alpha=1)
      assert f(jnp.array([-1.0, 5.0]), None, None).tolist() == [0.0, 3.0]
      from experiments import plots
      from experiments.selu_deep_stack import stack as selu_stack
      assert plots.style('capped_relu3')['color'] == '#123456'
      assert selu_stack.USUAL_INIT['capped_relu3'] == 'he_normal'
      # The benchmark's row: timed alone (no jax.nn counterpart).
      from experiments.benchmark_activations import paths
      row = paths.ACTIVATIONS['capped_relu3']
      assert (row.ours, row.baseline, row.residual_target) == (capped, None, 8)
      assert row.covers == ('jaxrelu.capped_relu3',)
      print('ok')
      """
    )
    result = subprocess.run(
      [sys.executable, '-c', code],
      capture_output=True,
      text=True,
      check=False,
      env=dict(os.environ, JAX_PLATFORMS='cpu'),
    )
    self.assertEqual(result.stdout.strip(), 'ok', result.stderr[-2000:])


if __name__ == '__main__':
  absltest.main()
