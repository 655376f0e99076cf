r"""Dying ReLU: what kills units, and what saves them, measured in training.

Each claim of the lecture notes gets its own verdict (`claims`), tested
where its effect can show, seeds paired:

1. Causes. A high learning rate (the trend over the whole grid, divergence
   reported as its own outcome) and a too low one (lowest vs next); a
   negative bias (dose-response at init, and after training); a bad init
   (`--init_scales` x He), shifted data (`--input_shifts` added to every
   input) and depth (`--cause_depths` beside `--depths`), after training
   at a normal learning rate (the grid's second lowest), where nothing
   dies without the cause.
2. Remedies, where units die: a lower learning rate, bias +0.01 (CS231n:
   unclear; it decides no exit status), each variant judged on the
   gradient its units pass (mean derivative), and ReDo revival.
3. "A dead unit is not recoverable": each unit tracked over training, per
   layer (layer 1 against the deeper ones), with and without revival.
4. More than 50% dead means the network cannot fit: probe accuracy by
   dead fraction, against a constant predictor.

MLPs (`--depths` x `--widths`, initialised by `jaxrelu.initializers` for
their activation) are trained with each of `--optimizers`: plain SGD over
`--learning_rates` x `--bias_inits` (the activations other than ReLU at
`--variant_bias_inits`), Adam over `--adam_learning_rates` x
`--adam_bias_inits`, on a classification task labelled by a seeded random
teacher network (data generated in code, nothing downloaded); ReLU also
with the treatments (`teacher.teacher_cells`). Seed s has the same init
noise and minibatch order in every cell (`teacher.teacher_keys`). A cell's
seeds run vectorized (`vmap`); each cell runs on its own, one per device
(on CPU, one device per core: `cli.cores_as_devices`), by a compiled
program shared by the activations of the same grid, so a cell's numbers
do not depend on the cells beside it or on the device count
(`model.by_cell`).

A cell is one setting over all seeds, stored by `experiments.store` under
a key of every setting, so a rerun resumes and `--num_tasks`/
`--report_only` split the sweep (see `experiments.sweep`). Outputs:
`cells/`, `cells.csv`, `summary.json`, `report.md`, `dead_vs_accuracy.png`,
and per optimizer `dead_heatmaps_*`, `dead_vs_step_*`, `dead_vs_lr_*` and
`recovery_*.png`. Exit status: 0 when every claim that decides it is
SUPPORTED, 1 when one is not (see the table at the end).

Usage (from the repo root; `jaxrelu-dying-relu` once installed):

  python -m experiments.dying_relu
  python -m experiments.dying_relu --learning_rates=0.01,1.0 --steps=1000
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from absl import flags

from experiments import cli, model, sweep
from experiments import report as report_lib
from experiments.dying_relu import claims as dying_claims
from experiments.dying_relu import figures, tables, teacher
from experiments.dying_relu.settings import Grid, Settings
from jaxrelu import registry

# Every activation of the library (jaxrelu.registry).
ACTIVATIONS = tuple(registry.ACTIVATIONS)
# Off by default: CELU runs at alpha 1 here, where it is ELU exactly, and
# ReLU6 dies as ReLU does below 0.
DEFAULT_ACTIVATIONS = [a for a in ACTIVATIONS if a not in ('celu', 'relu6')]
OPTIMIZERS = ('sgd', 'adam')

_ACTS = flags.DEFINE_list('activations', DEFAULT_ACTIVATIONS, 'Activations.')
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
_CAUSE_DEPTHS = flags.DEFINE_list(
  'cause_depths', ['2', '8'], 'Depths for the depth cause (ReLU, SGD).'
)
_DEPTHS = flags.DEFINE_list('depths', ['4'], 'Hidden layers.')
# LeCun/Glorot's scale for ReLU (1/sqrt(2) of He) and a doubled one.
_INIT_SCALES = flags.DEFINE_list(
  'init_scales', ['0.7071', '2'], 'Bad inits: weight scales x He.'
)
# In input standard deviations. A shift s moves each first-layer unit by s
# times the sum of its weights: about half are pushed towards always-off.
_INPUT_SHIFTS = flags.DEFINE_list(
  'input_shifts', ['1', '3'], 'Shifts added to every input feature.'
)
# From 0.01 (nothing dies) across SGD's dying regime, where units die and
# seeds start to diverge (0.5-0.9 for the default MLP, BUILD_NOTES.md).
_LRS = flags.DEFINE_list(
  'learning_rates',
  ['0.01', '0.1', '0.3', '0.5', '0.7', '0.9'],
  'Learning rates with SGD.',
)
# Where ReLU dies (from init at -1, by the learning rate at 0): the
# remedies' cells; -0.3 and +0.01 serve ReLU's own bias claims.
VARIANT_BIASES = (-1.0, 0.0)
_VARIANT_BIASES = flags.DEFINE_list(
  'variant_bias_inits',
  None,
  'With SGD, the bias inits of the activations other than ReLU: some of '
  '--bias_inits (empty: all). Default: those of -1 and 0 in --bias_inits '
  '(all if neither is); all under --full.',
)
_OPTIMIZERS = flags.DEFINE_list(
  'optimizers', list(OPTIMIZERS), f'Comma list of: {", ".join(OPTIMIZERS)}.'
)
_FULL = flags.DEFINE_bool(
  'full', False, 'The larger grid (FULL) for the flags not given.'
)
_OUTPUT_DIR = cli.output_dir_flag('dying_relu', __name__)
# Each record evaluates the whole training set (units are judged on it).
_RECORD_EVERY = flags.DEFINE_integer('record_every', 50, 'Steps per record.')
_SEED = flags.DEFINE_integer('seed', 0, 'Base PRNG seed.')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds per cell.')
_STEPS = flags.DEFINE_integer('steps', 300, 'Training steps.')
_WIDTHS = flags.DEFINE_list('widths', ['128'], 'Units per hidden layer.')

# Bumped when the computation of a cell changes, so old cells are not reused.
VERSION = 4
# --full: 4x the seeds (the detectable effect halves), denser learning-rate
# grids across both optimizers' dying regimes (the two lowest rates kept,
# so the too-low claim and the reference rate are the default's), and a
# deeper cause depth.
FULL = {
  'seeds': 20,
  'learning_rates': '0.01,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9'.split(','),
  'adam_learning_rates': '0.001,0.003,0.01,0.02,0.03,0.05,0.1'.split(','),
  'cause_depths': ['2', '8', '16'],
  'variant_bias_inits': [],
}


def _given(holder: flags.FlagHolder):
  """A flag's value: FULL's under --full, unless the flag was given."""
  return cli.full_or_given(holder, _FULL.value, FULL)


def check_flags() -> Settings:
  """Every flag, checked before any compute; UsageError on the first bad."""
  activations = cli.choices(
    'activations',
    model.activation_names('activations', _ACTS.value),
    (*ACTIVATIONS, *model.user_activations()),
  )
  optimizers = cli.choices('optimizers', _OPTIMIZERS.value, OPTIMIZERS)
  # -0 is 0: one cell key.
  sgd_lrs = cli.floats('learning_rates', _given(_LRS), low=0, low_open=True)
  sgd_biases = [b + 0.0 for b in cli.floats('bias_inits', _BIASES.value)]
  adam_lrs = cli.floats(
    'adam_learning_rates', _given(_ADAM_LRS), low=0, low_open=True
  )
  adam_biases = [
    b + 0.0 for b in cli.floats('adam_bias_inits', _ADAM_BIASES.value)
  ]
  flag = {
    'depths': cli.integers('depths', _DEPTHS.value),
    'cause_depths': cli.integers(
      'cause_depths', _given(_CAUSE_DEPTHS), nonempty=False
    ),
    'init_scales': cli.floats(
      'init_scales', _INIT_SCALES.value, low=0, low_open=True, nonempty=False
    ),
    'input_shifts': cli.floats(
      'input_shifts', _INPUT_SHIFTS.value, nonempty=False
    ),
    'widths': cli.integers('widths', _WIDTHS.value),
    **cli.values(_STEPS, _BATCH, _RECORD_EVERY, _SEED, _FULL),
    'seeds': _given(_SEEDS),
  }
  cli.record_schedule(flag, 'seeds', 'batch')
  if (given := _given(_VARIANT_BIASES)) is None:  # the default
    variant = [b for b in sgd_biases if b in VARIANT_BIASES]
  else:
    variant = cli.floats('variant_bias_inits', given, nonempty=False)
  extra = sorted(set(variant) - set(sgd_biases))
  cli.require(
    not extra,
    f'--variant_bias_inits: {",".join(f"{v:g}" for v in extra)} not in '
    '--bias_inits; accepted: some of --bias_inits, or empty (all)',
  )
  variant = [b + 0.0 for b in variant or sgd_biases]
  # The untreated values are every cell's baseline, not a treatment.
  cli.require(
    1.0 not in flag['init_scales'],
    '--init_scales: 1 is He, the baseline; give other scales (> 0)',
  )
  cli.require(
    0.0 not in flag['input_shifts'],
    '--input_shifts: 0 is the baseline; give nonzero shifts',
  )
  grids = {
    'sgd': Grid('sgd', tuple(sgd_lrs), tuple(sgd_biases), tuple(variant)),
    'adam': Grid(
      'adam', tuple(adam_lrs), tuple(adam_biases), tuple(adam_biases)
    ),
  }
  flag = {k: tuple(v) if isinstance(v, list) else v for k, v in flag.items()}
  return Settings(
    activations=tuple(activations),
    grids=tuple(grids[o] for o in optimizers),
    **flag,
    placement=sweep.placement(_OUTPUT_DIR.value),
  )


def write(settings: Settings, outcome: sweep.Outcome) -> dict:
  """Report, CSV, summary and figures of the stored cells; the verdicts."""
  key = ('optimizer', 'activation', 'depth', 'width', 'learning_rate')
  cells = outcome.by(*key, 'bias_init', *model.TREATMENTS)
  text, verdicts = dying_claims.report(cells, settings)
  text = report_lib.missing_text(outcome) + text
  tables.write_dying(outcome, cells, settings, text, verdicts)
  out = settings.placement.output_dir
  for opt in settings.optimizers:
    part = settings.for_optimizer(opt)
    mine = {k[1:]: c for k, c in cells.items() if k[0] == opt}
    figures.recovery_figure(mine, part)
    untreated = {k[:5]: c for k, c in mine.items() if k[5:] == model.UNTREATED}
    figures.dead_fraction_figures(untreated, part)
  half = verdicts['more than 50% dead cannot fit']
  figures.dead_accuracy_figure(half, f'{out}/dead_vs_accuracy.png')
  report_lib.echo(
    report_lib.claims_summary(
      'Dying ReLU', outcome, verdicts, f'{out}/report.md'
    )
  )
  return verdicts


def main(argv: Sequence[str]) -> int:
  groups = functools.partial(teacher.teacher_groups, version=VERSION)
  verdicts = sweep.run_and_report(
    argv, 'dying_relu', check_flags, groups, write
  )
  # Verdicts without 'held' (bias +0.01, which the literature calls
  # unclear, and the at-init or accuracy companions) decide nothing.
  if verdicts is None:  # no report from this run (a task of several)
    return cli.EXIT_HELD
  return cli.close(
    'dying_relu', {k: v.get('held') for k, v in verdicts.items()}
  )


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'dying_relu', all_cores=True)


if __name__ == '__main__':
  cli_main()
