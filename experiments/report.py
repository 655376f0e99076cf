"""Writing results: Markdown tables, CSV, JSON; numbers formatted once."""

from __future__ import annotations

import csv
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

from experiments import stats
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


def flag_values(flag: dict, *leave_out: str) -> dict[str, Any]:
  """The flags to store beside results: all but the task and `leave_out`."""
  return {k: v for k, v in flag.items() if k not in ('task', *leave_out)}


# ----------------------------------------------------------------------------
# experiments.compare_variants: tables of a variants_claims.Results.


def variant_tables(table) -> list[str]:
  """The report's lines before the claims: setup, tables and notes.

  Args:
    table: a `variants_claims.Results` (its main block); its flag also
      holds the datasets' training-set sizes ('train_sizes').
  """
  from experiments.model import PRELU_INIT

  flag = table.flag
  acts = list(flag['activations'])
  seeds, steps = flag['splits'] * flag['seeds'], flag['steps']
  lines = [
    f'Plain MLPs of width {flag["width"]}. Main block: {flag["optimizer"]} '
    f'(lr {flag["learning_rate"]:g}), {steps} steps of batch '
    f'{flag["batch"]}, depths {", ".join(map(str, table.depths))}. '
    f'{flag["splits"]} repeated stratified 60/20/20 splits (split seeds '
    f'{flag["split_seed"]} to {flag["split_seed"] + flag["splits"] - 1}) x '
    f'{flag["seeds"]} seed(s), paired across activations. Accuracy is mean '
    '+- std over every network. Data: '
    + ', '.join(
      f'{ds} ({flag["train_sizes"][ds]} train)' for ds in table.datasets
    )
    + '; standardized with training statistics (MNIST-5k: pixels / 255, '
    f'one mean and std). selu: alpha dropout {flag["alpha_dropout_rate"]:g} '
    'after every hidden layer in training; selu_no_dropout: without.\n',
  ]
  rows = [(ds, depth) for ds in table.datasets for depth in table.depths]

  def by_activation(title, cell):
    """A (dataset, depth) x activation table; cell(metrics) is a string."""
    lines.extend(
      grid(
        title,
        rows,
        acts,
        ('dataset', 'depth'),
        lambda row, a: (
          None if (m := table.get(row[0], a, row[1])) is None else cell(m)
        ),
      )
    )

  def steps_cell(m):
    reached = m['steps_to_target'][m['reached']]
    median = f'{np.median(reached):.0f}' if reached.size else 'never'
    return f'{median} ({int(m["reached"].sum())}/{seeds})'

  by_activation(
    'Early-stopped test accuracy', lambda m: stats.mean_std(m['test_acc'])
  )
  by_activation(
    f'Steps to training loss {flag["target_loss"]:g} (median; seeds '
    'reaching it)',
    steps_cell,
  )
  by_activation(
    'Final dead (relu, relu6) / never-positive (others) fraction of hidden '
    'units, on the training set',
    lambda m: f'{stats.nanmean(m["final_dead"]):.3f}',
  )
  by_activation(
    "Hidden units' mean |mean activation| on the training set over the "
    "layer's RMS activation (mean over layers, the records after init and "
    'networks; 0: centred on zero)',
    lambda m: f'{stats.nanmean(m["act_mean"]):.3f}',
  )
  slope_acts = [a for a in ('prelu', 'prelu_channel') if a in acts]
  if slope_acts:
    lines += [
      f'## Learned PReLU slopes per hidden layer (init {PRELU_INIT}; mean '
      'over seeds, and channels for prelu_channel)\n',
    ]
    for a in slope_acts:
      for ds in table.datasets:
        for depth in table.depths:
          s = table.final_slopes(ds, a, depth)
          if s is not None:
            lines.append(
              f'- {a}, {ds}, depth {depth}: '
              + ' '.join(fmt(v, '.2f') for v in s)
            )
  diverged = [
    f'{ds} {a} depth {depth} ({int(m["diverged"].sum())}/{seeds})'
    for (ds, a, depth), m in table.metrics.items()
    if m['diverged'].any()
  ]
  lines += [
    '',
    '## Divergence\n',
    (
      'Non-finite training loss in: ' + ', '.join(diverged) + '. Early '
      'stopping keeps their best checkpoint from before.'
      if diverged
      else 'No run of the main block diverged.'
    ),
  ]
  if {'elu', 'celu'} <= set(acts) and flag['celu_alpha'] == 1.0:
    same = [
      np.array_equal(table.get(ds, 'elu', d)['test_acc'], m['test_acc'])
      for (ds, a, d), m in table.metrics.items()
      if a == 'celu' and table.get(ds, 'elu', d) is not None
    ]
    lines.append(
      f'\nCELU with alpha 1 is ELU. With paired seeds the two gave identical '
      f'test accuracies in {sum(same)} of {len(same)} groups; it is counted '
      'once (as ELU) in the SELU comparisons.'
    )
  return lines


