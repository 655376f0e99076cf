"""The experiment engine: store, keys, sweeps split over tasks, flags, plots.

End-to-end failures run born_dead with tiny cells (a cell is one (init,
width) pair, about a second each), so the whole file stays fast: one
process runs it again and again (`binaries.Binary`), and runs of their
own start where a test needs a process of its own (killed, or several at
once).
"""

import json
import multiprocessing
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from unittest import mock

import binaries
import numpy as np
from absl.testing import absltest, parameterized

from experiments import cli, plots, stats, store, sweep

_BORN_DEAD = (
  '--inits=he_zero_bias',
  '--widths=2,3',
  '--depths=2,5',
  '--trials=40',
  '--grid_points=5',
)


def _cell(key: str, **result) -> dict:
  """A cell record of the 'test' binary (the fields `Store.get` checks)."""
  return {'key': key, 'binary': 'test', 'settings': {}, 'result': result}


def _put_many(directory: str, keys: list[str], tag: str) -> None:
  s = store.Store(directory, 'test')
  for key in keys:
    s.put(_cell(key, writer=tag, payload=list(range(50))))


class StoreTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir)

  def test_put_get_once_and_never_twice(self):
    s = store.Store(self.dir, 'test')
    self.assertIsNone(s.get('a'))
    self.assertTrue(s.put(_cell('a', value=1)))
    self.assertFalse(s.put(_cell('a', value=2)))  # first one stays
    self.assertEqual(s.get('a')['result'], {'value': 1})
    self.assertEqual(s.keys(), ['a'])

  def test_torn_file_and_missing_newline_are_moved_aside(self):
    s = store.Store(self.dir, 'test')
    for key in ('torn', 'no_newline'):
      s.put(_cell(key, value=[1.5, 2.5]))
    with open(s.path('torn'), 'r+b') as f:
      f.truncate(10)
    with open(s.path('no_newline'), 'r+b') as f:
      f.truncate(os.path.getsize(s.path('no_newline')) - 1)
    for key in ('torn', 'no_newline'):
      self.assertIsNone(s.get(key))
      self.assertTrue(os.path.exists(s.path(key) + '.corrupt'))
      # Stored again from scratch, not glued onto the torn bytes.
      self.assertTrue(s.put(_cell(key, value=3)))
      self.assertEqual(s.get(key)['result'], {'value': 3})

  def test_temporaries_are_not_cells(self):
    s = store.Store(self.dir, 'test')
    with open(os.path.join(s.cells_dir, '.tmp-abc'), 'w') as f:
      f.write('{"key": "half')
    self.assertEqual(s.keys(), [])

  def test_files_are_readable_by_others_under_the_umask(self):
    old = os.umask(0o022)
    try:
      s = store.Store(self.dir, 'test')
      s.put(_cell('a'))
      store.write_text_atomic(os.path.join(self.dir, 'report.md'), 'x')
    finally:
      os.umask(old)
    for path in (s.path('a'), os.path.join(self.dir, 'report.md')):
      self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644, path)

  def test_another_binary_or_the_old_format_is_refused(self):
    store.Store(self.dir, 'born_dead')
    with self.assertRaisesRegex(store.StoreError, "results of 'born_dead'"):
      store.Store(self.dir, 'dying_relu')
    old = os.path.join(self.dir, 'old')
    os.makedirs(old)
    with open(os.path.join(old, 'cells.jsonl'), 'w') as f:
      f.write('{}\n')
    with self.assertRaisesRegex(store.StoreError, 'old cells.jsonl format'):
      store.Store(old, 'dying_relu')

  def test_concurrent_writers_lose_and_duplicate_nothing(self):
    keys = [f'k{i:03d}' for i in range(150)]
    ctx = multiprocessing.get_context('spawn')
    procs = [
      ctx.Process(target=_put_many, args=(self.dir, keys, f'w{i}'))
      for i in range(3)
    ]
    for p in procs:
      p.start()
    for p in procs:
      p.join(120)
      self.assertEqual(p.exitcode, 0)
    s = store.Store(self.dir, 'test')
    self.assertEqual(s.keys(), keys)
    for key in keys:
      record = s.get(key)  # whole, and written by exactly one writer
      self.assertEqual(record['result']['payload'], list(range(50)))
    leftovers = [n for n in os.listdir(s.cells_dir) if n.startswith('.tmp')]
    self.assertEqual(leftovers, [])


