r"""Calibration of `jaxrelu.self_normalization.check`: false alarms and power.

Claims (issue 12):

1. On correct SELU stacks the test's false-alarm rate (verdict FAIL) is at
   or below its stated level (`--level`) at every depth of `--depths`, over
   the widths from 64 up (each width's rate is in the table).
2. Wherever the test claims power (its detectable size is below
   `--detectable`), a wrong SELU with lambda or the weight variance off by
   `--error` (2%) fails in at least 80% of runs (the power it claims).
3. Where it has no power (width 16 at depth 200) the verdict is never PASS.

Method: each run is `--seeds_per_run` independent stacks of
`jaxrelu.self_normalization.simulate` (Dense + SELU, forward only), at
depth max(--depths); a run at a smaller depth is the same stacks' first
layers. Every run has its own PRNG key (runs are independent), one cell of
`experiments.store` holding the per-layer statistics, so the report
re-derives every verdict from the current test. Rates come with exact
(Clopper-Pearson) 95% intervals and one-sided exact binomial tests,
Holm-corrected over the claims of each kind.

Usage (from the repo root; `jaxrelu-calibrate-self-normalization` once
installed):

  python -m experiments.calibrate_self_normalization
  python -m experiments.calibrate_self_normalization \
      --widths=64,128,256,512,1024 \
      --depths=200,1000 --runs=100,60,60,30,10 --power_runs=10 \
      --power_widths=64,256

Exit status 0 when every claim is SUPPORTED, 1 when one is not (see the
table at the end).
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Sequence

import jax
import numpy as np
from absl import flags

from experiments import cli, report, stats, sweep
from experiments.calibrate_self_normalization import rates, tables
from experiments.calibrate_self_normalization.settings import Settings
from jaxrelu import self_normalization as sn

_BATCH = flags.DEFINE_integer('batch', 256, 'Samples per stack (>= 1).')
_DEPTHS = flags.DEFINE_list('depths', ['200'], 'Depths tested (>= 8 each).')
_DETECTABLE = flags.DEFINE_float(
  'detectable', 0.02, "The test's --detectable, in (0, 1)."
)
_DROPOUT_RATES = flags.DEFINE_list(
  'dropout_rates',
  ['0'],
  'Alpha-dropout rates of the correct stacks, [0, 0.99].',
)
_ERROR = flags.DEFINE_float(
  'error', 0.02, 'Relative error of the wrong SELUs, in (0, 0.5].'
)
_LEVEL = flags.DEFINE_float(
  'level', 0.01, "The test's family-wise level, in (0, 0.5]."
)
_OUTPUT_DIR = cli.output_dir_flag('calibrate_self_normalization', __name__)
_POWER_RUNS = flags.DEFINE_integer(
  'power_runs', 5, 'Runs per wrong SELU and width (>= 0; 0 = none).'
)
_POWER_WIDTHS = flags.DEFINE_list(
  'power_widths', None, 'Widths of the wrong SELUs (default: --widths).'
)
_RUNS = flags.DEFINE_list(
  'runs', ['20'], 'Correct runs per width: one count, or one per --widths.'
)
_SEED = flags.DEFINE_integer('seed', 0, 'Base PRNG seed.')
_SEEDS_PER_RUN = flags.DEFINE_integer(
  'seeds_per_run', 4, 'Stacks per run, as the binary`s --seeds (>= 1).'
)
_WIDTHS = flags.DEFINE_list('widths', ['16', '64', '256'], 'Widths (>= 1).')
# Bumped when a cell's computation changes, so old cells are not reused.
VERSION = 1
# The width from which claim 1 is made (below it the test has little power
# and is judged by claim 3 instead).
CALIBRATED_FROM = 64
# The detection rate claimed for the wrong SELUs (the test's own power).
POWER = 0.8
SIMULATE = ('width', 'batch', 'depth', 'seeds', 'scale', 'weight_variance')
SIMULATE += ('dropout_rate',)


def setups(settings: Settings) -> list[tuple[str, dict]]:
  """(name, simulate settings): the correct stacks, then the wrong SELUs."""
  base = {'scale': 1.0, 'weight_variance': 1.0, 'dropout_rate': 0.0}
  out = [
    (f'correct, dropout {r:g}' if r else 'correct', {**base, 'dropout_rate': r})
    for r in settings.dropout_rates
  ]
  for sign in (1, -1):
    for name, label in (('scale', 'lambda'), ('weight_variance', 'w. var')):
      error = sign * settings.error
      out.append((f'{label} {error:+.0%}', {**base, name: 1 + error}))
  return out


def check_flags() -> Settings:
  """Every flag, checked before any compute; UsageError on the first bad."""
  widths = cli.integers('widths', _WIDTHS.value)
  runs = cli.integers('runs', _RUNS.value, unique=False)
  cli.require(
    len(runs) in (1, len(widths)),
    f'--runs: give one count or one per width ({len(widths)}), got {len(runs)}',
  )
  power_widths = widths
  if _POWER_WIDTHS.value is not None:
    power_widths = cli.integers('power_widths', _POWER_WIDTHS.value)
  flag = {
    'widths': widths,
    'power_widths': power_widths,
    'runs': runs * len(widths) if len(runs) == 1 else runs,
    'depths': cli.integers('depths', _DEPTHS.value, low=8),
    'dropout_rates': cli.floats(
      'dropout_rates', _DROPOUT_RATES.value, low=0.0, high=0.99
    ),
    'error': cli.number('error', _ERROR.value, low=0, high=0.5, low_open=True),
    'level': cli.number('level', _LEVEL.value, low=0, high=0.5, low_open=True),
    'detectable': cli.number(
      'detectable',
      _DETECTABLE.value,
      low=0,
      high=1,
      low_open=True,
      high_open=True,
    ),
    **cli.values(_BATCH, _SEEDS_PER_RUN, _POWER_RUNS, _SEED),
  }
  cli.at_least(flag, ('batch', 'seeds_per_run'))
  cli.at_least(flag, ('power_runs',), 0)
  cli.check_every_number_flag()  # before the sizes below are multiplied
  flag = {k: tuple(v) if isinstance(v, list) else v for k, v in flag.items()}
  settings = Settings(**flag)
  cells = cell_count(settings)
  cli.require(
    cells <= sweep.MAX_CELLS,
    f'--runs and --power_runs give {cells} cells, more than the '
    f'{sweep.MAX_CELLS} a sweep stores (one file each): lower them',
  )
  cli.require_memory(
    rates.simulate_bytes(
      max(widths), flag['batch'], max(flag['depths']), flag['seeds_per_run']
    ),
    f'{flag["seeds_per_run"]} stacks of width {max(widths)} at once',
    '--seeds_per_run, --batch or --widths',
  )
  return dataclasses.replace(
    settings, placement=sweep.placement(_OUTPUT_DIR.value)
  )


def cell_count(settings: Settings) -> int:
  """The sweep's cells (`groups`' count, without building them)."""
  out = 0
  for name, _ in setups(settings):
    for width, runs in zip(settings.widths, settings.runs, strict=True):
      if name.startswith('correct'):
        out += runs
      elif width in settings.power_widths:
        out += settings.power_runs
  return out


def _simulate(cell: dict) -> list[dict]:
  key = jax.random.fold_in(jax.random.key(cell['seed']), cell['run_id'])
  means, stds = sn.simulate(key, **{k: cell[k] for k in SIMULATE})
  # float32 values: 9 significant digits keep them exactly.
  as_text = np.vectorize(lambda v: float(f'{v:.9g}'))
  return [{'means': as_text(means).tolist(), 'stds': as_text(stds).tolist()}]


def groups(settings: Settings) -> list[sweep.Group]:
  """One cell per run. A run's key folds (setup, width, run) into --seed,
  so runs are independent and other flags' runs stay valid when resumed."""
  out = []
  for name, setting in setups(settings):
    correct = name.startswith('correct')
    for width, runs in zip(settings.widths, settings.runs, strict=True):
      if not (correct or width in settings.power_widths):
        continue
      for run in range(runs if correct else settings.power_runs):
        cell = {
          'version': VERSION,
          'setup': name,
          **setting,
          'width': width,
          'depth': max(settings.depths),
          'seeds': settings.seeds_per_run,
          'run_id': zlib.crc32(f'{name}|{width}|{run}'.encode()) >> 1,
          'batch': settings.batch,
          'seed': settings.seed,
        }
        out.append(
          sweep.Group(
            f'{name}, width {width}, run {run}',
            [cell],
            functools.partial(_simulate, cell),
          )
        )
  return out


