"""Helpers for the tests that run experiment binaries end to end."""

import glob
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(module: str, *flags: str, env=None, timeout: int = 900):
  """Runs `python -m module flags...` from the repo root; never raises."""
  return subprocess.run(
    [sys.executable, '-m', module, *flags],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
    env=env,
  )


def start(module: str, *flags: str, env=None) -> subprocess.Popen:
  """Starts `python -m module flags...` in the background."""
  return subprocess.Popen(
    [sys.executable, '-m', module, *flags],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=env,
  )


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


def run_whole_and_resumed(test, module: str, flags, out: str):
  """Runs a sweep whole, and again stopped after one group then resumed.

  The resumed run is resumed twice; the second finds nothing left to do.
  Asserts that every run exits with the same status (0 or 1: the claims)
  and that the resumed cells neither duplicate nor lose any. Returns
  (whole cells by key, resumed cells by key, the number of cells written
  before the stop, the resumed directory).
  """
  whole, parts = f'{out}/whole', f'{out}/parts'
  result = run(module, *flags, f'--output_dir={whole}')
  test.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
  stopped = run(module, *flags, '--max_new_groups=1', f'--output_dir={parts}')
  test.assertEqual(stopped.returncode, 0, stopped.stderr[-3000:])
  test.assertIn('Stopped after 1 new groups', stopped.stdout)
  before_resume = len(read_cells(parts))
  for _ in range(2):
    resumed = run(module, *flags, f'--output_dir={parts}')
    test.assertEqual(
      resumed.returncode, result.returncode, resumed.stderr[-3000:]
    )
  a = {c['key']: c for c in read_cells(whole)}
  b_list = read_cells(parts)
  b = {c['key']: c for c in b_list}
  test.assertLen(b_list, len(b))  # nothing duplicated
  test.assertEqual(set(a), set(b))  # nothing lost
  return a, b, before_resume, parts