class KeyAndTaskTest(absltest.TestCase):
  def test_key_covers_every_setting_and_ignores_order(self):
    base = {'steps': 300, 'seeds': 5, 'lr': 0.1, 'nested': {'a': 1, 'b': 2}}
    key = sweep.cell_key('bin', base)
    self.assertEqual(
      key,
      sweep.cell_key(
        'bin', {'nested': {'b': 2, 'a': 1}, 'lr': 0.1, 'seeds': 5, 'steps': 300}
      ),
    )
    changed = [
      sweep.cell_key('bin', {**base, name: value})
      for name, value in (('steps', 301), ('seeds', 4), ('lr', 0.1000001))
    ]
    changed.append(sweep.cell_key('other', base))
    self.assertLen(set([key, *changed]), 5)

  def test_tasks_partition_the_groups(self):
    owners = [
      [i for i in range(10) if sweep.Task(t, 3).owns(i)] for t in range(3)
    ]
    self.assertEqual(sorted(i for o in owners for i in o), list(range(10)))
    self.assertEqual(owners[1], [1, 4, 7])


class CliTest(parameterized.TestCase):
  @parameterized.parameters(
    (['nan'], 'nan is not a finite number'),
    (['1', 'inf'], 'inf is not a finite number'),
    (['0.5', '0.5'], 'repeats 0.5'),
    ([], 'must not be empty'),
    (['x'], "'x' is not a number"),
    (['-1'], '-1 is not a finite number > 0'),
  )
  def test_bad_number_lists(self, values, message):
    with self.assertRaisesRegex(cli.UsageError, message) as e:
      cli.floats('lr', values, low=0, low_open=True)
    self.assertEqual(e.exception.exitcode, 2)
    self.assertIn('--lr', str(e.exception))

  def test_output_dir_checks(self):
    d = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, d)
    with self.assertRaisesRegex(cli.UsageError, 'must not be empty'):
      cli.output_dir('')
    path = os.path.join(d, 'file')
    with open(path, 'w') as f:
      f.write('x')
    with self.assertRaisesRegex(cli.UsageError, 'is an existing file'):
      cli.output_dir(path)
    with self.assertRaisesRegex(cli.UsageError, 'is not writable'):
      cli.output_dir(os.path.join(path, 'below'))
    self.assertEqual(cli.output_dir(f'{d}/new/dir'), f'{d}/new/dir')
    self.assertTrue(os.path.isdir(f'{d}/new/dir'))

  def test_cores_as_devices_sets_the_count_only_when_unset(self):
    cores = len(os.sched_getaffinity(0))
    flag = '--xla_force_host_platform_device_count'
    with mock.patch.dict(os.environ, {'XLA_FLAGS': '--xla_dump_to=/x'}):
      cli.cores_as_devices()
      self.assertEqual(
        os.environ['XLA_FLAGS'], f'--xla_dump_to=/x {flag}={cores}'
      )
    with mock.patch.dict(os.environ, {'XLA_FLAGS': f'{flag}=3'}):
      cli.cores_as_devices()
      self.assertEqual(os.environ['XLA_FLAGS'], f'{flag}=3')
    # And jax, imported before it as in the binaries but started after,
    # has one CPU device per core (three cores, whatever this machine has).
    env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
    code = (
      'import os; os.sched_getaffinity = lambda pid: {0, 1, 2}; '
      'import jax; from experiments import cli, model; '
      'cli.cores_as_devices(); print(jax.device_count())'
    )
    result = subprocess.run(
      [sys.executable, '-c', code],
      cwd=binaries.REPO,
      env={**env, 'JAX_PLATFORMS': 'cpu'},
      capture_output=True,
      text=True,
      check=True,
    )
    self.assertEqual(int(result.stdout.split()[-1]), 3)