def claims(
  settings: Settings, rows: list[dict], bias: list[dict]
) -> tuple[list[str], dict]:
  """The three claims: the report's lines and each claim's verdict."""
  cells: dict[tuple, list[dict]] = {}
  for r in rows:
    cells.setdefault((r['setup'], r['width'], r['depth']), []).append(r)

  def count(rs, verdict):
    return sum(r['verdict'] == verdict for r in rs)

  tests = {}  # name -> (kind, k, n, claimed rate, direction)
  for depth in settings.depths:
    for setup in dict.fromkeys(r['setup'] for r in rows):
      rs = [
        r
        for (s, w, d), group in cells.items()
        if s == setup and d == depth and w >= CALIBRATED_FROM
        for r in group
      ]
      if setup.startswith('correct') and rs:
        name = f'false alarms <= {settings.level:g}: {setup}, depth {depth}'
        k = count(rs, sn.FAIL)
        tests[name] = ('calibration', k, len(rs), settings.level, 'at_most')
  for (setup, width, depth), rs in cells.items():
    worst = [max(r[f'detectable_{p}'] for p in sn.PARAMETERS) for r in rs]
    if not setup.startswith('correct') and np.mean(worst) < settings.detectable:
      name = f'detected >= {POWER:g}: {setup}, width {width}, '
      name += f'depth {depth}'
      k = count(rs, sn.FAIL)
      tests[name] = ('power', k, len(rs), POWER, 'at_least')
  out = rates.rate_claims(tests)
  for name, v in out.items():
    v['reason'] = rate_reason(v, *tests[name][3:])
  # Claim 3: no PASS where the test has no power (narrow, shallow runs).
  for (setup, width, depth), rs in cells.items():
    if width < CALIBRATED_FROM and depth == min(settings.depths):
      k = count(rs, sn.PASS)
      out[f'never PASS: {setup}, width {width}, depth {depth}'] = {
        'verdict': 'CONTRADICTED' if k else 'SUPPORTED',
        'reason': f'{k} of {len(rs)} runs passed',
        **stats.clopper_pearson(k, len(rs)),
      }
  lines = [
    f'Test: jaxrelu.self_normalization.check at level {settings.level:g}, '
    f'detectable {settings.detectable:.0%}; {settings.seeds_per_run} stacks '
    f'per run, batch {settings.batch}.',
    '',
    *tables.selu_test_tables(cells, out, bias),
  ]
  return lines, out


