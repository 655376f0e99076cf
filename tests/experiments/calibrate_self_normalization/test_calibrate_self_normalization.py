"""calibrate_self_normalization: a small run end to end, and its flags.

The calibration itself (hundreds of runs) is in BUILD_NOTES.md; this checks
that the binary computes, stores and judges what it says.
"""

import json
import math as stats_math
import os
import shutil
import tempfile

import binaries
import report_check
from absl.testing import absltest, parameterized

from experiments.calibrate_self_normalization import rates as calibration_rates

_SMALL = (
  '--widths=16,256',
  '--runs=3',
  '--depths=40,200',
  '--power_runs=2',
  '--power_widths=256',
  # A quarter of the default batch: a quarter of the compute, and a 2%
  # error is still found at every depth and width.
  '--batch=64',
)


class RateClaimsTest(absltest.TestCase):
  def test_verdicts_against_scipy_binomial_tests(self):

    out = calibration_rates.rate_claims(
      {
        'calibrated': ('fa', 3, 260, 0.01, 'at_most'),
        'too many': ('fa', 12, 260, 0.01, 'at_most'),
        'few runs': ('power', 9, 10, 0.8, 'at_least'),
        'enough runs': ('power', 19, 20, 0.8, 'at_least'),
      }
    )
    self.assertEqual(out['calibrated']['verdict'], 'SUPPORTED')
    # 12 of 260 at 1%: P(K >= 12) under Binomial(260, 0.01).
    p = sum(
      stats_math.comb(260, k) * 0.01**k * 0.99 ** (260 - k)
      for k in range(12, 261)
    )
    self.assertAlmostEqual(out['too many']['p'], p, places=12)
    self.assertEqual(out['too many']['p_holm'], 2 * out['too many']['p'])
    self.assertEqual(out['too many']['verdict'], 'CONTRADICTED')
    self.assertIn('NOT TESTABLE', out['few runs']['verdict'])
    self.assertEqual(out['enough runs']['verdict'], 'SUPPORTED')
    # At the detectable rate, a test at 0.05 / 2 rejects with probability 0.8:
    # the smallest rejecting count k*, then P(K >= k*) at that rate.
    rate = out['calibrated']['detectable']

    def tail(k0, r):
      return sum(
        stats_math.comb(260, k) * r**k * (1 - r) ** (260 - k)
        for k in range(k0, 261)
      )

    k_star = next(k for k in range(261) if tail(k, 0.01) <= 0.025)
    self.assertAlmostEqual(tail(k_star, rate), 0.8, places=6)

  def test_each_verdict_says_why(self):
    from experiments.calibrate_self_normalization import main

    tests = {
      'calibrated': ('fa', 3, 260, 0.01, 'at_most'),
      'too many': ('fa', 12, 260, 0.01, 'at_most'),
      'few runs': ('power', 9, 10, 0.8, 'at_least'),
      'enough runs': ('power', 19, 20, 0.8, 'at_least'),
    }
    out = calibration_rates.rate_claims(tests)
    why = {
      name: main.rate_reason(v, *tests[name][3:]) for name, v in out.items()
    }
    self.assertRegex(
      why['calibrated'],
      r'^3 of 260 runs failed, rate 0\.012 \(95% CI 0\.\d{3}-0\.\d{3}\); a '
      r'rate of 0\.\d{3} would have been caught$',
    )
    self.assertRegex(
      why['too many'], r'^12 of 260 runs failed, .*: above 0\.01, Holm p = '
    )
    self.assertIsNone(why['few runs'])  # NOT TESTABLE (its own reason)
    self.assertStartsWith(why['enough runs'], '19 of 20 runs were detected')


