"""Every public module of jaxrelu declares its public names in `__all__`
(issue 30 item 6), and the experiments use only those."""

import ast
import importlib
import inspect
import os

from absl.testing import absltest, parameterized

_MODULES = (
  'jaxrelu',
  'jaxrelu.diagnostics',
  'jaxrelu.initializers',
  'jaxrelu.linen',
  'jaxrelu.nnx',
  'jaxrelu.registry',
  'jaxrelu.selu_theory',
  'jaxrelu.self_normalization',
)
_REPO = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


class PublicApiTest(parameterized.TestCase):
  @parameterized.parameters(*_MODULES)
  def test_all_lists_what_the_module_defines(self, name):
    module = importlib.import_module(name)
    self.assertTrue(hasattr(module, '__all__'), name)
    for public in module.__all__:
      self.assertTrue(hasattr(module, public), (name, public))
    # Every name the module itself defines without a leading underscore is
    # listed (imports of other modules' names are not its own).
    defined = {
      n
      for n, v in vars(module).items()
      if not n.startswith('_')
      and not inspect.ismodule(v)
      and getattr(v, '__module__', name) == name
      and n != 'annotations'
    }
    self.assertEmpty(defined - set(module.__all__), name)

  def test_experiments_use_only_public_names(self):
    # `from jaxrelu import _x` or `jaxrelu.<module>._name` anywhere under
    # experiments/ (its binaries' packages included).
    offending = []
    for folder, _, files in os.walk(os.path.join(_REPO, 'experiments')):
      for file in sorted(f for f in files if f.endswith('.py')):
        path = os.path.join(folder, file)
        with open(path) as f:
          tree = ast.parse(f.read())
        name = os.path.relpath(path, _REPO)
        aliases = {}
        for node in ast.walk(tree):
          if isinstance(node, ast.ImportFrom) and node.module == 'jaxrelu':
            for a in node.names:
              aliases[a.asname or a.name] = a.name
              if a.name.startswith('_'):
                offending.append((name, a.name))
          if (
            isinstance(node, ast.ImportFrom)
            and (node.module or '').startswith('jaxrelu.')
            and any(p.startswith('_') for p in node.module.split('.'))
          ):
            offending.append((name, node.module))
        for node in ast.walk(tree):
          if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith('_')
          ):
            offending.append((name, f'{node.value.id}.{node.attr}'))
    self.assertEmpty(offending)


if __name__ == '__main__':
  absltest.main()
