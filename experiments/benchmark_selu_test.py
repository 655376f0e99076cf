r"""Calibration of `jaxrelu.self_normalization.check`: false alarms and power.

Claims (issue 12):

1. On correct SELU stacks the test's false-alarm rate (verdict FAIL) is at
   or below its stated level (`--level`) at every depth of `--depths`, over
   the widths from 64 up.
2. Wherever the test claims power (its detectable size is below
   `--detectable`), a wrong SELU with lambda or the weight variance off by
   `--error` (2%) fails in at least `--power` (80%) of runs.
3. Where it has no power (width 16 at depth 200) the verdict is never PASS.

Method: each run is `--seeds_per_run` independent stacks of
`jaxrelu.self_normalization.simulate` (Dense + SELU, forward only), at
depth max(--depths); a run at a smaller depth is the same stacks' first
layers. Every run has its own PRNG key (runs are independent), one cell of
`experiments.store` holding the per-layer statistics, so the report
re-derives every verdict from the current test. Rates come with exact
(Clopper-Pearson) 95% intervals and one-sided exact binomial tests,
Holm-corrected over the claims of each kind.

Usage (from the repo root; `jaxrelu-benchmark-selu-test` once installed):

  python -m experiments.benchmark_selu_test
  python -m experiments.benchmark_selu_test --widths=64,128,256,512,1024 \
      --depths=200,1000 --runs=100,60,60,30,10 --power_runs=10 \
      --power_widths=64,256

Exit status 0 when every claim is SUPPORTED, 1 otherwise, 2 for a usage
error.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np
from absl import flags
from scipy import stats as scipy_stats

from experiments import cli, report, sweep
from experiments.report import fmt
from jaxrelu import self_normalization as sn

_BATCH = flags.DEFINE_integer('batch', 256, 'Samples per stack (>= 1).')
_DEPTHS = flags.DEFINE_list('depths', ['200'], 'Depths tested (>= 8 each).')
_DETECTABLE = flags.DEFINE_float(
  'detectable', 0.02, "The test's --detectable, in (0, 1)."
)
_DROPOUT_RATES = flags.DEFINE_list(
  'dropout_rates', ['0'], 'Alpha-dropout rates of the correct stacks, [0, 1).'
)
_ERROR = flags.DEFINE_float(
  'error', 0.02, 'Relative error of the wrong SELUs, in (0, 0.5).'
)
_LEVEL = flags.DEFINE_float(
  'level', 0.01, "The test's family-wise level, in (0, 0.5]."
)
_OUTPUT_DIR = cli.output_dir_flag('benchmark_selu_test', __name__)
_POWER = flags.DEFINE_float(
  'power', 0.8, 'Claimed detection rate of the wrong SELUs, in (0, 1).'
)
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


def setups(flag: dict) -> list[tuple[str, dict]]:
  """(name, simulate settings): the correct stacks, then the wrong SELUs."""
  out = [
    (f'correct, dropout {r:g}' if r else 'correct', {'dropout_rate': r})
    for r in flag['dropout_rates']
  ]
  e = flag['error']
  for sign, label in ((1, '+'), (-1, '-')):
    out.append((f'lambda {label}{e:.0%}', {'scale': 1 + sign * e}))
    out.append(
      (f'weight variance {label}{e:.0%}', {'weight_variance': 1 + sign * e})
    )
  return out


def check_flags() -> dict:
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
      'detectable', _DETECTABLE.value, low=0, high=1, low_open=True
    ),
    'power': cli.number(
      'power', _POWER.value, low=0, high=1, low_open=True, high_open=True
    ),
    **cli.values(_BATCH, _SEEDS_PER_RUN, _POWER_RUNS, _SEED),
  }
  cli.at_least(flag, ('batch', 'seeds_per_run'))
  cli.at_least(flag, ('power_runs',), 0)
  return {**flag, **sweep.placement(_OUTPUT_DIR.value)}


def _simulate(settings: dict) -> list[dict]:
  key = jax.random.fold_in(jax.random.key(settings['seed']), settings['index'])
  means, stds = sn.simulate(
    key,
    width=settings['width'],
    batch=settings['batch'],
    depth=settings['depth'],
    seeds=settings['seeds'],
    scale=settings['scale'],
    weight_variance=settings['weight_variance'],
    dropout_rate=settings['dropout_rate'],
  )
  # float32 values: 9 significant digits keep them exactly.
  return [
    {
      'means': [[float(f'{v:.9g}') for v in row] for row in means],
      'stds': [[float(f'{v:.9g}') for v in row] for row in stds],
    }
  ]


def groups(flag: dict) -> list[sweep.Group]:
  """One cell per run; every run its own key (index folded into --seed)."""
  out, index = [], 0
  for name, setting in setups(flag):
    correct = name.startswith('correct')
    for width, runs in zip(flag['widths'], flag['runs'], strict=True):
      if not (correct or width in flag['power_widths']):
        continue
      for run in range(runs if correct else flag['power_runs']):
        settings = {
          'version': VERSION,
          'setup': name,
          'scale': setting.get('scale', 1.0),
          'weight_variance': setting.get('weight_variance', 1.0),
          'dropout_rate': setting.get('dropout_rate', 0.0),
          'width': width,
          'batch': flag['batch'],
          'depth': max(flag['depths']),
          'seeds': flag['seeds_per_run'],
          'seed': flag['seed'],
          'index': index,
        }
        index += 1
        out.append(
          sweep.Group(
            f'{name}, width {width}, run {run}',
            [settings],
            functools.partial(_simulate, settings),
          )
        )
  return out


def _rate(k: int, n: int) -> dict:
  """k of n with its exact 95% interval."""
  lo = scipy_stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
  hi = scipy_stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
  return {'k': k, 'n': n, 'rate': k / n, 'low': float(lo), 'high': float(hi)}


def verdicts(flag: dict, outcome: sweep.Outcome) -> list[dict]:
  """Every stored run's verdict at every depth, from the current test."""
  rows = []
  for c in outcome.results():
    for depth in flag['depths']:
      v = sn.check(
        np.asarray(c['means'])[:, :depth],
        np.asarray(c['stds'])[:, :depth],
        width=c['width'],
        batch=c['batch'],
        dropout_rate=c['dropout_rate'],
        level=flag['level'],
        detectable=flag['detectable'],
      )
      rows.append(
        {
          'setup': c['setup'],
          'width': c['width'],
          'depth': depth,
          'verdict': v.verdict,
          'detectable_scale': v.detectable['scale'],
          'detectable_weight_variance': v.detectable['weight_variance'],
          't_mean': v.t['mean'],
          't_std': v.t['std'],
        }
      )
  return rows


