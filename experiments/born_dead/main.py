r"""How often is a deep, narrow ReLU network born dead?

A network is born dead when its output is constant over the inputs: some
layer is dead for every input, so the network computes a constant and no
gradient reaches the layers below. Lu, Shin, Su & Karniadakis (2020) prove
that this becomes certain as depth grows at fixed width, and report, at
depth 10: about 60% born dead at width 3, over 10% at width 5, and under 1%
at width 10 (symmetric He-type initialization). Their remedy is Randomized
Asymmetric Initialization (RAI).

This binary estimates the probability over `--trials` vectorized random
networks on a 1-D input grid. It covers each width in `--widths`, each
depth in `--depths`, and each initialization in `--inits`:

- he_zero_bias: He-normal weights, zero bias;
- he_random_bias: He-normal weights and biases;
- bias_0.01: He-normal weights, bias 0.01;
- rai: `jaxrelu.initializers.rai`.

A network of depth L is the first L hidden layers of the deepest one, plus
a random linear read-out. It is born dead exactly when hidden layer L is
constant over the grid: a non-constant layer gives a constant read-out with
probability 0. So one run at the maximum depth answers every depth. Each
estimate gets a 95% Wilson interval, beside the closed form
1 - (1 - 2^-N)^L (at least one layer of N units dead, each unit dead with
probability 1/2 independently) and beside Lu et al.'s figures.

Each (init, width) is a cell of `experiments.store` (a rerun resumes).
Exit status: 0 when every claim held, 1 when one did not, 2 for a usage
error.

Usage (from the repo root; `jaxrelu-born-dead` once installed):

  python -m experiments.born_dead
  python -m experiments.born_dead --trials=10000 --depths=5,10,20,50
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments import cli, sweep
from experiments import report as report_lib
from experiments.born_dead import figures, network
from experiments.born_dead.settings import Settings

INITS = ('he_zero_bias', 'he_random_bias', 'bias_0.01', 'rai')
# Lu et al. (2020), depth 10, symmetric init: width -> (low, high) bounds of
# the reported born-dead probability.
LU_ET_AL_DEPTH10 = {3: (0.5, 0.7), 5: (0.1, 1.0), 10: (0.0, 0.01)}
# Bumped when the computation of a cell changes, so old cells are not reused.
VERSION = 1

_DEPTHS = flags.DEFINE_list('depths', ['2', '5', '10', '20', '50'], 'Depths.')
_GRID = flags.DEFINE_integer('grid_points', 101, 'Inputs on the grid (>= 2).')
_INITS = flags.DEFINE_list('inits', list(INITS), f'Of: {", ".join(INITS)}.')
# Beyond 1e3 a deep float32 network's activations can overflow, which would
# read as "not born dead" (a NaN output is not constant).
MAX_INPUT_RANGE = 1e3
_RANGE = flags.DEFINE_float(
  'input_range',
  1.0,
  f'Grid on [-input_range, input_range], in (0, {MAX_INPUT_RANGE:g}].',
)
_OUTPUT_DIR = cli.output_dir_flag('born_dead', __name__)
_SEED = flags.DEFINE_integer('seed', 0, 'PRNG seed.')
_TRIALS = flags.DEFINE_integer('trials', 4000, 'Networks per cell (>= 10).')
_WIDTHS = flags.DEFINE_list('widths', ['2', '3', '5', '10'], 'Widths.')


def run_cell(init: str, width: int, settings: dict) -> list[dict]:
  """Born-dead counts at every depth up to max_depth for one (init, width).

  Args:
    init: the initialisation.
    width: the network's width.
    settings: `Settings.cell`: the trials, grid and seed, and max_depth.
  """
  grid = jnp.linspace(
    -settings['input_range'], settings['input_range'], settings['grid_points']
  )
  # The same trial keys for every cell: inits and widths are paired.
  key = jax.random.key(settings['seed'])
  # Compiled, and its memory checked, before the keys exist.
  keys = jax.ShapeDtypeStruct((settings['trials'],), key.dtype)
  fn = jax.jit(
    jax.vmap(
      lambda k: network.dead_by_depth(
        k, grid, width, settings['max_depth'], init
      )
    )
  ).lower(keys)
  fn = cli.compile_within_memory(
    fn,
    jax.local_devices()[:1],
    f'{settings["trials"]} networks of width {width}',
    '--trials, --grid_points or --widths',
  )
  start = time.perf_counter()
  dead = np.asarray(fn(jax.random.split(key, settings['trials'])))
  return [
    {
      'dead_counts': dead.sum(0).astype(int).tolist(),
      'seconds': time.perf_counter() - start,
    }
  ]


def _ci(r: dict) -> str:
  return (
    f'{r["probability"]:.3f} (95% CI {r["ci95_low"]:.3f}-{r["ci95_high"]:.3f})'
  )


def claims(rows: list[dict]) -> dict[str, tuple[bool, str]]:
  """Each claim's verdict (True: supported) and its reason in words.

  Lu et al.'s figures at depth 10 (He, zero bias): consistent when the 95%
  CI overlaps their range. RAI below He: RAI's CI lies wholly below He's
  in every cell where He is born dead at all. The closed form bounds He:
  no He cell's CI lies wholly above it.
  """
  cell = {(r['init'], r['width'], r['depth']): r for r in rows}
  out = {}
  for width, (lo, hi) in LU_ET_AL_DEPTH10.items():
    r = cell.get(('he_zero_bias', width, 10))
    if r is None:
      continue
    ok = r['ci95_high'] >= lo and r['ci95_low'] <= hi
    out[f'lu_et_al_width_{width}'] = (
      ok,
      f'width {width}, depth 10: measured {_ci(r)} '
      + ('overlaps' if ok else 'lies outside')
      + f" Lu et al.'s {lo:.2f}-{hi:.2f}",
    )
  below, overlap = [], []
  for (init, width, depth), r in cell.items():
    he = cell.get(('he_zero_bias', width, depth))
    if init == 'rai' and he is not None and he['born_dead'] > 0:
      where = f'width {width} depth {depth}'
      (below if r['ci95_high'] < he['ci95_low'] else overlap).append(where)
  if below or overlap:
    n = len(below) + len(overlap)
    reason = (
      f"RAI's 95% CI lies below He's (zero bias) in {len(below)} of {n} "
      'cells where He is born dead at all'
    )
    if overlap:
      reason += f'; the CIs overlap in {", ".join(overlap)}'
    out['rai_below_he_where_he_dies'] = (not overlap, reason)
  he = [r for r in rows if r['init'] == 'he_zero_bias']
  if he:
    above = [r for r in he if r['ci95_low'] > r['closed_form'] + 1e-12]
    if above:
      reason = 'the 95% CI lies above 1-(1-2^-N)^L in ' + ', '.join(
        f'width {r["width"]} depth {r["depth"]} ({r["ci95_low"]:.3f} > '
        f'{r["closed_form"]:.3f})'
        for r in above
      )
    else:
      reason = (
        f'no He (zero bias) cell of {len(he)} has its 95% CI above 1-(1-2^-N)^L'
      )
    out['closed_form_bounds_he'] = (not above, reason)
  return out


def claim_lines(found: dict[str, tuple[bool, str]]) -> list[str]:
  """One line per claim: its name, verdict and reason."""
  return [
    f'- {name}: '
    + report_lib.verdict_text('SUPPORTED' if ok else 'NOT SUPPORTED', why)
    for name, (ok, why) in found.items()
  ]


def report(rows: list[dict]) -> tuple[str, dict, dict]:
  """The Markdown table, the claims' lines; verdicts and their reasons."""
  header = ('init', 'width', 'depth', 'born dead', '95% CI', '1-(1-2^-N)^L')
  table = [
    (
      r['init'],
      r['width'],
      r['depth'],
      f'{r["probability"]:.4f}',
      f'[{r["ci95_low"]:.4f}, {r["ci95_high"]:.4f}]',
      f'{r["closed_form"]:.4f}',
    )
    for r in rows
  ]
  found = claims(rows)
  text = report_lib.markdown_table(header, table)
  if found:
    text += (
      '\n## Claims\n\nLu et al. (2020): depth 10, He init with zero bias, '
      'against their figures; RAI against He (zero bias) where He is born '
      'dead at all, by non-overlapping 95% CIs; the closed form as an upper '
      'bound of every He (zero bias) cell.\n\n'
      + '\n'.join(claim_lines(found))
      + '\n'
    )
  verdicts = {k: ok for k, (ok, _) in found.items()}
  return text, verdicts, {k: why for k, (_, why) in found.items()}


