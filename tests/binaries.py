"""Helpers for the tests that run experiment binaries end to end."""

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
