"""A small run of experiments/benchmark_activations.py, end to end."""

import functools
import json
import os
import shutil
import tempfile

import binaries
from absl.testing import absltest

_run = functools.partial(binaries.run, 'experiments.benchmark_activations')


class BenchmarkBinaryTest(absltest.TestCase):
  def test_small_run_writes_json_and_markdown(self):
    out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, out)
    result = _run(
      '--size=8192',
      '--repeats=3',
      '--activations=relu,elu,prelu,rrelu_train',
      '--mlp_layers=2',
      '--mlp_width=64',
      '--mlp_batch=8',
      f'--output_dir={out}',
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(out, 'results.json')) as f:
      data = json.load(f)
    self.assertEqual(data['meta']['flags']['size'], 8192)
    self.assertIn('jax', data['meta']['versions'])
    rows = data['results']
    self.assertEqual(list(rows), ['relu', 'elu', 'prelu', 'rrelu_train'])
    for mode in ('fwd', 'vjp', 'jvp'):
      self.assertGreater(rows['relu']['ratio'][mode]['jax.nn'], 0)
      self.assertGreater(rows['relu']['aa_ratio'][mode], 0)
      self.assertGreater(rows['prelu']['ratio'][mode]['jaxrelu.leaky_relu'], 0)
    # Residual bytes are deterministic: 1 for relu, 4 for elu, 5 / 10 jax.nn.
    res = rows['relu']['residual_bytes_per_element']
    self.assertAlmostEqual(res['jaxrelu'], 1.0, places=3)
    self.assertAlmostEqual(res['jax.nn'], 5.0, places=3)
    res = rows['elu']['residual_bytes_per_element']
    self.assertAlmostEqual(res['jaxrelu'], 4.0, places=3)
    self.assertAlmostEqual(res['jax.nn'], 10.0, places=3)
    self.assertTrue(rows['relu']['identical_fwd_program'])
    mlp = rows['elu']['mlp_temp_bytes']
    self.assertLessEqual(mlp['jaxrelu'], mlp['jax.nn'])
    with open(os.path.join(out, 'results.md')) as f:
      table = f.read()
    for name in rows:
      self.assertIn(f'| {name} |', table)
    self.assertNotIn('.tmp-', ''.join(os.listdir(out)))

  def test_bad_flags_fail_with_one_line_error(self):
    for flags, message in (
      (['--activations=relu,swish'], 'unknown swish'),
      (['--size=1000'], 'size'),
      (['--repeats=1'], 'repeats'),
      (['--dtype=int8'], 'dtype'),
      (['--mlp_layers=0'], 'mlp_layers'),
      (['--activations=relu,relu'], '--activations repeats relu'),
    ):
      result = _run(*flags, '--output_dir=/nonexistent/never-written')
      self.assertEqual(result.returncode, 2, flags)
      self.assertLen(result.stderr.strip().splitlines(), 1, result.stderr)
      self.assertIn(message, result.stderr, flags)
      self.assertNotIn('Traceback', result.stderr, flags)


if __name__ == '__main__':
  absltest.main()