class StatsAndPlotsTest(absltest.TestCase):
  def test_holm_matches_hand_computation(self):
    # m = 4: sorted p 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06, 0.5.
    adjusted = stats.holm({'a': 0.03, 'b': 0.01, 'c': 0.5, 'd': 0.02})
    np.testing.assert_allclose(
      [adjusted[k] for k in 'bdac'], [0.04, 0.06, 0.06, 0.5]
    )
    self.assertEqual(stats.holm({'x': 0.7, 'y': 0.6}), {'x': 1.0, 'y': 1.0})

  def test_diverged_seeds_are_cut_not_drawn_dead(self):
    # Seed 1 diverges in its second chunk; its later "all dead" values
    # (NaN parameters) must not enter the mean.
    dead = np.array([[0.0, 0.1, 0.2], [0.0, 0.3, 1.0]])
    loss = np.array([[1.0, 0.5], [1.0, np.nan]])
    mean, last = plots.while_finite(dead, loss)
    np.testing.assert_allclose(mean, [0.0, 0.2, 0.2])
    np.testing.assert_array_equal(last, [2, 1])

  def test_styles_are_fixed_and_distinct(self):
    names = [
      'relu',
      'leaky_relu',
      'prelu',
      'rrelu',
      'elu',
      'relu6',
      'selu',
      'tanh',
    ]
    colors = [plots.style(n)['color'] for n in names]
    self.assertLen(set(colors), len(names))
    dropout = plots.style('selu, alpha dropout')
    self.assertNotEqual(dropout, plots.style('leaky_relu'))
    self.assertNotEqual(dropout, plots.style('selu'))
    self.assertEqual(plots.style('selu (lecun_normal)'), plots.style('selu'))

  def test_log_axis_labels_exactly_the_ticks(self):
    plt = plots.pyplot()
    fig, ax = plt.subplots()
    ax.plot([2, 5, 10, 50], [0.1, 0.2, 0.3, 0.4])
    plots.log_axis(ax, 'x', [2, 5, 10, 50])
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    self.assertEqual(labels, ['2', '5', '10', '50'])
    minor = [t.get_text() for t in ax.get_xticklabels(minor=True)]
    self.assertEqual(set(minor) - {''}, set())
    plt.close(fig)


