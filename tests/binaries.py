"""Helpers for the tests that run experiment binaries end to end.

`run` starts a fresh `python -m module` per call. `Binary` starts one
process that imports the binary once and runs its console entry point
for each call, one after another: every run parses its flags afresh and
goes through absl's app.run and the binary's exit path as a fresh process
would, but imports, the JAX backend and compiled programs are reused.
Runs that need their own process (a signal, several at once, other XLA
devices) use `run` or `start`.
"""

import functools
import glob
import importlib
import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The experiment binaries under test compile for speed of compilation, not
# of the program: LLVM at -O1 (XLA's default is -O3), XLA:CPU's older IR
# emitters instead of its fusion emitters, and no expensive LLVM passes.
# Their small programs are compile-bound: a dying_relu group's trainer
# compiles in 8.1 s at the defaults, 2.4 s at -O1 (2026-12-03), and the
# test sweep's three trainers in 8.1 s at -O1, 4.7 s with all three
# (BUILD_NOTES.md). The trainers compiled in the test processes use the
# same options (conftest.py). The numbers differ from the defaults' in the
# last bits, so a test compares experiment runs with each other, never bit
# for bit with other code of the test process. The benchmarks of the
# library itself keep XLA's defaults: they measure the code users get.
FAST_COMPILE = {
  'xla_backend_optimization_level': 1,
  'xla_cpu_use_fusion_emitters': False,
  'xla_llvm_disable_expensive_passes': True,
}
_DEFAULT_COMPILE = (
  'experiments.benchmark_activations',
  'experiments.benchmark_unit_stats',
)


def binary_env(module: str, env=None) -> dict:
  """`env` (None: this process's) for running `module`: XLA_FLAGS with
  FAST_COMPILE added, unless it benchmarks the library."""
  env = dict(os.environ if env is None else env)
  if module not in _DEFAULT_COMPILE:
    fast = ' '.join(f'--{k}={str(v).lower()}' for k, v in FAST_COMPILE.items())
    env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} {fast}'.strip()
  return env


def run(module: str, *flags: str, env=None, timeout: int = 900, read_only=None):
  """Runs `python -m module flags...` from the repo root; never raises.

  With read_only (a directory), as if it were on read-only media
  (tests/read_only_run.py).
  """
  command = [sys.executable, '-m', module, *flags]
  if read_only is not None:
    env = dict(os.environ if env is None else env, READ_ONLY_DIR=read_only)
    runner = os.path.join(os.path.dirname(__file__), 'read_only_run.py')
    command = [sys.executable, runner, module, *flags]
  return subprocess.run(
    command,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
    env=binary_env(module, env),
  )


def snapshot(directory: str) -> dict[str, tuple]:
  """Every entry under directory: (mode, size, mtime_ns, bytes or None)."""
  out = {}
  for root, dirs, files in os.walk(directory):
    for name in dirs + files:
      path = os.path.join(root, name)
      info = os.lstat(path)
      content = None
      if os.path.isfile(path) and not os.path.islink(path):
        with open(path, 'rb') as f:
          content = f.read()
      out[os.path.relpath(path, directory)] = (
        info.st_mode,
        info.st_size,
        info.st_mtime_ns,
        content,
      )
  return out


def start(module: str, *flags: str, env=None) -> subprocess.Popen:
  """Starts `python -m module flags...` in the background."""
  return subprocess.Popen(
    [sys.executable, '-m', module, *flags],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=binary_env(module, env),
  )


class Binary:
  """One process that runs an experiment binary again and again.

  Args:
    module: the binary, e.g. 'experiments.born_dead'.
    env: the process's environment (None: this one's).
  """

  def __init__(self, module: str, env=None):
    self.module = module
    code = (
      f'import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); '
      f'import binaries; binaries.serve({module!r})'
    )
    self.process = subprocess.Popen(
      [sys.executable, '-c', code],
      cwd=REPO,
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      env=binary_env(module, env),
    )

  def run(self, *flags: str, env=None, umask=None, timeout: int = 900):
    """Runs the binary with flags; what `run` returns, and never raises.

    Args:
      *flags: its command line.
      env: variables set for this run only.
      umask: the umask of this run (None: the process's).
      timeout: seconds before the process is killed (and this raises).
    """
    request = {'argv': list(flags), 'env': env or {}, 'umask': umask}
    self.process.stdin.write(json.dumps(request) + '\n')
    self.process.stdin.flush()
    with selectors.DefaultSelector() as selector:
      selector.register(self.process.stdout, selectors.EVENT_READ)
      if not selector.select(timeout):
        self.close()
        raise subprocess.TimeoutExpired(self.module, timeout)
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError(f'{self.module}: the process running it died')
    reply = json.loads(line)
    return subprocess.CompletedProcess(
      [self.module, *flags], reply['code'], reply['stdout'], reply['stderr']
    )

  def close(self) -> None:
    if self.process.poll() is None:
      self.process.kill()
    self.process.wait()
    self.process.stdin.close()
    self.process.stdout.close()


