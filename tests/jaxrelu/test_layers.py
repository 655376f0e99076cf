"""Flax layers: jaxrelu.linen and jaxrelu.nnx PReLU, RReLU, AlphaDropout."""

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized
from flax import nnx
from test_dropout import output_moments

import jaxrelu
from jaxrelu import linen as jrl
from jaxrelu import nnx as jrn

RRELU_EVAL_SLOPE = (1 / 8 + 1 / 3) / 2


def _normal(shape, seed=0, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(seed), shape, dtype)


class PReLUShapesTest(parameterized.TestCase):
  def test_default_is_one_shared_slope_of_0_25(self):
    variables = jrl.PReLU().init(jax.random.key(0), _normal((4, 3)))
    self.assertEqual(variables['params']['negative_slope'].shape, ())
    self.assertEqual(float(variables['params']['negative_slope']), 0.25)
    self.assertEqual(jrn.PReLU().negative_slope[...].shape, ())
    self.assertEqual(float(jrn.PReLU().negative_slope[...]), 0.25)

  def test_per_channel_channels_last_and_first(self):
    x = _normal((2, 3, 5, 5))
    slope = jnp.array([0.1, 0.2, 0.3])
    for axis, x_in, expected_slope in (
      (-1, x.transpose(0, 2, 3, 1), slope),
      (1, x, slope.reshape(3, 1, 1)),
    ):
      linen = jrl.PReLU(axis=axis)
      variables = linen.init(jax.random.key(0), x_in)
      self.assertEqual(variables['params']['negative_slope'].shape, (3,))
      variables = {'params': {'negative_slope': slope}}
      expected = np.where(x_in > 0, x_in, np.asarray(expected_slope) * x_in)
      np.testing.assert_allclose(linen.apply(variables, x_in), expected)
      layer = jrn.PReLU(num_channels=3, axis=axis)
      layer.negative_slope[...] = slope
      np.testing.assert_allclose(layer(x_in), expected)

  def test_keras_shared_axes(self):
    x = _normal((2, 4, 4, 3))  # NHWC; share H and W: one slope per channel
    variables = jrl.PReLU(shared_axes=(1, 2)).init(jax.random.key(0), x)
    self.assertEqual(variables['params']['negative_slope'].shape, (1, 1, 3))
    layer = jrn.PReLU(input_shape=(4, 4, 3), shared_axes=(1, 2))
    self.assertEqual(layer.negative_slope[...].shape, (1, 1, 3))
    full = jrl.PReLU(shared_axes=(1,)).init(jax.random.key(0), x)
    self.assertEqual(full['params']['negative_slope'].shape, (1, 4, 3))

  def test_initializer_and_param_dtype(self):
    init = lambda key, shape, dtype: jnp.full(shape, 0.5, dtype)
    layer = jrl.PReLU(
      axis=-1, negative_slope_init=init, param_dtype=jnp.bfloat16
    )
    variables = layer.init(jax.random.key(0), jnp.ones((2, 3)))
    self.assertEqual(variables['params']['negative_slope'].dtype, jnp.bfloat16)
    y = layer.apply(variables, -jnp.ones((2, 3), jnp.float32))
    self.assertEqual(y.dtype, jnp.float32)
    np.testing.assert_array_equal(y, np.full((2, 3), -0.5))
    nlayer = jrn.PReLU(0.1, num_channels=3, param_dtype=jnp.float16)
    self.assertEqual(nlayer.negative_slope[...].dtype, jnp.float16)
    self.assertEqual(
      nlayer(-jnp.ones((2, 3), jnp.bfloat16)).dtype, jnp.bfloat16
    )

  def test_random_initializer_uses_params_stream(self):
    init = jax.nn.initializers.uniform(0.3)
    a = jrn.PReLU(init, num_channels=8, rngs=nnx.Rngs(params=0))
    b = jrn.PReLU(init, num_channels=8, rngs=nnx.Rngs(params=1))
    self.assertFalse(
      np.array_equal(a.negative_slope[...], b.negative_slope[...])
    )

  def test_channel_mismatch_names_both_sizes(self):
    layer = jrl.PReLU(axis=-1)
    variables = layer.init(jax.random.key(0), jnp.ones((2, 4)))
    with self.assertRaisesRegex(
      ValueError, r'PReLU: the input has 5 channels.*has 4'
    ):
      layer.apply(variables, jnp.ones((2, 5)))
    with self.assertRaisesRegex(
      ValueError, r'PReLU: the input has 5 channels.*has 4'
    ):
      jrn.PReLU(num_channels=4)(jnp.ones((2, 5)))
    shared = jrn.PReLU(input_shape=(4, 3), shared_axes=(1,))
    with self.assertRaisesRegex(ValueError, r'shape \(1, 5\).*shape \(1, 3\)'):
      shared(jnp.ones((2, 4, 5)))

  def test_bad_options(self):
    with self.assertRaisesRegex(ValueError, 'axis .* or shared_axes'):
      jrl.PReLU(axis=-1, shared_axes=(1,)).init(
        jax.random.key(0), jnp.ones((2, 3))
      )
    with self.assertRaisesRegex(ValueError, 'axis 3 is out of range'):
      jrl.PReLU(axis=3).init(jax.random.key(0), jnp.ones((2, 3)))
    with self.assertRaisesRegex(ValueError, 'batch, is always shared'):
      jrl.PReLU(shared_axes=(0,)).init(jax.random.key(0), jnp.ones((2, 3)))
    with self.assertRaisesRegex(ValueError, 'shared_axes needs input_shape'):
      jrn.PReLU(shared_axes=(1,))
    with self.assertRaisesRegex(ValueError, 'num_channels must be >= 1'):
      jrn.PReLU(num_channels=0)


