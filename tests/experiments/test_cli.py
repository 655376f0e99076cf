"""experiments.cli: every way a run ends has its own exit status and line.

A crash is never exit 1 (a claim that did not hold): it is exit 3 with one
line naming the cause; Ctrl-C is exit 130 with one line. Checked in process
on stand-in binaries; tests/experiments/test_engine.py runs born_dead's cases.
"""

import contextlib
import errno
import io
import json
import math
import os
import sys
import tempfile
import textwrap
import types

import binaries
from absl import app, flags
from absl.testing import absltest

from experiments import cli, store

_COUNT = flags.DEFINE_integer('cli_test_count', 1, 'A stand-in count.')
_RATE = flags.DEFINE_float('cli_test_rate', 0.5, 'A stand-in rate.')


def _run(main, env=None, argv=()):
  """cli.run(main) as a fresh process would: (exit status, stderr lines)."""
  flags.FLAGS.unparse_flags()
  app._run_init.done = False
  app._register_and_parse_flags_with_usage.done = False
  saved_argv, saved_env = sys.argv, dict(os.environ)
  sys.argv = ['stand_in', *argv]
  os.environ.update(env or {})
  err_path = os.path.join(tempfile.mkdtemp(), 'stderr')
  saved_fd = os.dup(2)
  try:
    with open(err_path, 'w') as err:
      os.dup2(err.fileno(), 2)
      sys.stderr = os.fdopen(os.dup(2), 'w')
      try:
        cli.run(main, 'stand_in')
        code = 0
      except SystemExit as e:
        code = e.code
      finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = sys.__stderr__
  finally:
    os.dup2(saved_fd, 2)
    os.close(saved_fd)
    sys.argv = saved_argv
    os.environ.clear()
    os.environ.update(saved_env)
  with open(err_path) as f:
    return code, f.read().strip().splitlines()


class ExitStatusTest(absltest.TestCase):
  def assert_one_line(self, lines, *parts):
    self.assertLen(lines, 1, lines)
    for part in parts:
      self.assertIn(part, lines[0])
    self.assertNotIn('Traceback', lines[0])

  def test_verdicts_pass_through(self):
    for status in (0, 1):
      self.assertEqual(_run(lambda argv, s=status: s), (status, []))

  def test_usage_error_is_2(self):
    def main(argv):
      raise cli.UsageError('--depth: -1 is not an integer >= 1')

    code, lines = _run(main)
    self.assertEqual(code, cli.EXIT_USAGE)
    self.assert_one_line(lines, 'stand_in: error: --depth')

  def test_any_crash_is_3_in_one_line_naming_it(self):
    # Each was exit 1 with a traceback: read as "a claim did not hold".
    def wrong_shape(argv):
      cell = [1, 2, 3]  # a stored cell that is JSON of the wrong shape
      return cell['result']

    def overflow(argv):
      return int(float('99999999999999999999') ** 20)

    for main, cause in (
      (wrong_shape, 'TypeError: list indices must be integers'),
      (overflow, 'OverflowError'),
      (lambda argv: int(os.environ['SLURM_ARRAY_TASK_ID']), 'KeyError'),
    ):
      code, lines = _run(main)
      self.assertEqual(code, cli.EXIT_NO_EVIDENCE, lines)
      self.assert_one_line(
        lines, 'could not produce evidence, exit 3', cause, 'test_cli.py:'
      )

  def test_every_number_flag_fits_int32_and_float32_before_compute(self):
    ran = []
    out = os.path.join(tempfile.mkdtemp(), 'out')

    def main(argv):  # a binary checks its output directory before compute
      cli.output_dir(out)
      ran.append(1)
      return 0

    for arg, message in (
      ('--cli_test_count=99999999999999999999', 'is not an integer in'),
      ('--cli_test_count=-2147483649', 'is not an integer in'),
      ('--cli_test_rate=1e300', 'within float32 range'),
      ('--cli_test_rate=nan', 'within float32 range'),
      ('--cli_test_rate=-inf', 'within float32 range'),
    ):
      code, lines = _run(main, argv=[arg])
      self.assertEqual(code, cli.EXIT_USAGE, arg)
      self.assert_one_line(lines, 'stand_in: error: --cli_test_', message)
    self.assertEqual(ran, [])
    self.assertFalse(os.path.exists(out))  # nothing written
    for arg in ('--cli_test_count=2147483647', '--cli_test_rate=3e38'):
      self.assertEqual(_run(main, argv=[arg]), (0, []))

  def test_full_disk_names_the_file(self):
    def main(argv):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/r/cells/k.json')

    code, lines = _run(main)
    self.assertEqual(code, cli.EXIT_NO_EVIDENCE)
    self.assert_one_line(lines, 'No space left on device: /r/cells/k.json')

  def test_traceback_on_request(self):
    def main(argv):
      raise RuntimeError('boom')

    code, lines = _run(main, {cli.TRACEBACK_ENV: '1'})
    self.assertEqual(code, cli.EXIT_NO_EVIDENCE)
    self.assertEqual(lines[0], 'Traceback (most recent call last):')
    self.assertIn('RuntimeError: boom', lines[-1])

  def test_ctrl_c_is_130_and_says_what_is_kept(self):
    directory = tempfile.mkdtemp()
    cells = store.Store(directory, 'stand_in', writer=True)

    def main(argv):
      cells.put({'key': 'a' * 16, 'settings': {}, 'result': {}})
      raise KeyboardInterrupt

    before = store.cells_written()
    code, lines = _run(main)
    self.assertEqual(code, cli.EXIT_INTERRUPTED)
    self.assert_one_line(
      lines,
      f'{before + 1} cells stored by this run are kept',
      'rerun the same command to resume',
    )