def check_flags() -> Settings:
  """Every flag, checked before any compute; UsageError on the first bad."""
  depths = tuple(sorted(cli.integers('depths', _DEPTHS.value)))
  widths = tuple(sorted(cli.integers('widths', _WIDTHS.value)))
  inits = tuple(cli.choices('inits', _INITS.value, INITS))
  input_range = cli.number(
    'input_range', _RANGE.value, low=0, high=MAX_INPUT_RANGE, low_open=True
  )
  trials, grid_points = _TRIALS.value, _GRID.value
  cli.require(trials >= 10, f'--trials: {trials} is not >= 10')
  cli.require(grid_points >= 2, f'--grid_points: {grid_points} is not >= 2')
  return Settings(
    depths=depths,
    widths=widths,
    inits=inits,
    trials=trials,
    grid_points=grid_points,
    input_range=input_range,
    seed=_SEED.value,
    placement=sweep.placement(_OUTPUT_DIR.value),
  )


def groups(settings: Settings) -> list[sweep.Group]:
  """One cell per (init, width): every depth up to the deepest at once."""
  cell = settings.cell()
  return [
    sweep.Group(
      f'{init} width {width}',
      [{**cell, 'init': init, 'width': width, 'version': VERSION}],
      functools.partial(run_cell, init, width, cell),
    )
    for init in settings.inits
    for width in settings.widths
  ]


