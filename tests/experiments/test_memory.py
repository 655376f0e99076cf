"""Memory estimated before compute (issue 28 item 1): every binary refuses
a size the machine cannot hold with a one-line usage error giving the
estimate, and each estimate bounds XLA's analysis of the program."""

import binaries
import jax
import jax.numpy as jnp
from absl.testing import absltest

import jaxrelu

# No binary is imported here: binaries define flags, several the same
# names, and test_calibrate_self_normalization.py imports one in process.
from experiments import cli, model
from experiments.benchmark_activations import timing
from experiments.calibrate_self_normalization import rates as calibration_rates
from jaxrelu import self_normalization as sn

_HUGE = 2**30  # a batch or trial count no test machine holds


def _one_device(compiled) -> int:
  return cli.compiled_bytes(compiled, jax.local_devices()[:1])


class RequireMemoryTest(absltest.TestCase):
  def test_refuses_above_what_is_available_naming_both(self):
    have = cli.available_memory()
    self.assertGreater(have, 2**20)
    cli.require_memory(have // 2, 'half', '--x')
    with self.assertRaisesRegex(
      cli.UsageError,
      r'^big needs about .* GiB of memory, more than the .* '
      r'GiB available: lower --x$',
    ):
      cli.require_memory(2 * have, 'big', '--x')


class ProgramsRefuseTest(absltest.TestCase):
  """The trainers check XLA's analysis of their compiled program before it
  runs, so nothing is allocated for a size that cannot fit."""

  def test_a_cell_program_larger_than_memory(self):
    # model.by_cell, which trains dying_relu's and compare_variants' cells:
    # a program that sorts twice the available memory is refused while
    # compiled, and nothing runs.
    def sorts(rows):
      def program(own, shared):
        noise = jax.random.uniform(jax.random.key(0), (rows, 2**16))
        return jnp.sort(noise + own[0] * shared, axis=0)[0]

      return program

    rows = -(-2 * cli.available_memory() // 4 // 2**16)
    with self.assertRaisesRegex(cli.UsageError, r'one cell needs .* --rows$'):
      model.by_cell(
        sorts(rows), (jnp.ones((1, 1)),), jnp.float32(1), lower='--rows'
      )
    # And a program of the same form that fits runs.
    out = model.by_cell(sorts(4), (jnp.ones((3, 1)),), jnp.float32(1))
    self.assertEqual(out.shape, (3, 2**16))


class EstimateBoundsXlaTest(absltest.TestCase):
  """Estimates made from the flags bound XLA's own figure for the program,
  and are not far above it (they would refuse runs that fit)."""

  def test_selu_simulation(self):
    # Wide and narrow (the weights' or the activations' terms dominate).
    for width, batch, seeds in ((256, 64, 2), (16, 4096, 8)):
      keys = jax.random.split(jax.random.key(0), seeds)
      compiled = sn._simulate.lower(
        keys,
        jnp.float32(1),
        jnp.float32(1),
        jnp.float32(0.1),
        width=width,
        batch=batch,
        depth=8,
        dtype=jnp.float32,
      ).compile()
      xla = _one_device(compiled)
      estimate = calibration_rates.simulate_bytes(width, batch, 8, seeds)
      self.assertBetween(estimate / xla, 1.0, 8.0, (width, batch, seeds))

  def test_benchmark_arrays_and_mlp_step(self):
    for fn in (jaxrelu.relu, jaxrelu.elu, jax.nn.elu):
      x = jax.ShapeDtypeStruct((2**16,), jnp.float32)
      grad = jax.jit(jax.grad(lambda x, f=fn: f(x).sum()))
      xla = _one_device(grad.lower(x).compile())
      estimate = timing.peak_bytes([2**16], [jnp.float32], (0, 1, 1))
      self.assertBetween(estimate / xla, 1.0, 8.0, fn)
    # The MLP step whose memory benchmark_activations reports
    # (memory.mlp_temp_bytes'), with its arguments and outputs.
    layers, width, batch = 4, 256, 128

    def loss(params, x, y):
      h = x
      for w, b in params[:-1]:
        h = jax.nn.relu(h @ w + b)
      w, b = params[-1]
      return jnp.mean((h @ w + b - y) ** 2)

    def step(params, x, y):
      grads = jax.grad(loss)(params, x, y)
      return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)

    sds = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    params = [(sds(width, width), sds(width)) for _ in range(layers)]
    params.append((sds(width, 10), sds(10)))
    compiled = jax.jit(step).lower(params, sds(batch, width), sds(batch, 10))
    xla = _one_device(compiled.compile())
    estimate = timing.peak_bytes([1024], [jnp.float32], (layers, width, batch))
    self.assertBetween(estimate / xla, 1.0, 8.0)


class BinariesRefuseTest(absltest.TestCase):
  def test_a_million_power_runs_is_refused_before_any_is_built(self):
    # It grew past 21 GB building its cells before this check.
    result = binaries.run(
      'experiments.calibrate_self_normalization',
      '--power_runs=100000000',
      '--output_dir=/nonexistent/never',
    )
    binaries.assert_one_line_error(
      self, result, 'cells, more than the 1000000', never='/nonexistent'
    )

  def test_a_statistics_step_larger_than_memory(self):
    # benchmark_unit_stats checks XLA's figure for its program, compiled
    # from shapes before anything is allocated.
    result = binaries.run(
      'experiments.benchmark_unit_stats',
      '--activations=relu',
      '--width=65536',
      '--layers=16',
      '--output_dir=/nonexistent/never',
    )
    binaries.assert_one_line_error(
      self, result, 'GiB of memory, more than the', never='/nonexistent'
    )


if __name__ == '__main__':
  absltest.main()