if __name__ == '__main__':
  absltest.main()


class ClosingLineTest(absltest.TestCase):
  def close(self, deciding):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      code = cli.close('stand_in', deciding)
    (line,) = out.getvalue().splitlines()
    self.assertLessEqual(len(line), cli.COLUMNS)
    return code, line

  def test_the_line_names_what_decided_the_exit_status(self):
    self.assertEqual(
      self.close({'A': True, 'B': None}),
      (0, 'stand_in: exit 0: all 1 deciding claims supported: A'),
    )
    self.assertEqual(
      self.close({'A': True, 'B': False, 'C': False}),
      (1, 'stand_in: exit 1: 2 of 3 deciding claims not supported: B; C'),
    )
    # Exit 0 with nothing decided was all() of no verdicts.
    self.assertEqual(
      self.close({'companion': None}),
      (1, 'stand_in: exit 1: no claim was decided by this run'),
    )
    code, line = self.close({f'claim number {i}': False for i in range(20)})
    self.assertEqual(code, 1)
    self.assertTrue(line.endswith('... (see the report)'))


class ExitTableTest(absltest.TestCase):
  def test_readme_and_every_help_show_the_same_exit_table(self):
    with open(os.path.join(binaries.REPO, 'README.md')) as f:
      readme = f.read()
    start = readme.index('```text\n', readme.index('**Exit status**'))
    block = readme[start + len('```text\n') : readme.index('```', start + 8)]
    self.assertEqual(textwrap.dedent(block), cli.EXIT_STATUS_HELP)
    # help_text ends every binary's --help with it (every installed
    # command's --help is checked in test_engine's WheelTest).
    module = types.ModuleType('stand_in', 'A stand-in binary.')
    self.assertTrue(cli.help_text(module).endswith(cli.EXIT_STATUS_HELP))
    for code in (0, 1, 2, 3, 130):
      self.assertIn(f'\n  {code} ', cli.EXIT_STATUS_HELP)
    self.assertEqual(
      (cli.EXIT_HELD, cli.EXIT_NOT_HELD, cli.EXIT_USAGE),
      (0, 1, 2),
    )
    self.assertEqual((cli.EXIT_NO_EVIDENCE, cli.EXIT_INTERRUPTED), (3, 130))


class StrictJsonTest(absltest.TestCase):
  def test_reports_write_null_never_nan(self):
    # summary.json held literal NaN, which strict JSON readers refuse.
    from experiments import report

    path = os.path.join(tempfile.mkdtemp(), 'summary.json')
    report.write_json(
      path, {'p': float('nan'), 'rows': [1.5, float('inf'), {'x': -math.inf}]}
    )

    def refuse(name):
      raise ValueError(f'not JSON: {name}')

    with open(path) as f:
      data = json.load(f, parse_constant=refuse)
    self.assertEqual(data, {'p': None, 'rows': [1.5, None, {'x': None}]})
