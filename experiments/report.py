"""Writing results: Markdown tables, CSV, JSON; numbers formatted once."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import io
import json
import math
import os
import platform
import socket
import subprocess
import textwrap
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np

from experiments.cli import COLUMNS
from experiments.store import write_json_atomic, write_text_atomic


def fmt(value, spec: str = '.3f') -> str:
  """A number for a Markdown table: '-' for None or NaN (no value), 'inf'
  and '-inf' as such."""
  if value is None:
    return '-'
  if isinstance(value, float | np.floating) and math.isnan(value):
    return '-'
  if isinstance(value, float | np.floating) and not math.isfinite(value):
    return str(float(value))
  return format(value, spec)


def number(value, spec: str, missing: str) -> str:
  """A number for a sentence: formatted with spec, or the words `missing`
  (what a NaN or an infinity means there) when it is not finite."""
  if value is None or not math.isfinite(value):
    return missing
  return format(value, spec)


def verdict_text(verdict: str, reason: str | None) -> str:
  """A verdict with its reason in words: 'FAIL: reason'.

  A verdict that already carries its reason in brackets ('NOT TESTABLE
  (too few runs)') is kept as it is.
  """
  if not reason or verdict.endswith(')'):
    return verdict
  return f'{verdict}: {reason}'


def wrap(line: str, columns: int = COLUMNS) -> list[str]:
  """One line of prose as lines of at most `columns` (a word longer than
  that, such as a long path, stays whole); continuations indented 4 more
  than the line."""
  if len(line) <= columns:
    return [line]
  indent = ' ' * (len(line) - len(line.lstrip()) + 4)
  return textwrap.wrap(
    line,
    columns,
    subsequent_indent=indent,
    break_long_words=False,
    break_on_hyphens=False,
  )


def echo(lines: Sequence[str], columns: int = COLUMNS) -> None:
  """Prints lines of prose to stdout, each wrapped to `columns`.

  A binary's stdout is its summary: tables go to its report file only.
  """
  for line in lines:
    for part in wrap(line, columns) if line else ['']:
      print(part)


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
  """Writes a report's JSON, strict: NaN and +-inf become null.

  Python's json writes NaN and Infinity, which are not JSON: strict readers
  (JavaScript, jq, most other languages) refuse the file.
  """
  write_json_atomic(path, strict_json(data))


def strict_json(data: Any) -> Any:
  """data with every non-finite float replaced by None, recursively."""
  if isinstance(data, float):
    return data if math.isfinite(data) else None
  if isinstance(data, dict):
    return {k: strict_json(v) for k, v in data.items()}
  if isinstance(data, list | tuple):
    return [strict_json(v) for v in data]
  return data


@functools.cache
def versions() -> dict[str, str | None]:
  """Installed versions of the packages that compute the results."""
  out = {}
  for package in (
    *('jax', 'jaxlib', 'jaxrelu', 'flax', 'optax', 'numpy', 'ml_dtypes'),
    *('scipy', 'scikit-learn', 'mlxtend', 'mnist1d', 'matplotlib'),
  ):
    try:
      out[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      out[package] = None
  return out


@functools.cache
def git_commit() -> str | None:
  """The commit of jaxrelu's checkout the experiments run from (+ '-dirty');
  None when they do not run from one (an installed wheel)."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    run = lambda *args: subprocess.run(
      ['git', '-C', here, *args],
      capture_output=True,
      text=True,
      timeout=10,
      check=True,
    ).stdout.strip()
    # Only jaxrelu's own checkout: an installed copy inside another
    # repository (a venv in a project) is not tracked there.
    run('ls-files', '--error-unmatch', os.path.abspath(__file__))
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


# provenance's keys that provenance_markdown states on lines of their own.
_STATED = ('flags', 'versions', 'git_commit', 'date', 'python', 'host')
_STATED += ('machine', 'cpu_count', 'backend', 'devices')


def _flag_text(value) -> str:
  """A flag's value as a command line would give it."""
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, float):
    return f'{value:g}'
  if isinstance(value, list | tuple) and any(
    isinstance(v, dict) for v in value
  ):
    # Settings made of parts (dying_relu's grid per optimizer): one
    # parenthesis each, its own values separated by semicolons.
    return ' '.join(
      '(' + '; '.join(f'{k}: {_flag_text(x)}' for k, x in v.items()) + ')'
      for v in value
    )
  if isinstance(value, list | tuple):
    return ','.join(map(_flag_text, value)) or '(empty)'
  if isinstance(value, dict):
    return ', '.join(f'{k}: {_flag_text(v)}' for k, v in value.items())
  if value is None:
    return 'not given'
  return str(value) if str(value) else '(empty)'


