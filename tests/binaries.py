"""Helpers for the tests that run experiment binaries end to end."""

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


def assert_one_line_error(test, result, message: str, never: str) -> None:
  """A bad flag: exit 1, one stderr line naming it, nothing written."""
  test.assertEqual(result.returncode, 1, result.stderr)
  lines = result.stderr.strip().splitlines()
  test.assertLen(lines, 1, result.stderr)
  test.assertIn(message, lines[0])
  test.assertNotIn('Traceback', result.stderr)
  test.assertFalse(os.path.exists(never))


def read_cells(directory: str) -> list[dict]:
  """The records of directory/cells.jsonl, in file order."""
  with open(os.path.join(directory, 'cells.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def run_whole_and_resumed(test, module: str, flags, out: str):
  """Runs a sweep whole, and again stopped after one group then resumed.

  The resumed run is resumed twice; the second finds nothing left to do.
  Asserts that every run exits 0 and that the resumed cells neither
  duplicate nor lose any. Returns (whole cells by key, resumed cells by
  key, the number of cells written before the stop, the resumed directory).
  """
  whole, parts = f'{out}/whole', f'{out}/parts'
  result = run(module, *flags, f'--output_dir={whole}')
  test.assertEqual(result.returncode, 0, result.stderr[-3000:])
  stopped = run(module, *flags, '--max_new_groups=1', f'--output_dir={parts}')
  test.assertEqual(stopped.returncode, 0, stopped.stderr[-3000:])
  test.assertIn('Stopped after 1 new groups', stopped.stdout)
  before_resume = len(read_cells(parts))
  for _ in range(2):
    resumed = run(module, *flags, f'--output_dir={parts}')
    test.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
  a = {c['key']: c for c in read_cells(whole)}
  b_list = read_cells(parts)
  b = {c['key']: c for c in b_list}
  test.assertLen(b_list, len(b))  # nothing duplicated
  test.assertEqual(set(a), set(b))  # nothing lost
  return a, b, before_resume, parts
