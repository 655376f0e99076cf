"""Every ```python block in README.md runs, and the training examples learn."""

import os
import re

from absl.testing import absltest

_README = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md'
)


def _blocks() -> list[str]:
  with open(_README) as f:
    return re.findall(r'```python\n(.*?)```', f.read(), re.S)


class ReadmeTest(absltest.TestCase):
  def test_there_are_examples(self):
    self.assertGreaterEqual(len(_blocks()), 3)

  def test_every_python_block_runs(self):
    for i, code in enumerate(_blocks()):
      namespace: dict = {}
      exec(compile(code, f'README.md block {i}', 'exec'), namespace)
      if 'eval_pred' in namespace:
        # Training examples: the loss fell and evaluation is deterministic.
        import jax.numpy as jnp

        x, y, loss = namespace['x'], namespace['y'], namespace['loss']
        baseline = float(jnp.mean((y - y.mean()) ** 2))
        self.assertLess(float(loss), baseline, f'block {i}')
        self.assertEqual(namespace['eval_pred'].shape, (x.shape[0], 1))
        model = namespace['model']
        if 'params' in namespace:  # linen
          again = model.apply({'params': namespace['params']}, x, train=False)
        else:  # nnx, still in eval mode
          again = model(x)
        self.assertTrue(bool(jnp.all(again == namespace['eval_pred'])))


if __name__ == '__main__':
  absltest.main()
