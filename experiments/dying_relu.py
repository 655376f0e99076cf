r"""Dying ReLU: what kills units, and what saves them, measured in training.

Claims under test, each reported with its seed spread:

1. A high learning rate raises the dead fraction of ReLU: tested as the
   trend over the whole learning-rate grid (per-seed slopes, seeds paired
   by construction), with divergence reported as its own outcome; and a too
   low one contributes (the lowest rate against the next).
2. A negative bias kills units: the dose-response of the dead fraction to
   the bias init (per-seed slopes, seeds paired), at initialisation and
   after training.
3. A small positive bias (0.01) helps, where units die (the learning rates
   at which ReLU ends >= 5% dead, both arms averaged). CS231n calls this
   unclear; we report what we measure, and it decides no exit status.
4. (Descriptive until issue 14 judges variants by their gradient.) The
   variants' units *never positive* on the probe set (they pass gradient).
5. More than 50% dead means the network cannot fit: ReLU runs' probe
   accuracy by dead fraction, and against a constant predictor.

MLPs (`--depths` x `--widths`, initialised by `jaxrelu.initializers` for
their activation) are trained with each of `--optimizers`: plain SGD over
`--learning_rates` x `--bias_inits`, Adam over `--adam_learning_rates` x
`--adam_bias_inits`, on a classification task labelled by a seeded random
teacher network (data generated in code, nothing downloaded). Seed s has
the same init noise and minibatch order in every cell (`model.teacher_keys`).
Learning rates, bias inits and seeds run vectorized (`vmap`) in one
compiled program per (optimizer, activation, depth, width) group, spread
over the devices when there are several.

The model is `experiments.model`'s MLP and trainer (plain SGD or Adam); a
cell is one (activation, depth, width, learning rate, bias init) over all
seeds, stored by `experiments.store` under a key of every setting, so a
rerun resumes and `--num_tasks`/`--report_only` split the sweep (see
`experiments.sweep`). Outputs: `cells/`, `cells.csv`, `summary.json`,
`report.md`, `dead_vs_accuracy.png`, and per optimizer `dead_heatmaps_*`,
`dead_vs_step_*` and `dead_vs_lr_*.png` (dead against learning rate).
Exit status: 0 when claims 1 and 2 are SUPPORTED for every optimizer and
shape, 1 otherwise, 2 for a usage error.

Usage (from the repo root; `jaxrelu-dying-relu` once installed):

  python -m experiments.dying_relu
  python -m experiments.dying_relu --learning_rates=0.01,1.0 --steps=1000
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from absl import flags

from experiments import cli, data, model, plots, stats, sweep
from experiments import report as report_lib

ACTIVATIONS = ('relu', 'leaky_relu', 'prelu', 'rrelu', 'elu', 'selu', 'celu')
OPTIMIZERS = ('sgd', 'adam')

_ACTS = flags.DEFINE_list('activations', list(ACTIVATIONS), 'Activations.')
_BATCH = flags.DEFINE_integer('batch', 128, 'Minibatch size.')
# -1 (the textbook case), a moderate -0.3, 0, and CS231n's +0.01.
_BIASES = flags.DEFINE_list(
  'bias_inits', ['-1', '-0.3', '0', '0.01'], 'Bias inits (with SGD).'
)
_ADAM_BIASES = flags.DEFINE_list(
  'adam_bias_inits', ['0'], 'Bias inits with Adam.'
)
# Adam's dying regime lies around 1e-2 to 1e-1 (BUILD_NOTES.md).
_ADAM_LRS = flags.DEFINE_list(
  'adam_learning_rates',
  ['0.001', '0.003', '0.01', '0.03', '0.1'],
  'Learning rates with Adam.',
)
_DEPTHS = flags.DEFINE_list('depths', ['4'], 'Hidden layers.')
# From 0.01 (nothing dies) across SGD's dying regime, where units die and
# seeds start to diverge (0.5-0.9 for the default MLP, BUILD_NOTES.md).
_LRS = flags.DEFINE_list(
  'learning_rates',
  ['0.01', '0.1', '0.3', '0.5', '0.7', '0.9'],
  'Learning rates with SGD.',
)
_OPTIMIZERS = flags.DEFINE_list(
  'optimizers', list(OPTIMIZERS), f'Comma list of: {", ".join(OPTIMIZERS)}.'
)
_OUTPUT_DIR = cli.output_dir_flag('dying_relu', __name__)
_RECORD_EVERY = flags.DEFINE_integer('record_every', 25, 'Steps per record.')
_SEED = flags.DEFINE_integer('seed', 0, 'Base PRNG seed.')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds per cell.')
_STEPS = flags.DEFINE_integer('steps', 300, 'Training steps.')
_WIDTHS = flags.DEFINE_list('widths', ['128'], 'Units per hidden layer.')

# Bumped when the computation of a cell changes, so old cells are not reused.
VERSION = 3


def report(cells: dict[tuple, dict], flag: dict) -> tuple[str, dict]:
  """Markdown report: each claim with its numbers, and plain verdicts.

  Args:
    cells: stored cells by (optimizer, activation, depth, width, lr, bias).
    flag: the checked flags.

  The learning-rate claim uses every seed that stayed finite; the others
  leave out cells where a seed diverged (their dead fraction measures
  divergence). The learning-rate trends are Holm-corrected together.
  """
  lines, verdicts, trends = [], {}, {}
  blocks = []  # (DeadCells, its optimizer's flags), optimizers outermost
  for opt in flag['optimizers']:
    mine = {k[1:]: c for k, c in cells.items() if k[0] == opt}
    grid = model.optimizer_flag(flag, opt)
    blocks += [(at, grid) for at in stats.DeadCells.each(mine, grid)]
  for at, grid in blocks:
    tag = _tag(at, grid)
    b0 = 0.0 if 0.0 in at.biases else at.biases[len(at.biases) // 2]
    trends[tag, 'lr'] = stats.lr_trend(at, 'relu', b0)
    if grid['optimizer'] == 'sgd':
      # SGD's grid starts a decade below where units start dying; Adam's
      # starts inside its rising part, so "lowest vs next" there would
      # measure the high-rate effect, not a too-low one.
      trends[tag, 'low'] = stats.low_lr_effect(at, 'relu', b0)
    if len(at.biases) >= 3:  # a dose-response needs 3 doses
      # After training at the grid's second-lowest rate: a normal rate
      # (SGD 0.1), below the dying regime.
      lr_ref = at.lrs[min(1, len(at.lrs) - 1)]
      for record in (0, -1):
        trends[tag, record] = stats.bias_trend(at, 'relu', lr_ref, record)
    if {0.0, 0.01} <= set(at.biases):
      trends[tag, 'remedy'] = stats.remedy_effect(at, 'relu', 0.01, 0.0)
  chance = data.teacher_majority_rate(flag['seed'])
  trends['half'] = stats.dead_accuracy(cells, 'relu', chance)
  # Untestable claims (p NaN) are left out of the family.
  ps = {t: v['p'] for t, v in trends.items() if math.isfinite(v['p'])}
  adjusted = stats.holm(ps)
  for t, v in trends.items():
    adjusted.setdefault(t, math.nan)
    # What the run could detect at the level its test was held to.
    v['detectable'] = stats.detectable_mean(
      v['se'], v['n'], 0.05 / max(len(ps), 1)
    )
  for at, grid in blocks:
    tag = _tag(at, grid)
    lines.append(f'## {tag}\n')
    if diverged := at.diverged():
      lines.append(
        'Diverged (non-finite loss in some seed; claims 1-3 use the seeds '
        'that stayed finite, claim 4 leaves these cells out): '
        + ', '.join(f'{a} lr {lr:g} bias {b:g}' for a, lr, b in diverged)
        + '.\n'
      )
    # (1) learning rate: the trend over the whole grid, seeds paired.
    key = (tag, 'lr')
    line, verdict = report_lib.dying_lr_claim(trends[key], adjusted[key])
    verdicts[f'{tag}: high lr raises ReLU dead fraction'] = verdict
    lines.append(line)
    if (key := (tag, 'low')) in trends:
      line, verdicts[f'{tag}: too low lr'] = report_lib.dying_low_lr_claim(
        trends[key], adjusted[key]
      )
      lines.append(line)
    # (2) negative bias: the dose-response, at init and after training.
    if (tag, 0) in trends:
      line, found = report_lib.dying_bias_claim(
        trends[tag, 0], trends[tag, -1], adjusted[tag, 0], adjusted[tag, -1]
      )
      lines.append(line)
      verdicts[f'{tag}: negative bias kills ReLU units'] = found
    # (3) bias +0.01 against 0, where units die (CS231n: benefit unclear).
    if (tag, 'remedy') in trends:
      line, found = report_lib.dying_remedy_claim(
        trends[tag, 'remedy'], adjusted[tag, 'remedy']
      )
      lines.append(line)
      verdicts[f'{tag}: bias 0.01 effect'] = found
    # (4) the variants: descriptive (issue 14 reworks it to the gradient).
    if line := report_lib.dying_variants_line(at, flag['activations']):
      lines.append(line[0])
      verdicts[f'{tag}: variants have no never-positive units'] = line[1]
    lines.append('')
  line, verdicts['more than 50% dead cannot fit'] = (
    report_lib.dying_half_dead_claim(trends['half'], adjusted['half'])
  )
  lines.append(line)
  return '\n'.join(lines) + '\n', verdicts


def _tag(at: stats.DeadCells, flag: dict) -> str:
  return f'depth {at.depth}, width {at.width}, {flag["optimizer"]}'


def check_flags() -> dict:
  """Every flag, checked before any compute; UsageError on the first bad."""
  flag = {
    'activations': cli.choices('activations', _ACTS.value, ACTIVATIONS),
    'optimizers': cli.choices('optimizers', _OPTIMIZERS.value, OPTIMIZERS),
    'sgd_learning_rates': cli.floats(
      'learning_rates', _LRS.value, low=0, low_open=True
    ),
    'sgd_bias_inits': cli.floats('bias_inits', _BIASES.value),
    'adam_learning_rates': cli.floats(
      'adam_learning_rates', _ADAM_LRS.value, low=0, low_open=True
    ),
    'adam_bias_inits': cli.floats('adam_bias_inits', _ADAM_BIASES.value),
    'depths': cli.integers('depths', _DEPTHS.value),
    'widths': cli.integers('widths', _WIDTHS.value),
    **cli.values(_STEPS, _SEEDS, _BATCH, _RECORD_EVERY, _SEED),
  }
  cli.record_schedule(flag, 'seeds', 'batch')
  return {**flag, **sweep.placement(_OUTPUT_DIR.value)}


def write(flag: dict, outcome: sweep.Outcome) -> dict:
  """Report, CSV, summary and figures of the stored cells; the verdicts."""
  key = ('optimizer', 'activation', 'depth', 'width', 'learning_rate')
  cells = outcome.by(*key, 'bias_init')
  text, verdicts = report(cells, flag)
  text = report_lib.missing_text(outcome) + text
  report_lib.write_dying(outcome, cells, flag, text, verdicts)
  for opt in flag['optimizers']:
    mine = {k[1:]: c for k, c in cells.items() if k[0] == opt}
    plots.dead_fraction_figures(mine, model.optimizer_flag(flag, opt))
  half = verdicts['more than 50% dead cannot fit']
  plots.dead_accuracy_figure(half, f'{flag["output_dir"]}/dead_vs_accuracy.png')
  print(text)
  return verdicts


def main(argv: Sequence[str]) -> int:
  groups = functools.partial(model.teacher_groups, version=VERSION)
  verdicts = sweep.run_and_report(
    argv, 'dying_relu', check_flags, groups, write
  )
  # Claim 3 is reported as measured (HELPED / HURT / NO CLEAR EFFECT): the
  # literature calls it unclear, so it decides no exit status.
  held = verdicts is None or all(
    v if isinstance(v, bool) else v['held']
    for v in verdicts.values()
    if isinstance(v, bool) or 'held' in v
  )
  return cli.EXIT_HELD if held else cli.EXIT_NOT_HELD


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'dying_relu')


if __name__ == '__main__':
  cli_main()