class PReLUGradientTest(absltest.TestCase):
  def test_slope_gradient_matches_functional_and_finite_difference(self):
    with jax.enable_x64(True):
      x = _normal((32, 3), dtype=jnp.float64)
      slope = jnp.array([0.1, 0.2, 0.4])
      loss = lambda y: jnp.sum(jnp.sin(y))
      linen = jrl.PReLU(axis=-1, param_dtype=jnp.float64)
      g_linen = jax.grad(
        lambda s: loss(linen.apply({'params': {'negative_slope': s}}, x))
      )(slope)
      layer = jrn.PReLU(num_channels=3, param_dtype=jnp.float64)
      layer.negative_slope[...] = slope
      g_nnx = nnx.grad(lambda m: loss(m(x)))(layer).negative_slope[...]
      g_fn = jax.grad(lambda s: loss(jaxrelu.prelu(x, s)))(slope)
      eps = 1e-6
      fd = [
        (
          loss(jaxrelu.prelu(x, slope.at[c].add(eps)))
          - loss(jaxrelu.prelu(x, slope.at[c].add(-eps)))
        )
        / (2 * eps)
        for c in range(3)
      ]
    np.testing.assert_allclose(g_linen, g_fn, rtol=1e-14)
    np.testing.assert_allclose(g_nnx, g_fn, rtol=1e-14)
    np.testing.assert_allclose(g_fn, fd, rtol=1e-7)

  def test_slope_learns_in_optax_loop(self):
    # Regress onto a teacher PReLU with slope 0.05 from the default 0.25.
    x = _normal((256, 4))
    target = jnp.where(x > 0, x, 0.05 * x)
    model = jrn.PReLU(num_channels=4)
    optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
      loss_fn = lambda m: jnp.mean((m(x) - target) ** 2)
      loss, grads = nnx.value_and_grad(loss_fn)(model)
      optimizer.update(model, grads)
      return loss

    first = step(model, optimizer)
    for _ in range(200):
      last = step(model, optimizer)
    self.assertLess(float(last), 1e-6 * float(first))
    np.testing.assert_allclose(model.negative_slope[...], 0.05, atol=1e-3)


def _linen_rrelu(x, key, **kw):
  return jrl.RReLU(**kw).apply(
    {}, x, deterministic=False, rngs={'dropout': key}
  )


