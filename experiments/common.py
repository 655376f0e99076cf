"""Helpers shared by the experiment binaries: atomic writes and provenance."""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import platform
import tempfile
from importlib import metadata
from typing import Any

import jax


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
