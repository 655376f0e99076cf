"""experiments.selu_deep_stack: small runs end to end, flags, sharding."""

import csv
import json
import os
import shutil
import tempfile

import binaries
import numpy as np
import report_check
from absl.testing import absltest, parameterized

from experiments import plots

_SMALL = ('--depth=60', '--width=256', '--batch=64', '--seeds=2')
# One device (on CPU), as the sharded run is compared with.
_ENV = dict(os.environ, JAX_PLATFORMS='cpu')


class SeluDeepStackTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Every figure its runs write is checked (plots.FIGURE_LOG_ENV).
    figures = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, figures)
    cls.figure_log = os.path.join(figures, 'figures.jsonl')
    cls.binary = binaries.Binary(
      'experiments.selu_deep_stack',
      env={**_ENV, plots.FIGURE_LOG_ENV: cls.figure_log},
    )
    cls.addClassCleanup(cls.binary.close)
    # The small run, read by several tests.
    cls.small_dir = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, cls.small_dir)
    cls.small = cls.binary.run(
      *_SMALL,
      '--activations=selu,relu',
      '--noscenarios',
      f'--output_dir={cls.small_dir}',
    )

  def setUp(self):
    super().setUp()
    self.out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.out)

  def test_a_users_activation_runs_beside_selu(self):
    # Issue 30 item 2: package.module:function in --activations, with its
    # source's hash in the cell; a bad path is a one-line usage error.
    result = self.binary.run(
      *_SMALL,
      '--activations=selu,tests.user_activations:capped[label=capped]',
      '--noscenarios',
      f'--output_dir={self.out}',
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
    names = [r['name'] for r in self._results()['results']]
    self.assertIn('capped (he_normal)', names)
    cells = [
      c for c in binaries.read_cells(self.out) if 'activation_source' in c
    ]
    self.assertLen(cells, 1)
    self.assertEqual(cells[0]['activation_path'], 'tests.user_activations')
    binaries.assert_one_line_error(
      self,
      self.binary.run(
        '--activations=selu,nomodule:f', f'--output_dir={self.out}/x'
      ),
      "cannot import 'nomodule'",
      never=f'{self.out}/x',
    )

  def test_flag_fuzz(self):
    self.assertGreater(binaries.fuzz_flags(self, self.binary), 100)

  def _results(self, directory=None):
    with open(os.path.join(directory or self.out, 'results.json')) as f:
      return json.load(f)

  def test_small_run_writes_results_and_plots_and_exits_0(self):
    result, out = self.small, self.small_dir
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn('Verdict: SUPPORTED: the one configuration', result.stdout)
    # Under the verdict: what a PASS rules out (results.md: unwrapped).
    with open(os.path.join(out, 'results.md')) as f:
      self.assertRegex(
        f.read(),
        r'selu \(lecun_normal\): PASS: mean and std within the pass band .*'
        r'; detectable with probability 0.8 at level 0.01: lambda off by '
        r'0\.\d\d%, weight variance off by 1\.\d\d%',
      )
    data = self._results(out)
    self.assertTrue(data['claim_holds'])
    self.assertEqual(data['verdict'], 'SUPPORTED')
    self.assertEqual(data['meta']['flags']['depth'], 60)
    self.assertIn('jax', data['meta']['versions'])
    selu, relu = data['results']
    self.assertTrue(selu['meets_criterion'])
    self.assertFalse(relu['meets_criterion'])
    self.assertEqual(selu['verdict'], 'PASS')
    # 30 layers of 2 seeds are too few to judge ReLU's drifting stack.
    self.assertIn(relu['verdict'], ('FAIL', 'NOT TESTABLE'))
    self.assertLess(selu['check']['detectable']['scale'], 0.02)
    self.assertEqual(len(selu['per_layer']['mean']), 60)
    # The backward pass grows as the theory says (1.0716 per layer).
    self.assertAlmostEqual(selu['grad_gain_per_layer'], 1.0716, delta=0.02)
    self.assertAlmostEqual(selu['predicted_grad_gain_per_layer'], 1.0716, 4)
    with open(os.path.join(out, 'results.csv')) as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, 2 * 60)
    self.assertEqual(rows[0]['layer'], '1')
    for png in ('stats_main.png', 'gradients.png'):
      with open(os.path.join(out, png), 'rb') as f:
        self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
    self.assertNotIn('.tmp-', ''.join(os.listdir(out)))

  def test_figures_tell_configurations_apart_and_none_is_empty(self):
    small = binaries.figures_written(self, self.figure_log, self.small_dir)
    # --noscenarios: no control, recovery or dropout figure, not an empty one.
    self.assertEqual(
      small,
      {
        'stats_main.png': True,
        'stats_controls.png': False,
        'stats_recovery_dropout.png': False,
        'gradients.png': True,
      },
    )

  def test_stdout_and_report_say_why(self):
    # Issue 28 item 7: each configuration's verdict with its reason, on
    # stdout (at most 100 columns) and in results.md's table, which ends
    # with the provenance; SELU's test columns are '-' on the ReLU row.
    result, out = self.small, self.small_dir
    with open(os.path.join(out, 'results.md')) as f:
      text = f.read()
    flags = ('depth', 'width', 'batch', 'seeds', 'activations', 'level')
    report_check.assert_report(self, result.stdout, text, flags)
    self.assertNotIn('| relu (he_normal) |', result.stdout)
    self.assertIn(f'full table: {out}/results.md', result.stdout)
    self.assertRegex(
      result.stdout, r'- relu \(he_normal\) \(main\): (FAIL|NOT TESTABLE): '
    )
    (relu,) = [line for line in text.splitlines() if '| relu (' in line]
    cells = [c.strip() for c in relu.split('|')[1:-1]]
    self.assertRegex(cells[2], "^(FAIL|NOT TESTABLE): tested against SELU's")
    # SELU's fixed point, Holm p and detectable: not the ReLU row's.
    self.assertEqual(cells[4:7], ['-', '-', '-'])
    (selu,) = [line for line in text.splitlines() if '| selu (' in line]
    self.assertRegex(
      selu,
      r'\| PASS: mean and std within the pass band .* \| '
      r'-?0\.\d{4}, 0\.\d{4} \| -?0\.\d{4} \+- 0\.\d{4}; ',
    )

  def test_negative_control_fails_the_criterion(self):
    # Weight variance 1.1/n: std settles near 1.19, outside the band.
    result = self.binary.run(
      '--depth=200',
      '--width=256',
      '--batch=64',
      '--seeds=2',
      '--activations=selu',
      '--weight_var_scale=1.1',
      '--noscenarios',
      f'--output_dir={self.out}',
    )
    self.assertEqual(result.returncode, 1)  # paper conditions not tested
    (control,) = self._results()['results']
    self.assertFalse(control['meets_criterion'])
    self.assertAlmostEqual(control['final_std'], 1.19, delta=0.03)
    self.assertAlmostEqual(control['predicted_final_std'], 1.187, delta=0.002)

  def test_width_16_is_not_testable_rather_than_pass(self):
    # At width 16 the run cannot see a 2% error in lambda or the weight
    # variance (BUILD_NOTES.md, "SELU's calibrated test"): not a PASS.
    result = self.binary.run(
      '--width=16',
      '--seeds=4',
      '--activations=selu',
      '--noscenarios',
      f'--output_dir={self.out}',
    )
    self.assertEqual(result.returncode, 1, result.stderr[-2000:])
    self.assertIn(
      'NOT TESTABLE (the run could not detect a 2% error', result.stdout
    )
    (selu,) = self._results()['results']
    self.assertEqual(selu['verdict'], 'NOT TESTABLE')
    self.assertGreater(selu['check']['detectable']['weight_variance'], 0.02)

  @parameterized.named_parameters(
    ('depth', '--depth=7', '--depth: 7 is not >= 8'),
    ('level', '--level=0', '--level: 0 is not in (0, 0.5]'),
    ('level_high', '--level=0.6', '--level: 0.6 is not in (0, 0.5]'),
    ('detectable', '--detectable=0', '--detectable: 0 is not in (0, 1)'),
    ('width', '--width=0', '--width: 0 is not >= 1'),
    ('activation', '--activations=selu,swish', 'unknown swish'),
    ('no_activation', '--activations=', '--activations must not be empty'),
    ('repeated', '--activations=selu,selu', '--activations repeats selu'),
    ('init', '--init=orthogonal', '--init: unknown orthogonal'),
    ('rate', '--dropout_rate=1.0', r'--dropout_rate: 1 is not in [0, 1)'),
    ('negative_rate', '--dropout_rate=-0.1', '--dropout_rate: -0.1 is not'),
    ('dropout', '--dropout=gaussian', '--dropout: unknown gaussian'),
    ('variance', '--input_var=0', '--input_var: 0 is not in (0, 1e+06]'),
    ('inf_variance', '--input_var=inf', '--input_var: inf is not in (0, 1e'),
    ('nan_mean', '--input_mean=nan', '--input_mean: nan is not in [-1000, 1'),
    ('big_mean', '--input_mean=2000', '--input_mean: 2000 is not in [-1000'),
    # Was accepted and computed NaN.
    ('huge_mean', '--input_mean=1e300', '--input_mean: 1e+300 is not in'),
    ('not_a_number', '--depth=ten', '--depth=ten'),
    ('unknown_flag', '--dept=10', 'dept'),
    ('process_id', '--process_id=1', 'need --distributed'),
    ('tasks', '--num_tasks=0', '--num_tasks: 0 is not an integer >= 1'),
  )
  def test_bad_flag_one_line_error_before_computation(self, flag, message):
    result = self.binary.run(flag, f'--output_dir={self.out}/never')
    binaries.assert_one_line_error(self, result, message, f'{self.out}/never')

  def test_sharded_run_equals_single_device(self):
    flags = (
      '--depth=30',
      '--width=64',
      '--batch=64',
      '--seeds=2',
      '--activations=selu',
      '--noscenarios',
    )
    single = self.binary.run(*flags, f'--output_dir={self.out}/one')
    env = dict(_ENV, XLA_FLAGS='--xla_force_host_platform_device_count=8')
    sharded = binaries.run(
      'experiments.selu_deep_stack',
      *flags,
      f'--output_dir={self.out}/eight',
      env=env,
    )
    # 30 layers at width 64 are too few to test (NOT TESTABLE, exit 1); the
    # numbers are what this test compares.
    self.assertEqual(single.returncode, 1, single.stderr[-2000:])
    self.assertEqual(sharded.returncode, 1, sharded.stderr[-2000:])
    self.assertIn('NOT TESTABLE', sharded.stdout)
    runs = {
      name: self._results(f'{self.out}/{name}') for name in ('one', 'eight')
    }
    self.assertEqual(runs['one']['meta']['devices_used'], 1)
    self.assertEqual(runs['eight']['meta']['devices_used'], 8)
    a = runs['one']['results'][0]['per_layer']
    b = runs['eight']['results'][0]['per_layer']
    for key in ('mean', 'std', 'unit_mean_spread', 'grad_sq_norm'):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5)


if __name__ == '__main__':
  absltest.main()