class StochasticLayerTest(parameterized.TestCase):
  def test_rrelu_training_slopes_are_uniform_ks(self):
    n, lower, upper = 20000, 0.1, 0.4
    y = _linen_rrelu(-jnp.ones(n), jax.random.key(0), lower=lower, upper=upper)
    slopes = np.sort(-np.asarray(y, np.float64))
    cdf = (slopes - lower) / (upper - lower)
    ecdf_hi = np.arange(1, n + 1) / n
    ecdf_lo = np.arange(0, n) / n
    ks = max(np.max(ecdf_hi - cdf), np.max(cdf - ecdf_lo))
    # Kolmogorov critical value at p = 0.001: 1.949 / sqrt(n).
    self.assertLess(ks, 1.949 / np.sqrt(n))
    self.assertGreaterEqual(slopes.min(), lower)
    self.assertLessEqual(slopes.max(), upper)

  @parameterized.parameters(0.05, 0.1, 0.2)
  def test_alpha_dropout_layers_keep_mean_and_variance(self, rate):
    x = _normal((2**20,))
    n = x.size
    _, var, m4 = output_moments(rate)  # exact moments of the output
    for y in (
      jrl.AlphaDropout(rate).apply(
        {}, x, deterministic=False, rngs={'dropout': jax.random.key(1)}
      ),
      jrn.AlphaDropout(rate, rngs=nnx.Rngs(dropout=1))(x),
    ):
      y = np.asarray(y, np.float64)
      # 5 standard errors of the sample mean and the sample variance.
      self.assertLess(abs(y.mean()), 5 * np.sqrt(var / n))
      self.assertLess(abs(y.var() - 1), 5 * np.sqrt((m4 - var**2) / n))

  def test_eval_mode_matches_functional_exactly(self):
    x = _normal((8, 16))
    evals = {
      'linen rrelu': jrl.RReLU().apply({}, x, deterministic=True),
      'linen rrelu field': jrl.RReLU(deterministic=True).apply({}, x),
      'nnx rrelu': jrn.RReLU(deterministic=True)(x),
    }
    for name, y in evals.items():
      np.testing.assert_array_equal(
        y, jaxrelu.rrelu(x, deterministic=True), name
      )
    for y in (
      jrl.AlphaDropout(0.3).apply({}, x, deterministic=True),
      jrn.AlphaDropout(0.3, deterministic=True)(x),
    ):
      np.testing.assert_array_equal(y, x)

  def test_linen_and_nnx_agree_given_the_same_key(self):
    x, key = _normal((8, 16)), jax.random.key(5)
    np.testing.assert_array_equal(
      jrl.RReLU().apply({}, x, deterministic=False, rng=key),
      jrn.RReLU()(x, rngs=key),
    )
    np.testing.assert_array_equal(
      jrl.AlphaDropout(0.2).apply({}, x, deterministic=False, rng=key),
      jrn.AlphaDropout(0.2)(x, rngs=key),
    )
    np.testing.assert_array_equal(
      jrn.RReLU()(x, rngs=key), jaxrelu.rrelu(x, key)
    )

  def test_same_key_same_noise_changed_key_changed_noise(self):
    x = -jnp.ones((4, 32))
    a = _linen_rrelu(x, jax.random.key(0))
    np.testing.assert_array_equal(a, _linen_rrelu(x, jax.random.key(0)))
    self.assertFalse(np.array_equal(a, _linen_rrelu(x, jax.random.key(1))))
    m1, m2 = (
      jrn.RReLU(rngs=nnx.Rngs(dropout=0)),
      jrn.RReLU(rngs=nnx.Rngs(dropout=0)),
    )
    np.testing.assert_array_equal(m1(x), m2(x))
    self.assertFalse(np.array_equal(m1(x), m2(x, rngs=nnx.Rngs(dropout=9))))
    # A stream advances: two calls draw different slopes.
    self.assertFalse(np.array_equal(m1(x), m1(x)))

  def test_two_layers_in_one_model_draw_independent_noise(self):
    x = -jnp.ones((4, 32))

    class Two(nn.Module):
      @nn.compact
      def __call__(self, x):
        return jrl.RReLU(deterministic=False)(x), jrl.RReLU(
          deterministic=False
        )(x)

    a, b = Two().apply({}, x, rngs={'dropout': jax.random.key(0)})
    self.assertFalse(np.array_equal(a, b))

    class TwoNNX(nnx.Module):
      def __init__(self, rngs):
        self.a, self.b = jrn.RReLU(rngs=rngs), jrn.RReLU(rngs=rngs)

    model = TwoNNX(nnx.Rngs(dropout=0))
    self.assertFalse(np.array_equal(model.a(x), model.b(x)))

  def test_missing_key_errors_name_module_stream_and_fixes(self):
    x = jnp.ones(3)
    for call in (
      lambda: jrl.RReLU().apply({}, x, deterministic=False),
      # No silent fallback to 'params' during init, unlike make_rng.
      lambda: jrl.RReLU(deterministic=False).init(jax.random.key(0), x),
      lambda: jrl.AlphaDropout(0.1).apply({}, x, deterministic=False),
      lambda: jrn.RReLU()(x),
      # No silent fallback to 'default', unlike nnx.Rngs.__getitem__.
      lambda: jrn.RReLU(rngs=nnx.Rngs(0))(x),
      lambda: jrn.AlphaDropout(0.1, rngs=nnx.Rngs(params=0))(x),
    ):
      with self.assertRaisesRegex(
        ValueError,
        r'(RReLU|AlphaDropout) is in training mode but has no PRNG key for '
        r"stream 'dropout'.*evaluation.*No other stream",
      ):
        call()

  def test_custom_rng_collection(self):
    x = -jnp.ones(16)
    y = jrl.RReLU(rng_collection='noise').apply(
      {}, x, deterministic=False, rngs={'noise': jax.random.key(0)}
    )
    self.assertTrue(np.all((-y >= 1 / 8) & (-y <= 1 / 3)))
    z = jrn.RReLU(rng_collection='noise', rngs=nnx.Rngs(noise=0))(x)
    self.assertTrue(np.all((-z >= 1 / 8) & (-z <= 1 / 3)))
    # The 'dropout' stream is not a stand-in for 'noise'.
    with self.assertRaisesRegex(ValueError, "stream 'noise'"):
      jrl.RReLU(rng_collection='noise').apply(
        {}, x, deterministic=False, rngs={'dropout': jax.random.key(0)}
      )
    with self.assertRaisesRegex(ValueError, "stream 'noise'"):
      jrn.RReLU(rng_collection='noise', rngs=nnx.Rngs(dropout=0))(x)

  def test_bad_hyperparameters(self):
    with self.assertRaisesRegex(ValueError, 'lower must not exceed upper'):
      jrn.RReLU(0.5, 0.2)
    with self.assertRaisesRegex(ValueError, 'lower must not exceed upper'):
      jrl.RReLU(lower=0.5, upper=0.2).apply({}, jnp.ones(2), deterministic=True)
    for rate in (-0.1, 1.0):
      with self.assertRaisesRegex(
        ValueError, r'AlphaDropout: rate must be in \[0, 1\)'
      ):
        jrn.AlphaDropout(rate)
      with self.assertRaisesRegex(
        ValueError, r'AlphaDropout: rate must be in \[0, 1\)'
      ):
        jrl.AlphaDropout(rate).apply({}, jnp.ones(2), deterministic=True)

  def test_linen_deterministic_merge(self):
    x = jnp.ones(2)
    with self.assertRaisesRegex(ValueError, 'deterministic'):
      jrl.RReLU().apply({}, x)  # neither field nor argument
    with self.assertRaisesRegex(ValueError, 'deterministic'):
      jrl.RReLU(deterministic=True).apply({}, x, deterministic=True)

  def test_nnx_modes_train_eval_view_and_override(self):
    class Model(nnx.Module):
      def __init__(self, rngs):
        self.rrelu = jrn.RReLU(rngs=rngs)
        self.drop = jrn.AlphaDropout(0.5, rngs=rngs)

      def __call__(self, x):
        return self.drop(self.rrelu(x))

    x = -jnp.ones((4, 8))
    model = Model(nnx.Rngs(dropout=0))
    expected_eval = np.asarray(jaxrelu.rrelu(x, deterministic=True))
    model.eval()
    np.testing.assert_array_equal(model(x), expected_eval)
    model.train()
    self.assertFalse(np.array_equal(model(x), expected_eval))
    view = nnx.view(model, deterministic=True)
    np.testing.assert_array_equal(view(x), expected_eval)
    model.eval()
    y = model.rrelu(x, deterministic=False)  # call-time override
    self.assertFalse(np.array_equal(y, expected_eval))