class SweepEndToEndTest(absltest.TestCase):
  """The failures of the old per-binary stores, each as a run."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.binary = binaries.Binary('experiments.born_dead')
    cls.addClassCleanup(cls.binary.close)
    # The uninterrupted run the interrupted and concurrent ones must equal.
    cls.whole = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, cls.whole)
    cls.whole_result = cls._born_dead(f'--output_dir={cls.whole}')

  @classmethod
  def _born_dead(cls, *flags, **kwargs):
    return cls.binary.run(*_BORN_DEAD, *flags, **kwargs)

  def setUp(self):
    super().setUp()
    self.out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.out)

  def _rows(self, directory):
    """The report's rows, less the timings."""
    with open(f'{directory}/results.json') as f:
      rows = json.load(f)['results']
    for row in rows:
      del row['seconds_for_all_depths']
    return rows

  def _whole(self):
    result = self.whole_result
    self.assertIn(result.returncode, (0, 1), result.stderr[-2000:])
    return self.whole, result.returncode

  def test_sigkill_torn_cell_and_missing_newline_recover(self):
    whole, code = self._whole()
    parts = f'{self.out}/parts'
    # A writer killed mid-run: the first cells stay, nothing is half-made.
    proc = binaries.start(
      'experiments.born_dead', *_BORN_DEAD, f'--output_dir={parts}'
    )
    deadline = time.time() + 120
    while not binaries.cell_files(parts) and time.time() < deadline:
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    self.assertLen(binaries.cell_files(parts), 1)
    resumed = self._born_dead(f'--output_dir={parts}')
    self.assertEqual(resumed.returncode, code, resumed.stderr[-2000:])
    self.assertEqual(self._rows(parts), self._rows(whole))
    # Tear one cell and cut another's final newline: both are recomputed.
    torn, cut = binaries.cell_files(parts)[:2]
    with open(torn, 'r+b') as f:
      f.truncate(20)
    with open(cut, 'r+b') as f:
      f.truncate(os.path.getsize(cut) - 1)
    again = self._born_dead(f'--output_dir={parts}')
    self.assertEqual(again.returncode, code, again.stderr[-2000:])
    self.assertIn('0 cells stored before, 2 to run', again.stderr)
    self.assertEqual(self._rows(parts), self._rows(whole))
    self.assertLen(binaries.cell_files(parts), 2)

  def test_two_writers_at_once_store_each_cell_once(self):
    whole, code = self._whole()
    both = f'{self.out}/both'
    procs = [
      binaries.start(
        'experiments.born_dead', *_BORN_DEAD, f'--output_dir={both}'
      )
      for _ in range(2)
    ]
    computed = 0
    for p in procs:
      _, err = p.communicate(timeout=300)
      self.assertEqual(p.returncode, code, err[-2000:])
      computed += err.count(' done; ')
    self.assertLen(binaries.cell_files(both), 2)
    self.assertEqual(self._rows(both), self._rows(whole))
    # The work was shared: each of the 2 groups computed once (each
    # writer computed the whole sweep before claims).
    self.assertEqual(computed, 2)

  def test_rerun_with_other_settings_never_reuses_cells(self):
    first = self._born_dead(f'--output_dir={self.out}')
    self.assertIn(first.returncode, (0, 1), first.stderr[-2000:])
    again = self._born_dead('--trials=60', f'--output_dir={self.out}')
    self.assertIn(again.returncode, (0, 1), again.stderr[-2000:])
    self.assertIn('0 cells stored before, 2 to run', again.stderr)
    self.assertLen(binaries.cell_files(self.out), 4)  # old cells kept
    rows = self._rows(self.out)
    self.assertLen(rows, 2 * 2)
    self.assertEqual({r['trials'] for r in rows}, {60})
    with open(f'{self.out}/results.json') as f:
      self.assertEqual(json.load(f)['meta']['flags']['trials'], 60)

  def test_two_tasks_then_report_equal_one_process(self):
    whole, code = self._whole()
    split = f'{self.out}/split'
    procs = [
      binaries.start(
        'experiments.born_dead',
        *_BORN_DEAD,
        '--num_tasks=2',
        f'--task_index={i}',
        f'--output_dir={split}',
      )
      for i in range(2)
    ]
    for p in procs:
      out, err = p.communicate(timeout=300)
      self.assertEqual(p.returncode, 0, err[-2000:])
      self.assertIn('--report_only', out)
    self.assertFalse(os.path.exists(f'{split}/results.md'))
    report = self._born_dead('--report_only', f'--output_dir={split}')
    self.assertEqual(report.returncode, code, report.stderr[-2000:])
    with open(f'{split}/results.md') as a, open(f'{whole}/results.md') as b:
      # The same report up to its provenance (flags, date: this run's own).
      a, b = (f.read().split('## Provenance')[0] for f in (a, b))
      self.assertEqual(a, b)

  def test_slurm_array_task_and_report_of_missing_cells(self):
    env = {
      'SLURM_ARRAY_TASK_ID': '3',
      'SLURM_ARRAY_TASK_MIN': '2',
      'SLURM_ARRAY_TASK_COUNT': '2',
    }
    task = self._born_dead(f'--output_dir={self.out}', env=env)
    self.assertEqual(task.returncode, 0, task.stderr[-2000:])
    self.assertIn('task 1/2: 1 groups', task.stderr)
    # Group 1 of he_zero_bias x widths (2, 3): width 3.
    stored = binaries.read_cells(self.out)
    self.assertEqual(
      [(c['init'], c['width']) for c in stored], [('he_zero_bias', 3)]
    )
    report = self._born_dead('--report_only', f'--output_dir={self.out}')
    # A cell is missing: the report is written, the run decides nothing.
    self.assertEqual(report.returncode, 3, report.stderr[-2000:])
    self.assertIn('1 of 2 cells are not in', report.stderr.splitlines()[-1])
    with open(f'{self.out}/results.md') as f:
      text = f.read()
    self.assertIn('Incomplete: 1 of 2 cells are not in the store', text)
    self.assertIn('he_zero_bias width 2', text)

  def test_bad_slurm_task_id_is_a_usage_error(self):
    # Was a ValueError traceback and exit 1, read as a refuted claim.
    never = f'{self.out}/never'
    result = self._born_dead(
      f'--output_dir={never}', env={'SLURM_ARRAY_TASK_ID': 'abc'}
    )
    binaries.assert_one_line_error(
      self, result, "SLURM_ARRAY_TASK_ID='abc' is not an integer", never
    )

  def test_no_backend_probe_lines(self):
    # Every binary printed "Unable to initialize backend 'tpu'" (an INFO
    # record of jax's, shown by absl) on a machine without a TPU.
    self.assertIn('he_zero_bias width', self.whole_result.stderr)  # INFO
    self.assertNotIn('Unable to initialize backend', self.whole_result.stderr)

  def test_report_only_on_an_empty_store_is_not_exit_0(self):
    # Was exit 0: all() of no verdicts.
    empty = f'{self.out}/empty'
    report = self._born_dead('--report_only', f'--output_dir={empty}')
    self.assertEqual(report.returncode, 3, report.stderr[-2000:])
    last = report.stderr.strip().splitlines()[-1]
    self.assertIn('born_dead: error: 2 of 2 cells are not in', last)

  def test_usage_errors_exit_2_before_any_compute(self):
    path = f'{self.out}/a_file'
    with open(path, 'w') as f:
      f.write('x')
    for flag, message in (
      ('--output_dir=', '--output_dir must not be empty'),
      (f'--output_dir={path}', 'is an existing file'),
      ('extra_argument', 'unexpected arguments: extra_argument'),
    ):
      result = self._born_dead(flag)
      self.assertEqual(result.returncode, 2, result.stderr)
      lines = result.stderr.strip().splitlines()
      self.assertLen(lines, 1, result.stderr)
      self.assertIn(message, lines[0])
    with open(path) as f:
      self.assertEqual(f.read(), 'x')

  def test_result_files_are_0644_and_name_the_commit(self):
    result = self._born_dead(f'--output_dir={self.out}', umask=0o022)
    self.assertIn(result.returncode, (0, 1), result.stderr[-2000:])
    for name in ('results.json', 'results.md', 'results.csv', 'born_dead.png'):
      mode = stat.S_IMODE(os.stat(f'{self.out}/{name}').st_mode)
      self.assertEqual(mode, 0o644, name)
    with open(f'{self.out}/results.json') as f:
      meta = json.load(f)['meta']
    head = subprocess.run(
      ['git', '-C', binaries.REPO, 'rev-parse', 'HEAD'],
      capture_output=True,
      text=True,
      check=False,
    ).stdout.strip()
    if head:  # run from a checkout
      self.assertTrue(meta['git_commit'].startswith(head), meta['git_commit'])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _reap(process: subprocess.Popen) -> None:
  """Kills process if it still runs, and closes its pipes."""
  if process.poll() is None:
    process.kill()
  process.communicate()