def _captured(fn):
  """fn(), with file descriptors 1 and 2 caught: (result, stdout, stderr)."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = os.dup(1), os.dup(2)
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
      result = fn()
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      for fd in saved:
        os.close(fd)
    text = []
    for f in (out, err):
      f.seek(0)
      text.append(f.read().decode(errors='replace'))
  return result, *text


def _exit_status(module, request: dict) -> int:
  """One run of module's console entry point: its exit status."""
  from absl import app, flags

  # A fresh process's flags and absl app state: app.run parses anew, and
  # sets logging up as on a first run.
  flags.FLAGS.unparse_flags()
  app._run_init.done = False
  app._register_and_parse_flags_with_usage.done = False
  saved_env = dict(os.environ)
  os.environ.update(request['env'])
  umask = None if request['umask'] is None else os.umask(request['umask'])
  sys.argv = [module.__file__, *request['argv']]
  try:
    module.cli_main()
    return 0
  except SystemExit as e:
    if e.code is None or isinstance(e.code, int):
      return e.code or 0
    print(e.code, file=sys.stderr)
    return 1
  except BaseException:
    traceback.print_exc()
    return 1
  finally:
    os.environ.clear()
    os.environ.update(saved_env)
    if umask is not None:
      os.umask(umask)


def serve(module_name: str) -> None:
  """The loop of a `Binary` process: a JSON request a line, a reply each.

  What importing the binary printed is part of every run's output, as it
  would be of a fresh process's.
  """
  replies = os.fdopen(os.dup(1), 'w')
  # A binary is a package run by `python -m`; its flags live in main.py.
  module, first_out, first_err = _captured(
    lambda: importlib.import_module(f'{module_name}.main')
  )
  for line in sys.stdin:
    run = functools.partial(_exit_status, module, json.loads(line))
    code, out, err = _captured(run)
    reply = {'code': code, 'stdout': first_out + out, 'stderr': first_err + err}
    replies.write(json.dumps(reply) + '\n')
    replies.flush()


def assert_one_line_error(test, result, message: str, never: str) -> None:
  """A usage error: exit 2, one stderr line naming it, nothing written."""
  test.assertEqual(result.returncode, 2, result.stderr)
  lines = result.stderr.strip().splitlines()
  test.assertLen(lines, 1, result.stderr)
  test.assertIn(message, lines[0])
  test.assertNotIn('Traceback', result.stderr)
  test.assertFalse(os.path.exists(never))


def cell_files(directory: str) -> list[str]:
  """The published cell files of a store (no temporaries)."""
  return sorted(glob.glob(os.path.join(directory, 'cells', '*.json')))


def read_cells(directory: str) -> list[dict]:
  """Each stored cell as its settings merged with its result, plus 'key'."""
  out = []
  for path in cell_files(directory):
    with open(path) as f:
      record = json.load(f)
    out.append({'key': record['key'], **record['settings'], **record['result']})
  return out


def whole_and_resumed(run, flags, out: str) -> dict:
  """A sweep run whole, and again stopped after one group then resumed.

  The resumed run is resumed twice; the second finds nothing left to do.

  Args:
    run: run(*flags) runs the binary (`Binary.run`, or `run` bound to it).
    flags: the sweep's flags, less --output_dir.
    out: a directory for the two stores, 'whole' and 'parts'.

  Returns:
    Each run's result ('whole', 'stopped', 'resumed': two), the cells
    stored before the resumption ('before_resume'), and the directories.
  """
  whole, parts = f'{out}/whole', f'{out}/parts'
  record = {'whole_dir': whole, 'parts_dir': parts}
  record['whole'] = run(*flags, f'--output_dir={whole}')
  record['stopped'] = run(*flags, '--max_new_groups=1', f'--output_dir={parts}')
  record['before_resume'] = read_cells(parts)
  record['resumed'] = [run(*flags, f'--output_dir={parts}') for _ in range(2)]
  return record


