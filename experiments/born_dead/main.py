r"""How often is a deep, narrow ReLU network born dead?

A network is born dead when some layer is dead: every unit passes no
gradient (for ReLU, outputs exactly 0) on every input, so the network
computes a constant and no gradient reaches the layers below. The table
also gives the old criterion, a last layer flat (constant) over the grid
in float32, which counts layers float32 merely flattened too (issue 31:
RAI at width 5, depth 50 was 0.73 flat against 0.07 dead). Lu, Shin, Su &
Karniadakis (2020) prove that this becomes certain as depth grows at fixed
width, and report, at
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
a random linear read-out: it is born dead when one of its L layers is. So
one run at the maximum depth answers every depth, and each trial's first
dead depth is stored (trials are paired across inits and widths). Each
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
from collections.abc import Sequence

from absl import flags

from experiments import claims as verdicts_lib
from experiments import cli, sweep
from experiments import report as report_lib
from experiments.born_dead import claims, figures, network
from experiments.born_dead.settings import Settings
from jaxrelu import registry

INITS = ('he_zero_bias', 'he_random_bias', 'bias_0.01', 'rai')
# The library's activations a born-dead network can have: deterministic,
# with no hyperparameter that must be given (not prelu, not rrelu).
ACTIVATIONS = tuple(
  name
  for name, spec in registry.ACTIVATIONS.items()
  if not spec.random
  and all(h.default is not None for h in spec.hyperparameters)
)
# Bumped when the computation of a cell changes, so old cells are not reused.
VERSION = 2

_ACTIVATIONS = flags.DEFINE_list(
  'activations',
  ['relu'],
  f'Hidden activations: any of {", ".join(ACTIVATIONS)}, or '
  'package.module:function[label=NAME;HYPERPARAMETER=VALUE] (the claims '
  'judge the relu rows).',
)
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


def check_flags() -> Settings:
  """Every flag, checked before any compute; UsageError on the first bad."""
  items = cli.activation_items('activations', _ACTIVATIONS.value, ACTIVATIONS)
  users = [name for name, spec in items if spec is not None]
  activations = cli.choices(
    'activations', [name for name, _ in items], (*ACTIVATIONS, *users)
  )
  functions = {}
  for name, spec in items:
    if spec is None:
      functions[name] = (registry.get(name).fn, {'activation': name})
    else:
      hyper = {h.name: h.default for h in spec.hyperparameters}
      functions[name] = (
        functools.partial(spec.fn, **hyper),
        {
          'activation': name,
          **cli.source_hash(spec.fn),
          'activation_hyperparameters': hyper,
        },
      )
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
    activations=tuple(activations),
    depths=depths,
    widths=widths,
    inits=inits,
    trials=trials,
    grid_points=grid_points,
    input_range=input_range,
    seed=_SEED.value,
    placement=sweep.placement(_OUTPUT_DIR.value),
    functions=functions,
  )


def groups(settings: Settings) -> list[sweep.Group]:
  """One cell per (activation, init, width): every depth up to the deepest
  at once. ReLU's cells are keyed as before activations were a flag.
  Prints, before any compute, what its declared claims can reach."""
  declared = [claim for claim, _ in claims.declare(settings).values()]
  report_lib.echo(
    verdicts_lib.power_lines(declared, settings.trials, binary=True)
  )
  cell = settings.cell()
  out = []
  for name in settings.activations:
    fn, keyed = settings.functions[name]
    keyed = {} if name == 'relu' else keyed
    for init in settings.inits:
      for width in settings.widths:
        label = f'{init} width {width}'
        out.append(
          sweep.Group(
            label if name == 'relu' else f'{name} {label}',
            [
              {
                **cell,
                **keyed,
                'init': init,
                'width': width,
                'version': VERSION,
              }
            ],
            functools.partial(network.run_cell, init, width, cell, fn),
          )
        )
  return out


def write(settings: Settings, outcome: sweep.Outcome) -> dict:
  """results.json, .csv and .md and the figure; the verdicts.

  stdout gets the claims with their reasons; the table is in results.md.
  """
  rows = network.born_dead_rows(outcome.results(), settings.depths)
  if set(settings.activations) == {'relu'}:  # the table as it always was
    rows = [{k: v for k, v in r.items() if k != 'activation'} for r in rows]
  judged = claims.judge(settings, outcome.results())
  found = claims.literature(rows)
  text = '\n'.join(
    [
      report_lib.missing_text(outcome) + claims.table(rows),
      *claims.judged_lines(judged),
      '## Beside the literature (deciding nothing)',
      '',
      *claims.literature_lines(found),
      '',
    ]
  )
  out = settings.placement.output_dir
  meta = report_lib.provenance(report_lib.flag_values(settings, 'functions'))
  report_lib.write_json(
    f'{out}/results.json',
    {
      'meta': meta,
      'claims': {
        cid: {
          'verdict': j.verdict,
          'reason': j.reason,
          'mean': j.mean,
          'ci': list(j.ci),
          'p_holm': j.p_holm,
          'p_tost': j.p_tost,
          'n': j.n,
        }
        for cid, j in judged.items()
      },
      'literature': {
        k: {'matches': ok, 'how': why} for k, (ok, why) in found.items()
      },
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
  report_lib.echo(
    [
      *report_lib.missing_line(outcome, f'{out}/results.md'),
      f'Born dead: {len(rows)} (init, width, depth) estimates of '
      f'{settings.trials} networks each, inits {", ".join(inits) or "none"}.',
      *(
        claims.summary_lines(judged)
        or ['No claim was declared: it needs he_zero_bias and relu.']
      ),
      f'full table: {out}/results.md',
      f'Wrote {out}/results.json, results.csv, results.md'
      + (f', {os.path.basename(path)}' if path else ''),
    ]
  )
  return claims.exit_verdicts(judged)


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
