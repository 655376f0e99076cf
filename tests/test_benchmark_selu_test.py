"""experiments/benchmark_selu_test.py: a small run end to end, and its flags.

The calibration itself (hundreds of runs) is in BUILD_NOTES.md; this checks
that the binary computes, stores and judges what it says.
"""

import json
import os
import shutil
import tempfile

import binaries
from absl.testing import absltest, parameterized

_SMALL = (
  '--widths=16,256',
  '--runs=3',
  '--depths=40,200',
  '--power_runs=2',
  '--power_widths=256',
)


class BenchmarkSeluTestTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.binary = binaries.Binary('experiments.benchmark_selu_test')
    cls.addClassCleanup(cls.binary.close)
    cls.out = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, cls.out)
    cls.result = cls.binary.run(*_SMALL, f'--output_dir={cls.out}')
    with open(os.path.join(cls.out, 'results.json')) as f:
      cls.data = json.load(f)

  def test_small_run_judges_every_run_at_every_depth(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
    runs = self.data['runs']
    # 2 widths x 3 correct runs + 4 wrong SELUs x 2 runs at width 256; each
    # judged at both depths.
    self.assertLen(runs, (2 * 3 + 4 * 2) * 2)
    self.assertLen(binaries.cell_files(self.out), 2 * 3 + 4 * 2)
    wrong = [r for r in runs if not r['setup'].startswith('correct')]
    self.assertTrue(
      all(r['verdict'] == 'FAIL' for r in wrong if r['depth'] == 200)
    )
    claims = self.data['claims']
    self.assertEqual(
      claims['false alarms <= 0.01: correct, depth 200']['verdict'],
      'SUPPORTED',
    )
    self.assertEqual(
      claims['detected >= 0.8: lambda +2%, width 256, depth 200']['k'], 2
    )
    self.assertEqual(
      claims['never PASS: correct, width 16, depth 40']['verdict'],
      'SUPPORTED',
    )
    with open(os.path.join(self.out, 'results.md')) as f:
      text = f.read()
    self.assertIn('| correct | 16 | 40 | 3 | 0 | 3 | 0 |', text)
    # The finite-width bias of the correct stacks, measured against the
    # model: 12 stacks per width; at width 16 the std's bias is -0.1.
    bias = {(b['width'], b['statistic']): b for b in self.data['bias']}
    self.assertEqual(
      set(bias), {(w, s) for w in (16, 256) for s in ('mean', 'std')}
    )
    self.assertEqual(bias[16, 'std']['stacks'], 12)
    self.assertAlmostEqual(bias[16, 'std']['measured'], -0.1, delta=0.03)
    self.assertIn('## Finite-width bias of the correct stacks', text)

  def test_report_only_rederives_the_same_verdicts_from_the_store(self):
    again = self.binary.run(
      *_SMALL, '--report_only', f'--output_dir={self.out}'
    )
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    with open(os.path.join(self.out, 'results.json')) as f:
      self.assertEqual(json.load(f)['runs'], self.data['runs'])

  @parameterized.named_parameters(
    ('runs', '--runs=1,2,3', '--runs: give one count or one per width (2)'),
    ('depth', '--depths=4', '--depths: 4 is not an integer >= 8'),
    ('level', '--level=0', '--level: 0 is not in (0, 0.5]'),
    ('rate', '--dropout_rates=1', '--dropout_rates: 1 is not in [0, 0.99]'),
    ('error', '--error=0.6', '--error: 0.6 is not in (0, 0.5]'),
  )
  def test_bad_flag_is_a_usage_error(self, flag, message):
    never = os.path.join(tempfile.mkdtemp(), 'never')
    result = self.binary.run('--widths=16,64', flag, f'--output_dir={never}')
    binaries.assert_one_line_error(self, result, message, never=never)


if __name__ == '__main__':
  absltest.main()