class DistributedTest(absltest.TestCase):
  def test_two_process_selu_stack_equals_one_process(self):
    out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, out)
    flags = (
      '--depth=20',
      '--width=32',
      '--batch=32',
      '--seeds=2',
      '--activations=selu',
      '--noscenarios',
    )
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    one = binaries.run(
      'experiments.selu_deep_stack', *flags, f'--output_dir={out}/one', env=env
    )
    # 20 layers are too few to test: NOT TESTABLE, exit 1 (what is compared
    # here is the numbers).
    self.assertEqual(one.returncode, 1, one.stderr[-2000:])
    port = _free_port()
    procs = [
      binaries.start(
        'experiments.selu_deep_stack',
        *flags,
        '--distributed',
        f'--coordinator_address=127.0.0.1:{port}',
        '--num_processes=2',
        f'--process_id={i}',
        f'--output_dir={out}/two',
        env=env,
      )
      for i in range(2)
    ]
    for p in procs:  # a failure leaves no process behind
      self.addCleanup(_reap, p)
    for i, p in enumerate(procs):
      _, err = p.communicate(timeout=300)
      # Process 0 writes and gives the verdict's status; the others exit 0.
      self.assertEqual(p.returncode, 1 if i == 0 else 0, err[-2000:])
    runs = {}
    for name in ('one', 'two'):
      with open(f'{out}/{name}/results.json') as f:
        runs[name] = json.load(f)
    self.assertEqual(runs['two']['meta']['processes'], 2)
    self.assertEqual(runs['two']['meta']['devices_used'], 2)
    a = runs['one']['results'][0]['per_layer']
    b = runs['two']['results'][0]['per_layer']
    for key in ('mean', 'std', 'unit_mean_spread', 'grad_sq_norm'):
      np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)