class Block(nn.Module):
  @nn.compact
  def __call__(self, x, _):
    x = nn.Dense(16)(x)
    x = jrl.PReLU(axis=-1)(x)
    x = jrl.RReLU(deterministic=False)(x)
    x = jrl.AlphaDropout(0.1, deterministic=False)(x)
    return x, None


class NNXBlock(nnx.Module):
  def __init__(self, rngs):
    self.linear = nnx.Linear(16, 16, rngs=rngs)
    self.prelu = jrn.PReLU(num_channels=16)
    self.rrelu = jrn.RReLU(rngs=rngs)
    self.drop = jrn.AlphaDropout(0.1, rngs=rngs)

  def __call__(self, x):
    return self.drop(self.rrelu(self.prelu(self.linear(x))))


def _stack(block, length):
  return nn.scan(
    block,
    variable_axes={'params': 0},
    split_rngs={'params': True, 'dropout': True},
    length=length,
  )()


class TransformTest(absltest.TestCase):
  def test_linen_jit_vmap_grad_scan_remat(self):
    x = _normal((4, 16))
    rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
    for block in (Block, nn.remat(Block)):
      stack = _stack(block, 3)
      variables = stack.init(rngs, x, None)
      self.assertEqual(
        variables['params']['PReLU_0']['negative_slope'].shape, (3, 16)
      )
      apply = jax.jit(
        lambda v, x, k, stack=stack: stack.apply(
          v, x, None, rngs={'dropout': k}
        )[0]
      )
      y = apply(variables, x, jax.random.key(2))
      np.testing.assert_array_equal(y, apply(variables, x, jax.random.key(2)))
      # Per-example noise under vmap: one input row, four keys.
      rows = jnp.broadcast_to(x[:1], (4, 1, 16))
      per_example = jax.vmap(apply, in_axes=(None, 0, 0))(
        variables, rows, jax.random.split(jax.random.key(3), 4)
      )
      self.assertEqual(per_example.shape, (4, 1, 16))
      self.assertFalse(np.array_equal(per_example[0], per_example[1]))
      grads = jax.grad(
        lambda v, apply=apply: jnp.sum(apply(v, x, jax.random.key(2)) ** 2)
      )(variables)
      slope_grad = grads['params']['PReLU_0']['negative_slope']
      self.assertEqual(slope_grad.shape, (3, 16))
      self.assertTrue(np.all(np.isfinite(slope_grad)))
    # remat does not change the result.
    plain = _stack(Block, 3)
    remat = _stack(nn.remat(Block), 3)
    v = plain.init(rngs, x, None)
    np.testing.assert_allclose(
      plain.apply(v, x, None, rngs={'dropout': jax.random.key(7)})[0],
      remat.apply(v, x, None, rngs={'dropout': jax.random.key(7)})[0],
      rtol=1e-6,
    )

  def test_nnx_jit_scan_remat_grad(self):
    @nnx.split_rngs(splits=3)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create(rngs):
      return NNXBlock(rngs)

    stack = create(nnx.Rngs(params=0, dropout=1))
    self.assertEqual(stack.prelu.negative_slope[...].shape, (3, 16))

    @nnx.jit
    def forward(stack, x):
      @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
      def body(x, block):
        return nnx.remat(lambda b, x: b(x))(block, x)

      return body(x, stack)

    x = _normal((4, 16))
    y1, y2 = forward(stack, x), forward(stack, x)
    self.assertFalse(np.array_equal(y1, y2))  # streams advanced
    stack.eval()
    np.testing.assert_array_equal(forward(stack, x), forward(stack, x))
    grads = nnx.grad(lambda s: jnp.sum(forward(s, x) ** 2))(stack)
    self.assertEqual(grads.prelu.negative_slope[...].shape, (3, 16))
    self.assertTrue(np.all(np.isfinite(grads.prelu.negative_slope[...])))


