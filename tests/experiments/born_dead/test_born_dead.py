"""experiments.born_dead: a small run end to end, and bad flags."""

import csv
import json
import math
import os
import shutil
import tempfile

import binaries
import numpy as np
import report_check
from absl.testing import absltest, parameterized

from experiments import plots
from experiments.born_dead import network as born_dead_network


class BornDeadTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Every figure its runs write is checked (plots.FIGURE_LOG_ENV).
    figures = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, figures)
    cls.figure_log = os.path.join(figures, 'figures.jsonl')
    cls.binary = binaries.Binary(
      'experiments.born_dead',
      env={**os.environ, plots.FIGURE_LOG_ENV: cls.figure_log},
    )
    cls.addClassCleanup(cls.binary.close)

  def setUp(self):
    super().setUp()
    self.out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.out)

  def test_small_run(self):
    result = self.binary.run(
      '--depths=2,10,30',
      '--widths=3,10',
      '--trials=400',
      '--grid_points=21',
      f'--output_dir={self.out}',
    )
    with open(os.path.join(self.out, 'results.json')) as f:
      data = json.load(f)
    # Exit status 0 only when every deciding claim is SUPPORTED (and one is).
    decided = [
      c['verdict']
      for c in data['claims'].values()
      if c['verdict'] in ('SUPPORTED', 'CONTRADICTED', 'NO EFFECT')
    ]
    held = bool(decided) and set(decided) == {'SUPPORTED'}
    self.assertEqual(result.returncode, 0 if held else 1, result.stderr[-3000:])
    rows = data['results']
    self.assertLen(rows, 4 * 2 * 3)
    cell = {(r['init'], r['width'], r['depth']): r for r in rows}
    for init in ('he_zero_bias', 'he_random_bias', 'bias_0.01', 'rai'):
      for width in (3, 10):
        p = [cell[(init, width, d)]['probability'] for d in (2, 10, 30)]
        # Prefixes of one network: born dead at depth L stays dead deeper.
        self.assertEqual(p, sorted(p))
    # Width 3, depth 10, He with zero bias: Lu et al. report ~60%.
    r = cell[('he_zero_bias', 3, 10)]
    self.assertTrue(0.5 <= r['probability'] <= 0.78, r)
    self.assertLessEqual(r['ci95_low'], r['probability'])
    self.assertGreaterEqual(r['ci95_high'], r['probability'])
    with open(os.path.join(self.out, 'results.csv')) as f:
      self.assertLen(list(csv.DictReader(f)), len(rows))
    with open(os.path.join(self.out, 'born_dead.png'), 'rb') as f:
      self.assertEqual(f.read(4), b'\x89PNG')
    (figure,) = [
      e
      for e in plots.read_figure_log(self.figure_log)
      if os.path.dirname(e['path']) == self.out
    ]
    self.assertEqual((figure['written'], figure['problems']), (True, []))

  def test_dead_is_not_flat(self):
    # Issue 31 item 2: a layer float32 merely flattened is not dead. RAI at
    # width 5, depth 50: about 0.73 of the networks end flat, 0.07 dead.
    result = self.binary.run(
      '--inits=rai,he_zero_bias',
      '--widths=5',
      '--depths=10,50',
      '--trials=300',
      '--grid_points=21',
      f'--output_dir={self.out}',
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
    with open(os.path.join(self.out, 'results.json')) as f:
      rows = json.load(f)['results']
    # Dead implies flat: a dead layer makes every layer above it constant.
    for r in rows:
      self.assertLessEqual(r['born_dead'], r['flat'], r)
    rai = next(r for r in rows if r['init'] == 'rai' and r['depth'] == 50)
    self.assertLess(rai['probability'], 0.2)
    self.assertGreater(rai['flat_probability'], 0.5)
    # Each trial's first dead depth is stored, paired across inits.
    (cell,) = [
      c for c in binaries.read_cells(self.out) if c['init'] == 'he_zero_bias'
    ]
    first = np.asarray(cell['first_dead'])
    self.assertLen(first, 300)
    self.assertEqual(
      int(((first > 0) & (first <= 10)).sum()), cell['dead_counts'][9]
    )

  def test_he_dead_rate_matches_a_float64_simulation(self):
    # An independent float64 NumPy simulation of He-initialised ReLU nets
    # (zero bias, width 3, depth 10, 21 inputs on [-1, 1]): a net is born
    # dead when some layer is 0 on every input. Its rate and the binary's
    # agree within their 99.9% binomial bands.
    result = self.binary.run(
      '--inits=he_zero_bias',
      '--widths=3',
      '--depths=10',
      '--trials=2000',
      '--grid_points=21',
      f'--output_dir={self.out}',
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
    with open(os.path.join(self.out, 'results.json')) as f:
      (row,) = json.load(f)['results']
    rng = np.random.default_rng(0)
    trials, width = 20000, 3
    h = np.linspace(-1.0, 1.0, 21)[None, :, None]  # (trial, input, unit)
    w = rng.normal(0.0, math.sqrt(2.0), (trials, 1, width))
    h = np.maximum(h @ w, 0.0)
    dead = (h == 0).all(axis=(1, 2))
    for _ in range(9):
      w = rng.normal(0.0, math.sqrt(2.0 / width), (trials, width, width))
      h = np.maximum(h @ w, 0.0)
      dead |= (h == 0).all(axis=(1, 2))
    p64, p32 = dead.mean(), row['probability']
    band = 3.3 * math.sqrt(p64 * (1 - p64) * (1 / trials + 1 / 2000))
    self.assertLess(abs(p32 - p64), band, (p32, p64))

  def test_other_and_users_activations_run_beside_relu(self):
    # Issue 30 item 2: --activations takes the library's deterministic
    # activations and a user's package.module:function; their rows are
    # reported beside ReLU's (with an activation column), the claims judge
    # ReLU's rows alone, and a user's cells carry its source's hash.
    result = self.binary.run(
      '--activations=relu,elu,tests.user_activations:capped[label=capped]',
      '--depths=2,5',
      '--widths=3',
      '--inits=he_zero_bias,rai',
      '--trials=200',
      '--grid_points=11',
      f'--output_dir={self.out}',
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
    with open(os.path.join(self.out, 'results.json')) as f:
      data = json.load(f)
    rows = data['results']
    self.assertLen(rows, 3 * 2 * 2)
    self.assertEqual(
      sorted({r['activation'] for r in rows}), ['capped', 'elu', 'relu']
    )
    # ELU is strictly increasing: a non-constant input never becomes
    # constant, so no ELU network is born dead.
    self.assertTrue(
      all(r['born_dead'] == 0 for r in rows if r['activation'] == 'elu')
    )
    # Lu et al.'s claim reads ReLU at depth 10 only (not run here), and the
    # closed form bounds ReLU's He rows alone: judged on 2 rows, not 6.
    self.assertIn('of 2 has its 95% CI above', json.dumps(data['literature']))
    # The claims judge ReLU's rows alone: none is about elu or capped.
    self.assertTrue(data['claims'])
    self.assertNotIn('elu', json.dumps(list(data['claims'])))
    with open(os.path.join(self.out, 'results.md')) as f:
      self.assertIn('| activation | init |', f.read())
    (cell,) = [
      c
      for c in binaries.read_cells(self.out)
      if 'activation_source' in c and c['init'] == 'rai'
    ]
    self.assertEqual(cell['activation_path'], 'tests.user_activations')
    binaries.assert_one_line_error(
      self,
      self.binary.run('--activations=prelu', f'--output_dir={self.out}/x'),
      '--activations',
      never=f'{self.out}/x',
    )

  def test_report_only_reads_a_read_only_directory(self):
    # A finished sweep on read-only media (issue 28 item 6): --report_only
    # reads it and writes the report to --report_dir, touching nothing in
    # it (tests/read_only_run.py fails every write there with EROFS).
    small = ('--depths=2,10', '--widths=3', '--trials=40', '--grid_points=5')
    stored = f'{self.out}/stored'
    first = self.binary.run(*small, f'--output_dir={stored}')
    self.assertIn(first.returncode, (0, 1), first.stderr[-3000:])
    before = binaries.snapshot(stored)
    run = lambda *flags: binaries.run(
      'experiments.born_dead',
      *small,
      '--report_only',
      f'--output_dir={stored}',
      *flags,
      read_only=stored,
    )
    refused = run()
    binaries.assert_one_line_error(
      self, refused, '--output_dir=', never=f'{self.out}/report'
    )
    self.assertIn('is read-only: pass --report_dir', refused.stderr)
    reported = run(f'--report_dir={self.out}/report')
    self.assertEqual(
      reported.returncode, first.returncode, reported.stderr[-3000:]
    )
    with open(f'{stored}/results.json') as f:
      computed = json.load(f)
    with open(f'{self.out}/report/results.json') as f:
      read = json.load(f)
    self.assertEqual(read['claims'], computed['claims'])
    self.assertEqual(read['results'], computed['results'])
    self.assertEqual(binaries.snapshot(stored), before)
    # The guard is real: a computing run there fails to write.
    computing = binaries.run(
      'experiments.born_dead',
      *small,
      f'--output_dir={stored}',
      read_only=stored,
    )
    self.assertEqual(computing.returncode, 2, computing.stderr[-3000:])
    self.assertIn('not writable', computing.stderr)
    # Without --report_only, --report_dir is a usage error.
    binaries.assert_one_line_error(
      self,
      self.binary.run(*small, f'--output_dir={self.out}/x', '--report_dir=y'),
      '--report_dir=y needs --report_only',
      never=f'{self.out}/x',
    )

  def test_stdout_and_report_say_why(self):
    # Issue 28 item 7: a summary of at most 100 columns on stdout, each
    # claim with its reason; the table and the provenance in results.md.
    result = self.binary.run(
      '--depths=2,10',
      '--widths=3,10',
      '--trials=40',
      '--grid_points=5',
      f'--output_dir={self.out}',
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
    with open(os.path.join(self.out, 'results.md')) as f:
      text = f.read()
    flags = ('depths', 'widths', 'inits', 'trials', 'grid_points', 'seed')
    report_check.assert_report(self, result.stdout, text, flags)
    self.assertNotIn('| he_zero_bias |', result.stdout)  # the table
    self.assertIn('| he_zero_bias | 3 | 10 |', text)
    self.assertIn(f'full table: {self.out}/results.md', result.stdout)
    # Width 10 at depth 10 against Lu et al.'s 0-1%, with the numbers, in
    # the report (deciding nothing); stdout has each family's verdicts.
    self.assertRegex(
      text,
      r'- lu_et_al_width_10: (does not )?match(es)?: width 10, depth 10: '
      r'measured 0\.\d{3} \(95% CI',
    )
    self.assertRegex(result.stdout, r'- D11\.shape, 4 claims: .*SUPPORTED')
    # Before compute: what each family can reach with 40 trials.
    self.assertIn(
      '- power, D11.rai (4 claims): 40 trials reach Holm p', result.stdout
    )
    self.assertIn('## Claims (declared before compute)', text)

  def test_wilson_interval(self):
    # Known values: 0 of 100 -> [0, 0.037]; 50 of 100 -> [0.404, 0.596].
    low, high = born_dead_network.wilson(0, 100)
    self.assertEqual(low, 0.0)
    self.assertAlmostEqual(high, 0.0370, places=4)
    low, high = born_dead_network.wilson(50, 100)
    self.assertAlmostEqual(low, 0.4038, places=4)
    self.assertAlmostEqual(high, 0.5962, places=4)

  def test_flag_fuzz(self):
    self.assertGreater(binaries.fuzz_flags(self, self.binary), 100)

  @parameterized.parameters(
    ('--depths=0', '--depths: 0 is not an integer >= 1'),
    ('--widths=a,b', "--widths: 'a' is not an integer"),
    ('--inits=xavier', 'unknown xavier'),
    ('--inits=', '--inits must not be empty'),
    ('--depths=5,5', '--depths repeats 5'),
    ('--trials=5', '--trials: 5 is not >= 10'),
    ('--input_range=inf', '--input_range: inf is not in (0, 1000]'),
    ('--input_range=2000', '--input_range: 2000 is not in (0, 1000]'),
    # Were an OverflowError / a TypeError inside jax, exit 1.
    ('--seed=99999999999999999999', '--seed: 99999999999999999999 is not'),
    ('--trials=99999999999999999999', '--trials: 99999999999999999999 is'),
    ('--widths=99999999999999999999', '--widths: 99999999999999999999 is'),
    ('--depths=3,2147483648', '--depths: 2147483648 is not an integer <='),
    # Was accepted, overflowed float32 and reported 0 born dead.
    ('--input_range=1e300', '--input_range: 1e+300 is not in (0, 1000]'),
    ('--task_index=3', '--task_index: 3 is not in [0, 1)'),
  )
  def test_bad_flags(self, flag, message):
    result = self.binary.run(flag, f'--output_dir={self.out}/never')
    binaries.assert_one_line_error(self, result, message, f'{self.out}/never')


if __name__ == '__main__':
  absltest.main()