def provenance_markdown(meta: dict[str, Any]) -> str:
  """The '## Provenance' section that ends every binary's report.

  Args:
    meta: `provenance`'s dict, as stored in the report's JSON: the flags of
      the run (the binary's checked flags), package versions, jaxrelu's
      commit (None: not from a git checkout), date and machine; any other
      key (e.g. how many devices the cells were computed on) is listed too.

  Returns:
    Markdown: the heading, then one item per fact, the flags one per line.
  """
  commit = meta.get('git_commit') or 'not from a git checkout'
  versions = meta.get('versions', {})
  installed = ', '.join(f'{k} {v}' for k, v in versions.items() if v)
  absent = [k for k, v in versions.items() if not v]
  devices = meta.get('devices', [])
  shown = ', '.join(devices[:4]) + (', ...' if len(devices) > 4 else '')
  lines = [
    '## Provenance',
    '',
    f'- jaxrelu commit: {commit}',
    f'- date: {meta.get("date", "not recorded")}',
    f'- machine: {meta.get("host")} ({meta.get("machine")}, '
    f'{meta.get("cpu_count")} CPU cores), Python {meta.get("python")}, jax '
    f'backend {meta.get("backend")} with {len(devices)} device(s): {shown}',
    f'- package versions: {installed}'
    + (f'; not installed: {", ".join(absent)}' if absent else ''),
  ]
  lines += [
    f'- {k.replace("_", " ")}: {_flag_text(v)}'
    for k, v in meta.items()
    if k not in _STATED
  ]
  flag_values = meta.get('flags') or {}
  lines.append('- flags:' if flag_values else '- flags: none')
  lines += [f'  - {k}: {_flag_text(v)}' for k, v in flag_values.items()]
  return '\n'.join(lines) + '\n'


def missing_text(outcome, limit: int = 20) -> str:
  """Markdown lines naming the cells a `sweep.Outcome` lacks ('' if none)."""
  if not outcome.missing:
    return ''
  total = len(outcome.missing) + len(outcome.cells)
  lines = [
    f'**Incomplete: {len(outcome.missing)} of {total} cells are not in the '
    'store**; the numbers below use the stored cells only. Missing:'
  ]
  for label, settings in outcome.missing[:limit]:
    lines.append(f'- {label}: {json.dumps(settings, sort_keys=True)}')
  if len(outcome.missing) > limit:
    lines.append(f'- ... and {len(outcome.missing) - limit} more')
  return '\n'.join(lines) + '\n'


def missing_line(outcome, report: str) -> list[str]:
  """stdout's line for a `sweep.Outcome` that lacks cells ([] if none)."""
  if not outcome.missing:
    return []
  total = len(outcome.missing) + len(outcome.cells)
  return [
    f'Incomplete: {len(outcome.missing)} of {total} cells are not in the '
    f'store; the numbers use the stored ones (listed in {report}).'
  ]


def claims_summary(
  title: str, outcome, verdicts: dict[str, dict], path: str
) -> list[str]:
  """stdout's lines for a run of many claims: each claim that decides the
  exit status with its verdict and reason, and where the report is.

  Args:
    title: what the run tested.
    outcome: its `sweep.Outcome`.
    verdicts: claim -> {'verdict', 'reason' (None where the verdict carries
      it), 'held' (absent or None: a companion that decides nothing)}.
    path: the report, with every claim and its numbers.
  """
  deciding = {k: v for k, v in verdicts.items() if v.get('held') is not None}
  held = sum(v['held'] for v in deciding.values())
  return [
    *missing_line(outcome, path),
    f'{title}: {len(deciding)} deciding claims, {held} supported; '
    f'{len(verdicts) - len(deciding)} companion verdicts decide nothing '
    '(in the report).',
    *(
      f'- {name}: ' + verdict_text(v['verdict'], v.get('reason'))
      for name, v in deciding.items()
    ),
    f'full table: {path}',
  ]


def flag_values(settings, *leave_out: str) -> dict[str, Any]:
  """A binary's settings to store beside results: every field but
  `leave_out`, its placement as the two directories (not the task)."""
  out = {}
  for field in dataclasses.fields(settings):
    value = getattr(settings, field.name)
    if field.name == 'placement':
      out.update(store_dir=value.store_dir, output_dir=value.output_dir)
    elif field.name not in leave_out:
      out[field.name] = _plain(value)
  return out


def _plain(value):
  """Tuples as lists and dataclasses as dicts, as JSON stores them."""
  if dataclasses.is_dataclass(value):
    return {
      f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
    }
  if isinstance(value, tuple | list):
    return [_plain(v) for v in value]
  return value