class WheelTest(absltest.TestCase):
  def test_wheel_ships_console_scripts_that_run_outside_the_repo(self):
    tmp = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, tmp)
    subprocess.run(
      [
        sys.executable,
        '-m',
        'pip',
        'wheel',
        '--no-deps',
        '-q',
        '-w',
        f'{tmp}/dist',
        binaries.REPO,
      ],
      check=True,
      capture_output=True,
    )
    (wheel,) = os.listdir(f'{tmp}/dist')
    with zipfile.ZipFile(f'{tmp}/dist/{wheel}') as z:
      names = z.namelist()
      entry_points = next(n for n in names if n.endswith('entry_points.txt'))
      scripts = z.read(entry_points).decode()
    for module in ('store', 'sweep', 'cli', 'born_dead/main'):
      self.assertIn(f'experiments/{module}.py', names)
    self.assertIn('jaxrelu/py.typed', names)
    self.assertTrue(any(n.endswith('LICENSE') for n in names), names)
    subprocess.run(
      [
        sys.executable,
        '-m',
        'pip',
        'install',
        '--no-deps',
        '-q',
        '--target',
        f'{tmp}/site',
        f'{tmp}/dist/{wheel}',
      ],
      check=True,
      capture_output=True,
    )
    commands = sorted(
      line.split('=')[0].strip()
      for line in scripts.splitlines()
      if line.startswith('jaxrelu-')
    )
    self.assertEqual(
      commands,
      [
        'jaxrelu-benchmark-activations',
        'jaxrelu-benchmark-unit-stats',
        'jaxrelu-born-dead',
        'jaxrelu-calibrate-self-normalization',
        'jaxrelu-compare-variants',
        'jaxrelu-dying-relu',
        'jaxrelu-selu-deep-stack',
      ],
    )
    empty = f'{tmp}/empty'
    os.makedirs(empty)
    env = dict(os.environ, PYTHONPATH=f'{tmp}/site')
    # Every command's --help at once (each its own process).
    helps = [
      subprocess.Popen(
        [f'{tmp}/site/bin/{command}', '--help'],
        cwd=empty,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
      for command in commands
    ]
    for command, process in zip(commands, helps, strict=True):
      out, err = process.communicate(timeout=300)
      self.assertEqual(process.returncode, 0, f'{command}: {err[-2000:]}')
      self.assertIn('--output_dir', out, command)
      # README's exit table (test_cli checks README against the same text).
      self.assertTrue(
        out.rstrip().endswith(cli.EXIT_STATUS_HELP.rstrip()), command
      )
    result = subprocess.run(
      [f'{tmp}/site/bin/jaxrelu-born-dead', *_BORN_DEAD, '--output_dir=out'],
      cwd=empty,
      env=env,
      capture_output=True,
      text=True,
      check=False,
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-2000:])
    self.assertTrue(os.path.exists(f'{empty}/out/results.md'))
    # The code that ran is the wheel's, not the repo's.
    with open(f'{empty}/out/results.json') as f:
      self.assertIsNone(json.load(f)['meta']['git_commit'])