def _count(rows: list[dict], verdict: str) -> int:
  return sum(r['verdict'] == verdict for r in rows)


def _table(cells: dict[tuple, list[dict]]) -> list[str]:
  lines = [
    '| setup | width | depth | runs | FAIL | NOT TESTABLE | PASS '
    '| FAIL rate (95% CI) | detectable lambda, weight var (mean) '
    '| t of mean, of std: mean (sd) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (setup, width, depth), rs in cells.items():
    rate = _rate(_count(rs, sn.FAIL), len(rs))
    t = np.array([[r['t_mean'], r['t_std']] for r in rs])
    det = [np.mean([r[f'detectable_{p}'] for r in rs]) for p in sn.PARAMETERS]
    lines.append(
      f'| {setup} | {width} | {depth} | {len(rs)} | {_count(rs, sn.FAIL)} '
      f'| {_count(rs, sn.NOT_TESTABLE)} | {_count(rs, sn.PASS)} '
      f'| {rate["rate"]:.3f} ({rate["low"]:.3f}, {rate["high"]:.3f}) '
      f'| {100 * det[0]:.2f}%, {100 * det[1]:.2f}% '
      f'| {fmt(t[:, 0].mean(), ".2f")} ({fmt(t[:, 0].std(), ".2f")}), '
      f'{fmt(t[:, 1].mean(), ".2f")} ({fmt(t[:, 1].std(), ".2f")}) |'
    )
  return lines


def claims(flag: dict, rows: list[dict]) -> tuple[list[str], dict]:
  """The three claims: the report's lines and each claim's verdict."""
  cells: dict[tuple, list[dict]] = {}
  for r in rows:
    cells.setdefault((r['setup'], r['width'], r['depth']), []).append(r)
  tests = {}  # name -> (kind, rate, one-sided p, point estimate on the side)
  for depth in flag['depths']:
    for setup in dict.fromkeys(r['setup'] for r in rows):
      if not setup.startswith('correct'):
        continue
      rs = [
        r
        for (s, w, d), group in cells.items()
        if s == setup and d == depth and w >= CALIBRATED_FROM
        for r in group
      ]
      if rs:
        k = _count(rs, sn.FAIL)
        p = scipy_stats.binomtest(k, len(rs), flag['level'], 'greater').pvalue
        name = f'false alarms <= {flag["level"]:g}: {setup}, depth {depth}'
        tests[name] = (
          'calibration',
          _rate(k, len(rs)),
          p,
          k / len(rs) <= flag['level'],
        )
  for (setup, width, depth), rs in cells.items():
    worst = [max(r[f'detectable_{p}'] for p in sn.PARAMETERS) for r in rs]
    if not setup.startswith('correct') and np.mean(worst) < flag['detectable']:
      k = _count(rs, sn.FAIL)
      p = scipy_stats.binomtest(k, len(rs), flag['power'], 'less').pvalue
      name = (
        f'detected >= {flag["power"]:g}: {setup}, width {width}, depth {depth}'
      )
      tests[name] = (
        'power',
        _rate(k, len(rs)),
        p,
        k / len(rs) >= flag['power'],
      )
  out = {}
  for kind in ('calibration', 'power'):
    names = [n for n, t in tests.items() if t[0] == kind]
    adjusted = sn.holm({n: tests[n][2] for n in names}) if names else {}
    for n in names:
      _, rate, p, on_side = tests[n]
      if adjusted[n] <= 0.05:
        v = 'CONTRADICTED'
      elif on_side:
        v = 'SUPPORTED'
      else:
        v = 'NOT TESTABLE (estimate on the wrong side, not significant)'
      out[n] = {'verdict': v, **rate, 'p': float(p), 'p_holm': adjusted[n]}
  # Claim 3: no PASS where the test has no power (narrow, shallow runs).
  for (setup, width, depth), rs in cells.items():
    if width < CALIBRATED_FROM and depth == min(flag['depths']):
      k = _count(rs, sn.PASS)
      name = f'never PASS: {setup}, width {width}, depth {depth}'
      out[name] = {
        'verdict': 'CONTRADICTED' if k else 'SUPPORTED',
        **_rate(k, len(rs)),
      }
  lines = [
    f'Test: jaxrelu.self_normalization.check at level {flag["level"]:g}, '
    f'detectable {flag["detectable"]:.0%}; {flag["seeds_per_run"]} stacks '
    f'per run, batch {flag["batch"]}. Claims 1-2 are one-sided exact '
    'binomial tests, Holm-corrected within each kind.',
    '',
    *_table(cells),
    '',
    '## Claims',
    '',
    '| claim | k / n | rate (95% CI) | one-sided p (raw, Holm) | verdict |',
    '|---|---|---|---|---|',
  ]
  for n, v in out.items():
    lines.append(
      f'| {n} | {v["k"]} / {v["n"]} | {v["rate"]:.3f} ({v["low"]:.3f}, '
      f'{v["high"]:.3f}) | {fmt(v.get("p"), ".3g")}, '
      f'{fmt(v.get("p_holm"), ".3g")} | {v["verdict"]} |'
    )
  return lines, out


def write(flag: dict, outcome: sweep.Outcome) -> dict:
  rows = verdicts(flag, outcome)
  lines, verdict = claims(flag, rows)
  text = report.missing_text(outcome) + '\n'.join(lines) + '\n'
  out = flag['output_dir']
  report.write_json(
    f'{out}/results.json',
    {
      'meta': report.provenance(report.flag_values(flag)),
      'claims': verdict,
      'runs': rows,
      'missing_cells': len(outcome.missing),
    },
  )
  report.write_text(f'{out}/results.md', text)
  report.write_csv(f'{out}/results.csv', rows)
  print(text)
  print(f'Wrote {out}/results.json, results.csv, results.md')
  return verdict


def main(argv: Sequence[str]) -> int:
  verdict = sweep.run_and_report(
    argv, 'benchmark_selu_test', check_flags, groups, write
  )
  held = verdict is None or all(
    v['verdict'] == 'SUPPORTED' for v in verdict.values()
  )
  return cli.EXIT_HELD if held else cli.EXIT_NOT_HELD


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'benchmark_selu_test')


if __name__ == '__main__':
  cli_main()