VARIANT_FIELDS = (
  'dataset',
  'activation',
  'depth',
  'optimizer',
  'learning_rate',
  'networks',
  'test_acc_mean',
  'test_acc_std',
  'final_test_acc_mean',
  'final_train_acc_mean',
  'gap_mean',
  'final_train_loss_mean',
  'steps_to_target_median',
  'reached',
  'final_dead_mean',
  'act_mean',
  'diverged',
  'slopes',
)


def variant_rows(table) -> list[dict]:
  """One summary row per stored cell (dataset, activation, depth,
  optimizer, learning rate), over its networks (splits x seeds)."""
  rows = []
  for (ds, act, depth, opt, lr), by_split in table.all.items():
    m = {k: np.reshape(v, (-1, *np.shape(v)[2:])) for k, v in by_split.items()}
    slopes = (
      stats.nanmean(m['final_slopes'], axis=0) if 'final_slopes' in m else None
    )
    row = {
      'dataset': ds,
      'activation': act,
      'depth': depth,
      'optimizer': opt,
      'learning_rate': lr,
      'networks': len(m['test_acc']),
      'test_acc_mean': m['test_acc'].mean(),
      'test_acc_std': m['test_acc'].std(),
      'final_test_acc_mean': stats.nanmean(m['final_test_acc']),
      'final_train_acc_mean': stats.nanmean(m['final_train_acc']),
      'gap_mean': stats.nanmean(m['gap']),
      'final_train_loss_mean': stats.nanmean(m['final_train_loss']),
      'steps_to_target_median': float(np.median(m['steps_to_target'])),
      'reached': int(m['reached'].sum()),
      'final_dead_mean': stats.nanmean(m['final_dead']),
      'act_mean': stats.nanmean(m['act_mean']),
      'diverged': int(m['diverged'].sum()),
      'slopes': '' if slopes is None else ' '.join(f'{v:.4f}' for v in slopes),
    }
    rows.append(
      {k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()}
    )
  return rows


def write_variants(
  outcome, table, claims: list[str], verdicts: dict, extra: list[str]
) -> str:
  """report.md, results.csv and summary.json of compare_variants.

  Args:
    outcome: the sweep's `sweep.Outcome`.
    table: its `variants_claims.Results`.
    claims: the Markdown lines of the claims, with their verdicts.
    verdicts: the verdicts by claim, for summary.json.
    extra: Markdown lines after the main tables (the SELU protocol's, the
      per-stratum differences).

  Returns:
    The report's text (without its title).
  """
  flag = table.flag
  out = flag['output_dir']
  text = '\n'.join(
    [
      *variant_tables(table),
      '',
      *extra,
      '## Claims\n',
      *claims,
    ]
  )
  text = missing_text(outcome) + text + '\n'
  meta = provenance(flag_values(flag, 'train_sizes'))
  write_text(
    f'{out}/report.md',
    f'# ReLU variants on real data\n\n{text}\n{provenance_markdown(meta)}',
  )
  rows = variant_rows(table)
  write_csv(f'{out}/results.csv', rows, VARIANT_FIELDS)
  write_json(
    f'{out}/summary.json',
    {
      'meta': meta,
      'missing_cells': len(outcome.missing),
      'train_sizes': flag['train_sizes'],
      'verdicts': verdicts,
      'groups': rows,
    },
  )
  return text


# ----------------------------------------------------------------------------
# experiments.dying_relu.

DYING_FIELDS = (
  'activation',
  'depth',
  'width',
  'optimizer',
  'learning_rate',
  'bias_init',
  'init_scale',
  'input_shift',
  'revive',
  'seeds',
  'final_dead_mean',
  'final_dead_std',
  'initial_dead_mean',
  'initial_full_layer_dead',
  'final_accuracy_mean',
  'final_loss_mean',
  'diverged',
)


def write_dying(outcome, cells: dict, flag: dict, text: str, verdicts: dict):
  """report.md, cells.csv and summary.json of dying_relu.

  Args:
    outcome: the sweep's `sweep.Outcome`.
    cells: its stored cells, by (optimizer, activation, depth, width, lr,
      bias).
    flag: the binary's checked flags.
    text: the report (without its title).
    verdicts: the claims' verdicts.
  """
  out = flag['output_dir']
  counts = sorted(
    {len(c['provenance']['devices']) for c in outcome.cells.values()}
  )
  machines = sorted(
    {
      f'{c["provenance"]["backend"]} on {c["provenance"]["host"]}'
      for c in outcome.cells.values()
    }
  )
  if len(machines) > 1:
    text = (
      f'Cells computed on {len(machines)} machines ({", ".join(machines)}):'
      ' other hardware can round chaotic cells differently in the last'
      ' bits.\n\n' + text
    )
  meta = provenance(flag_values(flag))
  # How many devices there were where each stored cell was computed
  # (model.by_cell: a cell's numbers do not depend on it).
  meta['cells_computed_on_devices'] = counts
  write_text(
    f'{out}/report.md',
    f'# Dying ReLU\n\n{text}\n{provenance_markdown(meta)}',
  )
  write_csv(f'{out}/cells.csv', list(cells.values()), DYING_FIELDS)
  write_json(
    f'{out}/summary.json',
    {'meta': meta, 'missing_cells': len(outcome.missing), 'verdicts': verdicts},
  )