def assert_resumed_equals_whole(test, record: dict):
  """whole_and_resumed's runs exit alike and store the same cells once.

  Every run exits with the whole run's status (0 or 1: the claims), the
  stopped one with 0 and says so; the resumed cells neither duplicate nor
  lose any. Returns (whole cells by key, resumed cells by key).
  """
  whole, stopped = record['whole'], record['stopped']
  test.assertIn(whole.returncode, (0, 1), whole.stderr[-3000:])
  test.assertEqual(stopped.returncode, 0, stopped.stderr[-3000:])
  test.assertIn('Stopped after 1 new groups', stopped.stdout)
  for resumed in record['resumed']:
    test.assertEqual(
      resumed.returncode, whole.returncode, resumed.stderr[-3000:]
    )
  a = {c['key']: c for c in read_cells(record['whole_dir'])}
  b_list = read_cells(record['parts_dir'])
  b = {c['key']: c for c in b_list}
  test.assertLen(b_list, len(b))  # nothing duplicated
  test.assertEqual(set(a), set(b))  # nothing lost
  return a, b


# Values no flag of the kind documents as accepted: beyond 32 bits (for
# integers), not finite or beyond float32, not a number, an empty list
# item, a name no flag knows.
_EVERY_KIND = ('nan', 'inf', '-inf', '1e300', '-1e300', 'abc', 'x' * 300)
BAD_VALUES = {
  'an integer': (
    '99999999999999999999',
    '-99999999999999999999',
    '2147483648',
    '-2147483649',
    '1.5',
    *_EVERY_KIND,
  ),
  'a number': _EVERY_KIND,
  'a comma separated list': ('1,,2', ',', *_EVERY_KIND),
  'text': _EVERY_KIND,  # names: one of a set
  'a boolean': ('2', 'maybe'),
}
# Flags whose values are free text or paths, not fuzzed here.
_FREE_TEXT = ('output_dir', 'coordinator_address')


def flag_kinds(binary) -> dict[str, str]:
  """The flags a binary's --help lists (its own and the sweep's), with
  the kind absl states for each ('an integer', 'a number', ...)."""
  result = binary.run('--help')
  text = result.stdout[: result.stdout.rindex('Exit status (')]
  kinds = {}
  for block in re.split(r'\n(?=\s+--)', text):
    match = re.match(r'\s+--(\[no\])?([a-z_0-9]+):', block)
    if not match or match.group(2) in _FREE_TEXT:
      continue
    # absl: '(an integer)', '(a positive integer)', '(integer >= 3)',
    # '(a number)', '(number >= 1.0)', '(a comma separated list)'.
    kind = re.search(
      r'\((?:an? )?(?:positive |non-negative )?'
      r'(integer|number|comma separated list)',
      block,
    )
    names = {
      'integer': 'an integer',
      'number': 'a number',
      'comma separated list': 'a comma separated list',
    }
    kinds[match.group(2)] = (
      'a boolean'
      if match.group(1)
      else names[kind.group(1)]
      if kind
      else 'text'
    )
  return kinds


def fuzz_flags(test, binary, *, accepted=()) -> int:
  """Bad values of its kind on every flag: a one-line usage error, never
  a traceback, never compute.

  --output_dir is an existing file, which every binary refuses after all
  its other checks: a fuzzed value that passed them shows as that error.
  Only (flag, value) pairs in `accepted` may pass. Returns the number of
  values tried.
  """
  never = tempfile.mkdtemp()
  a_file = os.path.join(never, 'a_file')
  with open(a_file, 'w') as f:
    f.write('x')
  tried, passed = 0, []
  for name, kind in sorted(flag_kinds(binary).items()):
    for value in BAD_VALUES[kind]:
      result = binary.run(f'--{name}={value}', f'--output_dir={a_file}')
      tried += 1
      lines = result.stderr.strip().splitlines()
      what = f'--{name}={value[:20]}: {result.stderr[-500:]}'
      test.assertNotIn('Traceback', result.stderr, what)
      test.assertEqual(result.returncode, 2, what)
      test.assertLen(lines, 1, what)
      if 'is an existing file' in lines[0]:
        passed.append((name, value))
  test.assertEqual(sorted(set(passed) - set(accepted)), [])
  test.assertEqual(os.listdir(never), ['a_file'])  # nothing written
  return tried


def figures_written(test, figure_log: str, directory: str) -> dict[str, bool]:
  """Asserts that no figure a binary drew has a problem (its log,
  `plots.FIGURE_LOG_ENV`); returns, for the figures of `directory`,
  file name -> whether it was written."""
  from experiments import plots

  entries = plots.read_figure_log(figure_log)
  test.assertEqual([e for e in entries if e['problems']], [])
  return {
    os.path.basename(e['path']): e['written']
    for e in entries
    if os.path.dirname(e['path']) == directory
  }
