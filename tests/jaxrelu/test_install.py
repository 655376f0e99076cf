"""The core install: jax and numpy only; Flax and the rest are extras.

Each check runs in a fresh interpreter in which the optional packages
cannot be imported, as on a machine where `pip install jaxrelu` installed
no extra.
"""

import os
import subprocess
import sys

from absl.testing import absltest

_REPO = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
_OPTIONAL = (
  'flax',
  'optax',
  'chex',
  'absl',
  'matplotlib',
  'sklearn',
  'equinox',
)
_BLOCK = f"""
import importlib.abc, sys

class _Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.split('.')[0] in {_OPTIONAL!r}:
      raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
    return None

sys.meta_path.insert(0, _Block())
"""


def _python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, '-c', _BLOCK + code],
    cwd=_REPO,
    capture_output=True,
    text=True,
    check=False,
    timeout=300,
  )


class CoreInstallTest(absltest.TestCase):
  def test_functions_and_library_modules_need_only_jax_and_numpy(self):
    result = _python(
      'import jax, jax.numpy as jnp, jaxrelu\n'
      'from jaxrelu import diagnostics, initializers, selu_theory\n'
      'x = jnp.array([-2.0, 0.5])\n'
      'print(float(jaxrelu.elu(x)[0]), float(jax.grad(jaxrelu.selu)(-1.0)))\n'
      'print(diagnostics.dead_fraction({"a": jnp.ones((2, 3))}))\n'
      'print(sorted(m for m in sys.modules if m.split(".")[0] in '
      f'{_OPTIONAL!r}))\n'
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    lines = result.stdout.splitlines()
    elu, selu_grad = map(float, lines[0].split())
    self.assertAlmostEqual(elu, -0.8646647167633873, places=6)  # e^-2 - 1
    self.assertAlmostEqual(
      selu_grad,
      1.0507009873554805 * 1.6732632423543772 * 0.36787944117144233,
      places=5,
    )
    self.assertEqual(lines[-1], '[]')  # no optional package was imported

  def test_import_starts_no_backend(self):
    # jax.distributed.initialize() must run before any backend starts; an
    # import-time jnp call in jaxrelu would make that impossible.
    result = _python(
      'import jaxrelu\n'
      'from jaxrelu import diagnostics, initializers, selu_theory\n'
      'from jax._src import xla_bridge\n'  # private: the started backends
      'print(sorted(xla_bridge._backends))\n'
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertEqual(result.stdout.splitlines()[-1], '[]')

  def test_flax_layers_without_flax_name_the_extra(self):
    for module in ('linen', 'nnx'):
      result = _python(f'import jaxrelu.{module}\n')
      self.assertEqual(result.returncode, 1)
      last = result.stderr.strip().splitlines()[-1]
      self.assertEqual(
        last,
        f'ImportError: jaxrelu.{module} needs Flax: pip install '
        "'jaxrelu[flax]'",
      )

  def test_experiments_without_their_extra_name_it(self):
    result = _python('import experiments.sweep\n')
    self.assertEqual(result.returncode, 1)
    self.assertIn("pip install 'jaxrelu[experiments]'", result.stderr)

  def test_typed_package_and_license_ship(self):
    self.assertTrue(os.path.exists(os.path.join(_REPO, 'jaxrelu', 'py.typed')))
    with open(os.path.join(_REPO, 'LICENSE')) as f:
      self.assertIn('Apache License', f.read(200))


if __name__ == '__main__':
  absltest.main()