def rate_reason(v: dict, claimed: float, direction: str) -> str | None:
  """Why `rates.rate_claims` judged a rate claim as it did, in words (None
  for NOT TESTABLE, whose verdict says why)."""
  if v['verdict'].startswith('NOT TESTABLE'):
    return None
  counted = 'failed' if direction == 'at_most' else 'were detected (FAIL)'
  seen = (
    f'{v["k"]} of {v["n"]} runs {counted}, rate {v["rate"]:.3f} (95% CI '
    f'{v["low"]:.3f}-{v["high"]:.3f})'
  )
  if v['verdict'] == 'CONTRADICTED':
    side = 'above' if direction == 'at_most' else 'below'
    return f'{seen}: {side} {claimed:g}, Holm p = {v["p_holm"]:.2g}'
  return f'{seen}; a rate of {v["detectable"]:.3f} would have been caught'


def write(settings: Settings, outcome: sweep.Outcome) -> dict:
  rows = rates.selu_test_rows(outcome.results(), settings)
  bias = rates.selu_bias_rows(outcome.results())
  lines, verdict = claims(settings, rows, bias)
  text = report.missing_text(outcome) + '\n'.join(lines) + '\n'
  summary = [
    lines[0],
    *(
      f'- {name}: ' + report.verdict_text(v['verdict'], v.get('reason'))
      for name, v in verdict.items()
    ),
  ]
  tables.write_results(
    settings, outcome, text, summary, claims=verdict, bias=bias, runs=rows
  )
  return verdict


def main(argv: Sequence[str]) -> int:
  verdict = sweep.run_and_report(
    argv, 'calibrate_self_normalization', check_flags, groups, write
  )
  if verdict is None:  # no report from this run (a task of several)
    return cli.EXIT_HELD
  return cli.close(
    'calibrate_self_normalization',
    {k: v['verdict'] == 'SUPPORTED' for k, v in verdict.items()},
  )


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'calibrate_self_normalization')


if __name__ == '__main__':
  cli_main()
