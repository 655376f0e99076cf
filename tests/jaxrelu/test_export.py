"""Every public function, its gradient, and each Flax layer's training step
lower for CPU, CUDA, ROCm and TPU.

`jax.export` lowers for all four platforms from this CPU-only machine, so a
lowering failure on an accelerator (an op or a custom rule with no GPU or
TPU lowering) is caught here. The exported artifact is then run on the CPU
and must give what the function gives directly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized
from flax import linen as nn
from flax import nnx
from jax import export

import jaxrelu
from jaxrelu import linen as jrl
from jaxrelu import nnx as jrn

PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
_X = jax.random.normal(jax.random.key(0), (8, 4)) * 3
_KEY = jax.random.key(1)

# name -> (function of (x, key), uses the key)
_FUNCTIONS = {
  'relu': lambda x, k: jaxrelu.relu(x),
  'relu6': lambda x, k: jaxrelu.relu6(x),
  'leaky_relu': lambda x, k: jaxrelu.leaky_relu(x, 0.1),
  'prelu': lambda x, k: jaxrelu.prelu(x, jnp.full(4, 0.25)),
  'rrelu_eval': lambda x, k: jaxrelu.rrelu(x, deterministic=True),
  'rrelu_train': lambda x, k: jaxrelu.rrelu(x, k),
  'elu': lambda x, k: jaxrelu.elu(x, 0.5),
  'celu': lambda x, k: jaxrelu.celu(x, 2.0),
  'selu': lambda x, k: jaxrelu.selu(x),
  'alpha_dropout': lambda x, k: jaxrelu.alpha_dropout(x, 0.1, k),
}


def _round_trip(fn, *args):
  """Exports fn for every platform, then runs the export on the CPU."""
  exported = export.export(jax.jit(fn), platforms=PLATFORMS)(*args)
  assert exported.platforms == PLATFORMS, exported.platforms
  return exported.call(*args)


class ExportTest(parameterized.TestCase):
  @parameterized.parameters(*_FUNCTIONS)
  def test_function_and_gradient(self, name):
    fn = _FUNCTIONS[name]
    grad = jax.grad(lambda x, k: jnp.sum(jnp.sin(fn(x, k))))
    for f in (fn, grad):
      np.testing.assert_array_equal(
        _round_trip(f, _X, _KEY), jax.jit(f)(_X, _KEY)
      )

  def test_linen_training_step(self):
    class MLP(nn.Module):
      @nn.compact
      def __call__(self, x, *, train):
        x = jrl.PReLU(axis=-1)(nn.Dense(8)(x))
        x = jrl.RReLU()(nn.Dense(8)(x), deterministic=not train)
        x = jrl.AlphaDropout(0.1)(x, deterministic=not train)
        return nn.Dense(1)(x)

    model, tx = MLP(), optax.adam(1e-2)
    params = model.init(jax.random.key(2), _X, train=False)['params']
    opt_state = tx.init(params)

    def step(params, opt_state, key):
      def loss(p):
        y = model.apply({'params': p}, _X, train=True, rngs={'dropout': key})
        return jnp.mean(y**2)

      value, grads = jax.value_and_grad(loss)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, value

    got = _round_trip(step, params, opt_state, _KEY)
    want = jax.jit(step)(params, opt_state, _KEY)
    jax.tree.map(np.testing.assert_array_equal, got, want)

  def test_nnx_training_step(self):
    class MLP(nnx.Module):
      def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 8, rngs=rngs)
        self.prelu = jrn.PReLU(num_channels=8)
        self.rrelu = jrn.RReLU(rngs=rngs)
        self.drop = jrn.AlphaDropout(0.1, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

      def __call__(self, x):
        return self.out(self.drop(self.rrelu(self.prelu(self.l1(x)))))

    model = MLP(nnx.Rngs(params=0, dropout=1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def step(params, rest):
      def loss(params):
        # copy=True: the RNG streams are mutated under jax.grad (flax #5050).
        model = nnx.merge(graphdef, params, rest, copy=True)
        return jnp.mean(model(_X) ** 2)

      value, grads = jax.value_and_grad(loss)(params)
      new = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
      return new, value

    got = _round_trip(step, params, rest)
    want = jax.jit(step)(params, rest)
    jax.tree.map(np.testing.assert_array_equal, got, want)


if __name__ == '__main__':
  absltest.main()
