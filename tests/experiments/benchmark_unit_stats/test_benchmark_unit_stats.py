"""A tiny run of experiments.benchmark_unit_stats, end to end.

It checks that the binary runs and writes its results, not the timing
claim: --target is set out of reach of any timing, so the exit status is
the 'held' path's 0.
"""

import functools
import json
import os
import shutil
import tempfile

import binaries
import report_check
from absl.testing import absltest

_run = functools.partial(binaries.run, 'experiments.benchmark_unit_stats')


class BenchmarkUnitStatsBinaryTest(absltest.TestCase):
  def test_tiny_run_writes_json_and_markdown(self):
    out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, out)
    result = _run(
      '--activations=elu',
      '--layers=2',
      '--width=8',
      '--batch=4',
      '--steps=1',
      '--repeats=3',
      '--target=1e9',
      f'--output_dir={out}',
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(out, 'results.json')) as f:
      data = json.load(f)
    self.assertEqual(data['meta']['flags']['layers'], 2)
    self.assertIn('jax', data['meta']['versions'])
    rows = data['results']
    self.assertEqual(list(rows), ['elu'])
    for row in rows.values():
      self.assertEqual(row['sites'], 2)  # one per hidden layer
      self.assertTrue(row['held'])
      self.assertGreater(row['ratio_stats_vs_plain'], 0)
      self.assertGreater(row['temp_bytes']['stats'], 0)
    with open(os.path.join(out, 'results.md')) as f:
      table = f.read()
    self.assertIn('| elu | 2 |', table)
    self.assertIn(
      "Claim (stats step <= 1e+09x plain step): SUPPORTED: every activation's",
      result.stdout,
    )
    # Issue 28 item 7: each verdict with its reason, stdout within 100
    # columns (the table in results.md only), the provenance at the end.
    report_check.assert_report(
      self,
      result.stdout,
      table,
      ('activations', 'layers', 'width', 'target'),
      ('ok', 'MISS', 'SUPPORTED', 'NOT SUPPORTED'),
    )
    self.assertNotIn('| elu |', result.stdout)
    self.assertRegex(table, r'\| ok: stats / plain \d\.\d{3} <= 1e\+09 \|')
    self.assertIn(f'full table: {out}/results.md', result.stdout)

  def test_a_users_declared_rectifier_is_traced(self):
    # Issue 30 item 2: a user's activation declared a rectifier is counted
    # by the tracer (one site per hidden layer); one not declared is a
    # usage error (the tracer would count none of its units).
    out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, out)
    result = _run(
      '--activations=tests.user_activations:capped[label=capped;rectifier=true]',
      '--layers=2',
      '--width=8',
      '--batch=4',
      '--steps=1',
      '--repeats=3',
      '--target=1e9',
      f'--output_dir={out}',
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(out, 'results.json')) as f:
      self.assertEqual(json.load(f)['results']['capped']['sites'], 2)
    binaries.assert_one_line_error(
      self,
      _run(
        '--activations=tests.user_activations:swish[label=swish]',
        f'--output_dir={out}/never',
      ),
      'swish is not declared a rectifier',
      never=f'{out}/never',
    )

  def test_flag_fuzz(self):
    binary = binaries.Binary('experiments.benchmark_unit_stats')
    self.addCleanup(binary.close)
    self.assertGreater(binaries.fuzz_flags(self, binary), 50)

  def test_bad_flag_is_a_usage_error(self):
    out = os.path.join(tempfile.mkdtemp(), 'never')
    binary = binaries.Binary('experiments.benchmark_unit_stats')
    self.addCleanup(binary.close)
    for flag, message in (
      ('--activations=relu,swish', '--activations: unknown swish'),
      # Were accepted: inf made the claim hold whatever the timings.
      ('--target=inf', '--target: inf is not a finite number >= 1'),
      ('--target=nan', '--target: nan is not a finite number >= 1'),
    ):
      result = binary.run(flag, f'--output_dir={out}')
      binaries.assert_one_line_error(self, result, message, never=out)


if __name__ == '__main__':
  absltest.main()
