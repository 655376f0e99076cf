"""Writing results: Markdown tables, CSV, JSON; numbers formatted once."""

from __future__ import annotations

import csv
import datetime
import functools
import io
import math
import os
import platform
import socket
import subprocess
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from experiments.store import write_json_atomic, write_text_atomic


def fmt(value, spec: str = '.3f') -> str:
  """A number for a Markdown table: '-' for None, 'inf'/'nan' as such."""
  if value is None:
    return '-'
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return format(value, spec)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = [
    '| ' + ' | '.join(map(str, header)) + ' |',
    '|' + '---|' * len(header),
  ]
  lines += ['| ' + ' | '.join(map(str, r)) + ' |' for r in rows]
  return '\n'.join(lines) + '\n'


def grid(title: str, rows, columns, header, value) -> list[str]:
  """A '## title' Markdown table: one row per rows item, one column each.

  `header` names the row-label columns, each rows item is a tuple of those
  labels, and value(row, column) is the cell text ('-' when None).
  """
  lines = [
    f'## {title}\n',
    '| ' + ' | '.join([*header, *columns]) + ' |',
    '|' + '---|' * (len(header) + len(columns)),
  ]
  for row in rows:
    cells = [value(row, c) for c in columns]
    text = [*map(str, row), *('-' if v is None else v for v in cells)]
    lines.append('| ' + ' | '.join(text) + ' |')
  return [*lines, '']


def csv_text(rows: Sequence[dict], fields: Sequence[str] | None = None) -> str:
  buf = io.StringIO()
  fields = list(fields or (rows[0] if rows else []))
  writer = csv.DictWriter(buf, fieldnames=fields, extrasaction='ignore')
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


def write_csv(path: str, rows: Sequence[dict], fields=None) -> None:
  write_text_atomic(path, csv_text(rows, fields))


def write_text(path: str, text: str) -> None:
  write_text_atomic(path, text)


def write_json(path: str, data: Any) -> None:
  write_json_atomic(path, data)


@functools.cache
def versions() -> dict[str, str | None]:
  """Installed versions of the packages that compute the results."""
  out = {}
  for package in ('jax', 'jaxlib', 'jaxrelu', 'flax', 'optax', 'numpy'):
    try:
      out[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      out[package] = None
  return out


@functools.cache
def git_commit() -> str | None:
  """The commit of the checkout the experiments run from (+ '-dirty')."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    run = lambda *args: subprocess.run(
      ['git', '-C', here, *args],
      capture_output=True,
      text=True,
      timeout=10,
      check=True,
    ).stdout.strip()
    commit = run('rev-parse', 'HEAD')
    dirty = run('status', '--porcelain', '--untracked-files=no')
  except (OSError, subprocess.SubprocessError):
    return None
  return commit + ('-dirty' if dirty else '')


def provenance(flag_values: dict[str, Any] | None = None) -> dict[str, Any]:
  """Flags, versions, machine, commit and date, stored beside results."""
  import jax

  out = {
    'versions': versions(),
    'git_commit': git_commit(),
    'python': platform.python_version(),
    'host': socket.gethostname(),
    'machine': platform.machine(),
    'cpu_count': os.cpu_count(),
    'backend': jax.default_backend(),
    'devices': [str(d) for d in jax.devices()],
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
  }
  if flag_values is not None:
    out = {'flags': flag_values, **out}
  return out