class StateRoundTripTest(absltest.TestCase):
  def test_linen_variables_through_flax_serialization(self):
    x = _normal((4, 16))
    stack = _stack(Block, 2)
    variables = stack.init(
      {'params': jax.random.key(0), 'dropout': jax.random.key(1)}, x, None
    )
    blob = flax.serialization.to_bytes(variables)
    template = stack.init(
      {'params': jax.random.key(9), 'dropout': jax.random.key(9)}, x, None
    )
    restored = flax.serialization.from_bytes(template, blob)
    run = lambda v: stack.apply(
      v, x, None, rngs={'dropout': jax.random.key(3)}
    )[0]
    np.testing.assert_array_equal(run(restored), run(variables))

  def test_nnx_state_and_update(self):
    x = _normal((4, 16))
    model = NNXBlock(nnx.Rngs(params=0, dropout=1))
    snapshot = jax.tree.map(jnp.copy, nnx.to_pure_dict(nnx.state(model)))
    expected = model(x)
    other = NNXBlock(nnx.Rngs(params=5, dropout=6))
    state = nnx.state(other)
    nnx.replace_by_pure_dict(state, snapshot)
    nnx.update(other, state)
    # Parameters and RNG stream positions both round-trip.
    np.testing.assert_array_equal(other(x), expected)


if __name__ == '__main__':
  absltest.main()
