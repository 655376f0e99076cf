"""Helpers shared by the experiment binaries: atomic writes and provenance."""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import platform
import tempfile
import warnings
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import jax
import numpy as np


def write_atomic(path: str, text: str) -> None:
  """Writes text to path so that readers see the old file or the new one."""
  write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes bytes to path so that readers see the old file or the new one.

  The data goes to a temporary file in the same directory, is flushed to
  disk, then renamed over the target (rename is atomic within a filesystem).
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json_atomic(path: str, data: Any) -> None:
  write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + '\n')


def provenance(flag_values: dict[str, Any]) -> dict[str, Any]:
  """Flags, package versions, machine and date, stored beside results."""
  versions = {}
  for package in ('jaxrelu', 'jax', 'jaxlib', 'flax', 'optax', 'chex'):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = None
  return {
    'flags': flag_values,
    'versions': versions,
    'python': platform.python_version(),
    'machine': platform.machine(),
    'processor': platform.processor() or None,
    'cpu_count': os.cpu_count(),
    'devices': [str(d) for d in jax.devices()],
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
  }


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
  """95% Wilson score interval for a binomial proportion."""
  p = successes / n
  denom = 1 + z * z / n
  center = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return max(0.0, center - half), min(1.0, center + half)


def save_figure(fig, path: str, dpi: int = 110) -> str:
  """Writes a matplotlib figure to a PNG atomically, closes it, returns path."""
  import matplotlib.pyplot as plt

  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=dpi, bbox_inches='tight')
  plt.close(fig)
  write_bytes_atomic(path, buf.getvalue())
  return path


def fmt(value, spec: str = '.3f') -> str:
  """A number for a Markdown table: '-' for None, 'inf'/'nan' as such."""
  if value is None:
    return '-'
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return format(value, spec)


def first_error(checks) -> str | None:
  """The message of the first (bad, message) pair whose bad is true."""
  return next((message for bad, message in checks if bad), None)


def read_jsonl(path: str) -> list[dict]:
  """The records of a JSON-lines file; [] if it does not exist."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def append_jsonl_atomic(path: str, records: Sequence[dict]) -> None:
  """Appends JSON lines atomically: the old file plus new lines, renamed.

  An interruption leaves either the old file or the new one, never a torn
  line, so a resumed run can trust every record it reads.
  """
  old = ''
  if os.path.exists(path):
    with open(path) as f:
      old = f.read()
  write_atomic(path, old + ''.join(json.dumps(r) + '\n' for r in records))


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict:
  """Paired comparison of a against b: mean difference and Wilcoxon test.

  Returns the number of pairs, the mean difference a - b with a t-based 95%
  confidence interval, wins/losses/ties of a, the direction of the
  signed-rank statistic (+1: a tends higher) and the two-sided Wilcoxon
  signed-rank p-value (zero differences dropped; p = 1 when all tie).
  """
  from scipy import stats

  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  d = d[np.isfinite(d)]
  n = d.size
  out = {
    'n': int(n),
    'mean': float(d.mean()) if n else math.nan,
    'ci': [math.nan, math.nan],
    'wins': int((d > 0).sum()),
    'losses': int((d < 0).sum()),
    'ties': int((d == 0).sum()),
    'direction': 0,
    'p': 1.0,
  }
  if n > 1:
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    out['ci'] = [out['mean'] - half, out['mean'] + half]
  nonzero = d[d != 0]
  if nonzero.size:
    ranks = stats.rankdata(np.abs(nonzero))
    r_plus = ranks[nonzero > 0].sum()
    r_minus = ranks[nonzero < 0].sum()
    out['direction'] = int(np.sign(r_plus - r_minus))
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # scipy's notes on ties and small n
      out['p'] = float(stats.wilcoxon(nonzero).pvalue)
  return out
