"""Sharded inputs over 8 forced CPU devices, in a subprocess.

The device count must be set before jax initialises its backend, so the check
runs in a fresh interpreter with XLA_FLAGS set.
"""

import os
import subprocess
import sys
import textwrap

from absl.testing import absltest

_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import jaxrelu
    from jaxrelu import linen as jrl
    from jaxrelu import nnx as jrn

    assert jax.device_count() == 8, jax.devices()
    mesh = jax.make_mesh((8,), ('batch',))
    sharding = NamedSharding(mesh, P('batch'))
    x_host = np.linspace(-4, 8, 64 * 32, dtype=np.float32).reshape(64, 32)
    x = jax.device_put(x_host, sharding)
    key = jax.random.key(0)
    slope = jnp.linspace(0.1, 0.3, 32)
    nnx_prelu = jrn.PReLU(num_channels=32)
    nnx_prelu.negative_slope[...] = slope
    fns = {
        'relu': jaxrelu.relu,
        'relu6': jaxrelu.relu6,
        'leaky_relu': jaxrelu.leaky_relu,
        'prelu_scalar': lambda x: jaxrelu.prelu(x, 0.25),
        'prelu_channel': lambda x: jaxrelu.prelu(x, jnp.linspace(0, 1, 32)),
        'rrelu_eval': lambda x: jaxrelu.rrelu(x, deterministic=True),
        'rrelu_train': lambda x: jaxrelu.rrelu(x, key),
        'elu': jaxrelu.elu,
        'celu': lambda x: jaxrelu.celu(x, 0.5),
        'selu': jaxrelu.selu,
        'alpha_dropout': lambda x: jaxrelu.alpha_dropout(x, 0.1, key),
        'linen_prelu': lambda x: jrl.PReLU(axis=-1).apply(
            {'params': {'negative_slope': slope}}, x),
        'linen_rrelu': lambda x: jrl.RReLU().apply(
            {}, x, deterministic=False, rngs={'dropout': key}),
        'linen_alpha_dropout': lambda x: jrl.AlphaDropout(0.2).apply(
            {}, x, deterministic=False, rngs={'dropout': key}),
        'nnx_prelu': lambda x: nnx_prelu(x),
        'nnx_rrelu': lambda x: jrn.RReLU()(x, rngs=key),
        'nnx_alpha_dropout': lambda x: jrn.AlphaDropout(0.2)(x, rngs=key),
    }
    collectives = ('all-gather', 'all-to-all', 'collective-permute',
                   'all-reduce')
    for name, fn in fns.items():
      fwd = jax.jit(fn)
      vjp = jax.jit(lambda x, ct: jax.vjp(fn, x)[1](ct)[0])
      y = fwd(x)
      assert y.sharding.is_equivalent_to(sharding, 2), (name, y.sharding)
      # A few ulp: the sharded jit and the host run are different programs.
      np.testing.assert_allclose(
          np.asarray(y), np.asarray(fn(x_host)), rtol=4e-6, atol=1e-7)
      g = vjp(x, jnp.ones_like(x))
      assert g.sharding.is_equivalent_to(sharding, 2), (name, g.sharding)
      g_host = jax.vjp(fn, x_host)[1](np.ones_like(x_host))[0]
      np.testing.assert_allclose(
          np.asarray(g), np.asarray(g_host), rtol=4e-6, atol=1e-7)
      for stage, f, args in (('fwd', fwd, (x,)), ('vjp', vjp, (x, x))):
        hlo = f.lower(*args).compile().as_text()
        found = [c for c in collectives if c in hlo]
        assert not found, (name, stage, found)
    # Dead-unit tracker: a max over a batch sharded across 8 devices.
    from jaxrelu import diagnostics
    pre_host = {'a': x_host - np.linspace(0, 8, 32, dtype=np.float32)}
    pre = {'a': jax.device_put(pre_host['a'], sharding)}
    state = jax.jit(diagnostics.tracker_update)(
        diagnostics.tracker_init(pre), pre)
    want = np.asarray(diagnostics.dead_units(pre_host)['a'])
    assert 0 < want.mean() < 1, want.mean()
    np.testing.assert_array_equal(
        np.asarray(state.max_preactivation['a']) <= 0, want)
    assert int(state.examples) == 64
    print('sharding ok', len(fns))
""")


class ShardingTest(absltest.TestCase):
  def test_sharded_inputs_keep_sharding_without_collectives(self):
    env = dict(os.environ)
    env['XLA_FLAGS'] = (
      env.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
    )
    env['JAX_PLATFORMS'] = 'cpu'
    result = subprocess.run(
      [sys.executable, '-c', _SCRIPT],
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
      check=False,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-4000:])
    self.assertIn('sharding ok 17', result.stdout)


if __name__ == '__main__':
  absltest.main()