def write(settings: Settings, outcome: sweep.Outcome) -> dict:
  """results.json, .csv and .md and the figure; the verdicts.

  stdout gets the claims with their reasons; the table is in results.md.
  """
  rows = network.born_dead_rows(outcome.results(), settings.depths)
  text, verdicts, reasons = report(rows)
  text = report_lib.missing_text(outcome) + text
  out = settings.placement.output_dir
  meta = report_lib.provenance(report_lib.flag_values(settings))
  report_lib.write_json(
    f'{out}/results.json',
    {
      'meta': meta,
      'verdicts': verdicts,
      'reasons': reasons,
      'results': rows,
    },
  )
  report_lib.write_csv(f'{out}/results.csv', rows)
  report_lib.write_text(
    f'{out}/results.md',
    f'{text}\n{report_lib.provenance_markdown(meta)}',
  )
  path = (
    figures.born_dead_figure(rows, INITS, f'{out}/born_dead.png')
    if rows
    else None
  )
  inits = sorted({r['init'] for r in rows}, key=list(INITS).index)
  judged = claim_lines({k: (v, reasons[k]) for k, v in verdicts.items()})
  report_lib.echo(
    [
      *report_lib.missing_line(outcome, f'{out}/results.md'),
      f'Born dead: {len(rows)} (init, width, depth) estimates of '
      f'{settings.trials} networks each, inits {", ".join(inits) or "none"}.',
      *(judged or ['No claim could be judged: its cells are not stored.']),
      f'full table: {out}/results.md',
      f'Wrote {out}/results.json, results.csv, results.md'
      + (f', {os.path.basename(path)}' if path else ''),
    ]
  )
  return verdicts


def main(argv: Sequence[str]) -> int:
  verdicts = sweep.run_and_report(argv, 'born_dead', check_flags, groups, write)
  if verdicts is None:  # no report from this run (a task of several)
    return cli.EXIT_HELD
  return cli.close('born_dead', verdicts)


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'born_dead')


if __name__ == '__main__':
  cli_main()
