"""experiments/dying_relu.py: small sweeps, resume after interruption, flags."""

import functools
import json
import os
import shutil
import tempfile

import binaries
import numpy as np
from absl.testing import absltest, parameterized

_SMALL = (
  '--activations=relu,leaky_relu,prelu',
  '--learning_rates=0.01,0.5',
  '--bias_inits=-1,0,0.01',
  '--depths=2',
  '--widths=16',
  '--steps=40',
  '--record_every=20',
  '--seeds=2',
  '--batch=32',
)


_run = functools.partial(binaries.run, 'experiments.dying_relu')


class DyingReluTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.out)

  def test_interrupted_and_resumed_equals_uninterrupted(self):
    a, b, before_resume, parts = binaries.run_whole_and_resumed(
      self, 'experiments.dying_relu', _SMALL, self.out
    )
    self.assertEqual(before_resume, 2 * 3)  # one activation's lr x bias cells
    self.assertLen(a, 3 * 2 * 3)
    for key in a:
      self.assertEqual(a[key]['dead_per_layer'], b[key]['dead_per_layer'])
      self.assertEqual(a[key]['loss'], b[key]['loss'])
    # Outputs of the finished sweep.
    for name in ('cells.csv', 'report.md', 'summary.json'):
      self.assertTrue(os.path.exists(f'{parts}/{name}'), name)
    for png in ('dead_heatmaps.png', 'dead_vs_step.png'):
      with open(f'{parts}/{png}', 'rb') as f:
        self.assertEqual(f.read(4), b'\x89PNG')
    with open(f'{parts}/report.md') as f:
      report = f.read()
    for claim in (
      '1. **High learning rate',
      '2. **Bias -1',
      '3. **Bias +0.01',
      '4. **Variants',
    ):
      self.assertIn(claim, report)

  def test_bias_minus_one_kills_units_at_initialisation(self):
    _run(
      '--activations=relu,prelu',
      '--learning_rates=0.01',
      '--bias_inits=-1,0',
      '--depths=4',
      '--widths=16',
      '--steps=20',
      '--record_every=20',
      '--seeds=4',
      '--batch=32',
      f'--output_dir={self.out}',
    )
    cells = {
      (c['activation'], c['learning_rate'], c['bias_init']): c
      for c in binaries.read_cells(self.out)
    }
    # At init (record 0), bias -1 kills more ReLU units than bias 0.
    self.assertGreater(
      cells[('relu', 0.01, -1.0)]['initial_dead_mean'],
      cells[('relu', 0.01, 0.0)]['initial_dead_mean'],
    )
    # PReLU slopes are learned and recorded, one per hidden layer.
    self.assertLen(cells[('prelu', 0.01, 0.0)]['final_slopes'][0], 4)

  def test_cells_spread_over_eight_devices_match_one_device(self):
    flags = (
      '--activations=relu',
      '--learning_rates=0.01,0.03,0.1,0.3',
      '--bias_inits=0,0.01',  # 8 cells: one per device
      '--depths=2',
      '--widths=16',
      '--steps=20',
      '--record_every=10',
      '--seeds=2',
      '--batch=32',
    )
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    one = _run(*flags, f'--output_dir={self.out}/one', env=env)
    env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
    eight = _run(*flags, f'--output_dir={self.out}/eight', env=env)
    self.assertIn(one.returncode, (0, 1), one.stderr[-2000:])  # the claims
    self.assertEqual(eight.returncode, one.returncode, eight.stderr[-2000:])
    for name, devices in (('one', 1), ('eight', 8)):
      with open(f'{self.out}/{name}/summary.json') as f:
        meta = json.load(f)['meta']
      self.assertEqual(meta['cells_sharded_over_devices'], devices)
    a = {c['key']: c for c in binaries.read_cells(f'{self.out}/one')}
    b = {c['key']: c for c in binaries.read_cells(f'{self.out}/eight')}
    self.assertEqual(set(a), set(b))
    for key in a:
      self.assertEqual(a[key]['dead_per_layer'], b[key]['dead_per_layer'])
      np.testing.assert_allclose(a[key]['loss'], b[key]['loss'], rtol=1e-4)

  @parameterized.parameters(
    ('--activations=relu,swish', 'unknown swish'),
    ('--activations=', '--activations must not be empty'),
    ('--learning_rates=0', '--learning_rates: 0 is not a finite number > 0'),
    ('--learning_rates=nan', '--learning_rates: nan is not a finite'),
    ('--learning_rates=inf', '--learning_rates: inf is not a finite'),
    ('--learning_rates=0.1,0.1', '--learning_rates repeats 0.1'),
    ('--bias_inits=-inf', '--bias_inits: -inf is not a finite number'),
    ('--optimizer=rmsprop', '--optimizer: unknown rmsprop'),
    ('--steps=30', '--steps: 30 is not a positive multiple'),
    ('--depths=0', '--depths: 0 is not an integer >= 1'),
  )
  def test_bad_flags(self, flag, message):
    result = _run(flag, f'--output_dir={self.out}/never')
    binaries.assert_one_line_error(self, result, message, f'{self.out}/never')


if __name__ == '__main__':
  absltest.main()
