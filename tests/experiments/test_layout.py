"""The experiments' layout: one package per binary on a shared engine.

A binary's package imports the engine, the library and its own modules,
never another binary's; the engine (the modules at the top of
experiments/) imports no binary's package. Read from the source, so it
holds for imports inside functions too.
"""

import ast
import os

from absl.testing import absltest

_EXPERIMENTS = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
  'experiments',
)


def _imported(path: str) -> set[str]:
  """The experiments modules and packages a file imports, dotted."""
  with open(path) as f:
    tree = ast.parse(f.read())
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith('experiments')}
    elif isinstance(node, ast.ImportFrom) and node.module:
      if node.module.startswith('experiments'):
        out |= {f'{node.module}.{a.name}' for a in node.names}
  return out


def _binaries() -> list[str]:
  return sorted(
    name
    for name in os.listdir(_EXPERIMENTS)
    if os.path.isfile(os.path.join(_EXPERIMENTS, name, '__main__.py'))
  )


class LayoutTest(absltest.TestCase):
  def test_every_package_is_a_binary_with_a_main(self):
    packages = [
      n
      for n in os.listdir(_EXPERIMENTS)
      if os.path.isfile(os.path.join(_EXPERIMENTS, n, '__init__.py'))
    ]
    self.assertCountEqual(packages, _binaries())
    for name in packages:
      self.assertTrue(
        os.path.isfile(os.path.join(_EXPERIMENTS, name, 'main.py')), name
      )

  def test_no_binary_imports_another_binarys_package(self):
    binaries = _binaries()
    self.assertLen(binaries, 7)
    crossings = []
    for name in binaries:
      folder = os.path.join(_EXPERIMENTS, name)
      for file in sorted(os.listdir(folder)):
        if not file.endswith('.py'):
          continue
        for module in _imported(os.path.join(folder, file)):
          parts = module.split('.')
          if parts[1] in binaries and parts[1] != name:
            crossings.append((f'{name}/{file}', module))
    self.assertEmpty(crossings)

  def test_the_engine_imports_no_binary(self):
    binaries = _binaries()
    upward = []
    for file in sorted(os.listdir(_EXPERIMENTS)):
      if not file.endswith('.py'):
        continue
      for module in _imported(os.path.join(_EXPERIMENTS, file)):
        if module.split('.')[1] in binaries:
          upward.append((file, module))
    self.assertEmpty(upward)


if __name__ == '__main__':
  absltest.main()