class CalibrateSelfNormalizationTest(parameterized.TestCase):
  def test_flag_fuzz(self):
    self.assertGreater(binaries.fuzz_flags(self, self.binary), 100)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.binary = binaries.Binary('experiments.calibrate_self_normalization')
    cls.addClassCleanup(cls.binary.close)
    cls.out = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, cls.out)
    cls.result = cls.binary.run(*_SMALL, f'--output_dir={cls.out}')
    with open(os.path.join(cls.out, 'results.json')) as f:
      cls.data = json.load(f)

  def test_small_run_judges_every_run_at_every_depth(self):
    # 3 and 2 runs are too few to test the claims: NOT TESTABLE, exit 1.
    self.assertEqual(self.result.returncode, 1, self.result.stderr[-3000:])
    runs = self.data['runs']
    # 2 widths x 3 correct runs + 4 wrong SELUs x 2 runs at width 256; each
    # judged at both depths.
    self.assertLen(runs, (2 * 3 + 4 * 2) * 2)
    self.assertLen(binaries.cell_files(self.out), 2 * 3 + 4 * 2)
    wrong = [r for r in runs if not r['setup'].startswith('correct')]
    self.assertTrue(all(r['verdict'] == 'FAIL' for r in wrong))  # both depths
    claims = self.data['claims']
    false_alarms = claims['false alarms <= 0.01: correct, depth 200']
    self.assertEqual(false_alarms['k'], 0)
    self.assertIn('NOT TESTABLE (too few runs, 3', false_alarms['verdict'])
    detected = claims['detected >= 0.8: lambda +2%, width 256, depth 200']
    self.assertEqual(detected['k'], 2)
    self.assertIn('NOT TESTABLE', detected['verdict'])
    self.assertEqual(
      claims['never PASS: correct, width 16, depth 40']['verdict'],
      'SUPPORTED',
    )
    with open(os.path.join(self.out, 'results.md')) as f:
      text = f.read()
    self.assertIn('| correct | 16 | 40 | 3 | 0 | 3 | 0 |', text)
    # The finite-width bias of the correct stacks, measured against the
    # model: 12 stacks per width; at width 16 the std's bias is about -0.1,
    # clearly negative, and the simulation agrees with the model within
    # 3 standard errors.
    bias = {(b['width'], b['statistic']): b for b in self.data['bias']}
    self.assertEqual(
      set(bias), {(w, s) for w in (16, 256) for s in ('mean', 'std')}
    )
    std16 = bias[16, 'std']
    self.assertEqual(std16['stacks'], 12)
    self.assertAlmostEqual(std16['model'], -0.1, delta=0.01)
    # The measurement is precise enough for the comparison to bite: at
    # batch 64 its SE is 0.013, so 3 SE is a third of the bias.
    self.assertLess(std16['se'], 0.02)
    self.assertLess(std16['measured'], -3 * std16['se'])
    self.assertLess(abs(std16['measured'] - std16['model']), 3 * std16['se'])
    self.assertIn('## Finite-width bias of the correct stacks', text)

  def test_stdout_and_report_say_why(self):
    # Issue 28 item 7: each claim's verdict with its reason on stdout (at
    # most 100 columns); the tables, then the provenance, in results.md.
    with open(os.path.join(self.out, 'results.md')) as f:
      text = f.read()
    flags = ('widths', 'runs', 'depths', 'power_runs', 'batch', 'level')
    report_check.assert_report(self, self.result.stdout, text, flags)
    self.assertNotIn('| correct |', self.result.stdout)
    self.assertIn(f'full table: {self.out}/results.md', self.result.stdout)
    self.assertIn(
      '- never PASS: correct, width 16, depth 40: SUPPORTED: 0 of 3 runs '
      'passed',
      self.result.stdout,
    )
    self.assertIn(
      '| 0 / 3 | 0.000 (0.000, 0.708) | -, - | - | SUPPORTED: 0 of 3 runs '
      'passed |',
      text,
    )

  def test_report_only_rederives_the_same_verdicts_from_the_store(self):
    again = self.binary.run(
      *_SMALL, '--report_only', f'--output_dir={self.out}'
    )
    self.assertEqual(again.returncode, 1, again.stderr[-2000:])
    with open(os.path.join(self.out, 'results.json')) as f:
      self.assertEqual(json.load(f)['runs'], self.data['runs'])

  @parameterized.named_parameters(
    ('runs', '--runs=1,2,3', '--runs: give one count or one per width (2)'),
    ('depth', '--depths=4', '--depths: 4 is not an integer >= 8'),
    ('level', '--level=0', '--level: 0 is not in (0, 0.5]'),
    ('rate', '--dropout_rates=1', '--dropout_rates: 1 is not in [0, 0.99]'),
    ('error', '--error=0.6', '--error: 0.6 is not in (0, 0.5]'),
    # Was accepted although the help says (0, 1).
    ('detectable', '--detectable=1', '--detectable: 1 is not in (0, 1)'),
  )
  def test_bad_flag_is_a_usage_error(self, flag, message):
    never = os.path.join(tempfile.mkdtemp(), 'never')
    result = self.binary.run('--widths=16,64', flag, f'--output_dir={never}')
    binaries.assert_one_line_error(self, result, message, never=never)


if __name__ == '__main__':
  absltest.main()