# ----------------------------------------------------------------------------
# experiments.benchmark_selu_test: runs by (setup, width, depth), claims.


def selu_test_tables(
  cells: dict[tuple, list[dict]], claims: dict, bias: list[dict]
) -> list[str]:
  """The finite-width bias, the table of verdicts, then the claims."""
  from jaxrelu import self_normalization as sn

  lines = [
    '## Finite-width bias of the correct stacks (second half of the layers)',
    '',
    '| setup | width | statistic | stacks | measured (SE) | model '
    '| model, first order only |',
    '|---|---|---|---|---|---|---|',
  ]
  for b in bias:
    lines.append(
      f'| {b["setup"]} | {b["width"]} | {b["statistic"]} | {b["stacks"]} '
      f'| {b["measured"]:+.5f} ({b["se"]:.5f}) | {b["model"]:+.5f} '
      f'| {b["first_order_model"]:+.5f} |'
    )
  lines += [
    '',
    '## Verdicts',
    '',
    '| setup | width | depth | runs | FAIL | NOT TESTABLE | PASS '
    '| FAIL rate (95% CI) | detectable lambda, weight var (mean) '
    '| t of mean, of std: mean (sd) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (setup, width, depth), rs in cells.items():
    count = {v: sum(r['verdict'] == v for r in rs) for v in sn.VERDICTS}
    rate = stats.clopper_pearson(count[sn.FAIL], len(rs))
    t = np.array([[r['t_mean'], r['t_std']] for r in rs])
    det = [np.mean([r[f'detectable_{p}'] for r in rs]) for p in sn.PARAMETERS]
    lines.append(
      f'| {setup} | {width} | {depth} | {len(rs)} | {count[sn.FAIL]} '
      f'| {count[sn.NOT_TESTABLE]} | {count[sn.PASS]} '
      f'| {rate["rate"]:.3f} ({rate["low"]:.3f}, {rate["high"]:.3f}) '
      f'| {100 * det[0]:.2f}%, {100 * det[1]:.2f}% '
      f'| {fmt(t[:, 0].mean(), ".2f")} ({fmt(t[:, 0].std(), ".2f")}), '
      f'{fmt(t[:, 1].mean(), ".2f")} ({fmt(t[:, 1].std(), ".2f")}) |'
    )
  lines += [
    '',
    '## Claims',
    '',
    'Claims 1-2: the exact one-sided binomial test of a violation, Holm '
    'within each kind; "detectable" is the violating rate the run would '
    'have caught with probability 0.8.',
    '',
    '| claim | k / n | rate (95% CI) | one-sided p (raw, Holm) '
    '| detectable | verdict |',
    '|---|---|---|---|---|---|',
  ]
  for name, v in claims.items():
    lines.append(
      f'| {name} | {v["k"]} / {v["n"]} | {v["rate"]:.3f} ({v["low"]:.3f}, '
      f'{v["high"]:.3f}) | {fmt(v.get("p"), ".3g")}, '
      f'{fmt(v.get("p_holm"), ".3g")} | {fmt(v.get("detectable"), ".3f")} '
      f'| {verdict_text(v["verdict"], v.get("reason"))} |'
    )
  return lines


def write_results(
  flag: dict, outcome, text: str, summary: Sequence[str], **results
) -> None:
  """results.json (provenance + `results`), results.md (text, then the
  provenance) and, from results['runs'], results.csv; prints the summary
  (lines of prose) and what it wrote."""
  out = flag['output_dir']
  meta = provenance(flag_values(flag))
  write_json(
    f'{out}/results.json',
    {'meta': meta, **results, 'missing_cells': len(outcome.missing)},
  )
  write_text(f'{out}/results.md', f'{text}\n{provenance_markdown(meta)}')
  write_csv(f'{out}/results.csv', results['runs'])
  echo(
    [
      *missing_line(outcome, f'{out}/results.md'),
      *summary,
      f'full table: {out}/results.md',
      f'Wrote {out}/results.json, results.csv, results.md',
    ]
  )