class SlurmArrayTest(absltest.TestCase):
  def test_step_arrays_map_every_task_once(self):
    # --array=0-4:2 (ids 0, 2, 4) left group 1 to nobody: task 4 was
    # index 4 of 3.
    env = {
      'SLURM_ARRAY_TASK_COUNT': '3',
      'SLURM_ARRAY_TASK_MIN': '0',
      'SLURM_ARRAY_TASK_MAX': '4',
      'SLURM_ARRAY_TASK_STEP': '2',
    }
    indices = [
      sweep._slurm_task({**env, 'SLURM_ARRAY_TASK_ID': str(i)})
      for i in (0, 2, 4)
    ]
    self.assertEqual(indices, [(3, 0), (3, 1), (3, 2)])
    # Offset ids without a step, as before.
    self.assertEqual(
      sweep._slurm_task(
        {
          'SLURM_ARRAY_TASK_COUNT': '2',
          'SLURM_ARRAY_TASK_MIN': '2',
          'SLURM_ARRAY_TASK_ID': '3',
        }
      ),
      (2, 1),
    )

  def test_irregular_arrays_are_refused_with_the_reason(self):
    env = {
      'SLURM_ARRAY_TASK_COUNT': '3',
      'SLURM_ARRAY_TASK_MIN': '1',
      'SLURM_ARRAY_TASK_MAX': '7',
      'SLURM_ARRAY_TASK_ID': '5',
    }  # --array=1,5,7
    with self.assertRaisesRegex(cli.UsageError, 'not evenly spaced'):
      sweep._slurm_task(env)
    with self.assertRaisesRegex(cli.UsageError, 'STEP=0 is not >= 1'):
      sweep._slurm_task({**env, 'SLURM_ARRAY_TASK_STEP': '0'})


class SourceInKeyTest(absltest.TestCase):
  """A change to the code that computes cells gives new keys (issue 28)."""

  def test_a_changed_constant_changes_the_digest_and_plots_do_not(self):
    copy = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, copy)
    for package in ('jaxrelu', 'experiments'):
      shutil.copytree(
        os.path.join(binaries.REPO, package),
        os.path.join(copy, package),
        ignore=shutil.ignore_patterns('__pycache__'),
      )
    digest = sweep.source_digest.__wrapped__
    before = digest(copy)
    self.assertEqual(before, sweep.source_digest())  # the same sources
    model = os.path.join(copy, 'experiments', 'model.py')
    with open(model) as f:
      text = f.read()
    # A fixed leaky slope of the experiments' models, a shaping constant
    # (changing the leaky slope changed cells by up to 8.4% while every old
    # cell was reused).
    self.assertIn("('0.25', 0.25),", text)
    with open(model, 'w') as f:
      f.write(text.replace("('0.25', 0.25),", "('0.25', 0.3),"))
    self.assertNotEqual(digest(copy), before)
    with open(model, 'w') as f:
      f.write(text)
    self.assertEqual(digest(copy), before)
    with open(os.path.join(copy, 'experiments', 'plots.py'), 'a') as f:
      f.write('\n# a presentation change\n')
    self.assertEqual(digest(copy), before)

  def test_cells_are_recomputed_under_new_code(self):
    directory = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, directory)
    calls = []

    def compute():
      calls.append(1)
      return [{'value': len(calls)}]

    groups = [sweep.Group('g', [{'a': 1}], compute)]

    def run():
      s = store.Store(directory, 'test')
      return sweep.run(s, groups, task=sweep.Task(), max_new_groups=-1)

    first = run()
    run()  # same code: reused
    self.assertLen(calls, 1)
    with mock.patch.object(sweep, 'source_digest', lambda: 'other code'):
      second = run()
    self.assertLen(calls, 2)
    self.assertNotEqual(list(first.cells), list(second.cells))


if __name__ == '__main__':
  absltest.main()
