r"""Dying ReLU: what kills units, and what saves them, measured in training.

Claims under test, each reported with its seed spread:

1. A high learning rate raises the dead fraction of ReLU: tested as the
   trend over the whole learning-rate grid (per-seed slopes, seeds paired
   by construction), with divergence reported as its own outcome.
2. Bias -1 leaves whole layers dead from the start.
3. A small positive bias (0.01) helps. CS231n calls this unclear; we report
   what we measure.
4. Leaky, parametric, randomized and exponential variants have no dead
   units. For them we count units that are *never positive* on the probe
   set; unlike dead ReLUs, these still pass gradient.

MLPs (`--depths` x `--widths`, initialised by `jaxrelu.initializers` for
their activation, biases set to each of `--bias_inits`) are trained with
optax (`--optimizer`, `--learning_rates`) on a classification task labelled
by a seeded random teacher network: data generated in code, nothing
downloaded. Learning rates, bias inits and seeds share shapes, so they run
vectorized (`vmap`) in one compiled program per (activation, depth, width,
optimizer) group. When several devices are present, the vectorized axis is
spread over them.

The model is `experiments.model`'s MLP and trainer (plain SGD or Adam); a
cell is one (activation, depth, width, learning rate, bias init) over all
seeds, stored by `experiments.store` under a key of every setting, so a
rerun resumes and `--num_tasks`/`--report_only` split the sweep (see
`experiments.sweep`). Outputs: `cells/`, `cells.csv`, `summary.json`,
`report.md`, `dead_heatmaps.png`, `dead_vs_step.png` and `dead_vs_lr.png`
(the final dead fraction against the learning rate). Exit status: 0
when claims 1, 2 and 4 held, 1 when one did not, 2 for a usage error.

Usage (from the repo root; `jaxrelu-dying-relu` once installed):

  python -m experiments.dying_relu
  python -m experiments.dying_relu --learning_rates=0.01,1.0 --steps=1000
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from absl import flags

from experiments import cli, model, plots, stats, sweep
from experiments import report as report_lib

ACTIVATIONS = ('relu', 'leaky_relu', 'prelu', 'rrelu', 'elu', 'selu', 'celu')
OPTIMIZERS = ('sgd', 'adam')

_ACTS = flags.DEFINE_list('activations', list(ACTIVATIONS), 'Activations.')
_BATCH = flags.DEFINE_integer('batch', 128, 'Minibatch size.')
_BIASES = flags.DEFINE_list('bias_inits', ['-1', '0', '0.01'], 'Bias inits.')
_DEPTHS = flags.DEFINE_list('depths', ['4'], 'Hidden layers.')
# From 0.01 (nothing dies) across SGD's dying regime, where units die and
# seeds start to diverge (0.5-0.9 for the default MLP, BUILD_NOTES.md).
_LRS = flags.DEFINE_list(
  'learning_rates', ['0.01', '0.1', '0.3', '0.5', '0.7', '0.9'], 'LRs.'
)
_OPTIMIZER = flags.DEFINE_string('optimizer', 'sgd', f'One of {OPTIMIZERS}.')
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

  Cells where training diverged (non-finite loss) in any seed are listed
  and left out of the claims: their dead fraction measures divergence.
  """
  lines, verdicts, trends = [], {}, {}
  for at in stats.DeadCells.each(cells, flag):
    b0 = 0.0 if 0.0 in at.biases else at.biases[len(at.biases) // 2]
    trends[_tag(at, flag)] = stats.lr_trend(at, 'relu', b0)
  ps = {t: v['p'] if math.isfinite(v['p']) else 1.0 for t, v in trends.items()}
  adjusted = stats.holm(ps)
  for at in stats.DeadCells.each(cells, flag):
    lrs, biases = at.lrs, at.biases
    tag = _tag(at, flag)
    lines.append(f'## {tag}\n')
    if diverged := at.diverged():
      lines.append(
        'Diverged (non-finite loss in some seed; left out of the claims): '
        + ', '.join(f'{a} lr {lr:g} bias {b:g}' for a, lr, b in diverged)
        + '.\n'
      )
    # (1) learning rate: the trend over the whole grid, seeds paired.
    b0 = 0.0 if 0.0 in biases else biases[len(biases) // 2]
    trend = trends[tag]
    verdict = trend_verdict(trend, adjusted[tag])
    verdicts[f'{tag}: high lr raises ReLU dead fraction'] = {
      'verdict': verdict,
      'held': verdict == 'SUPPORTED',
      **{k: trend[k] for k in ('n', 'mean', 'ci', 'p', 'detectable')},
      'p_holm': adjusted[tag],
    }
    per_lr = '; '.join(
      f'lr {r["lr"]:g}: {r["dead_mean"]:.3f} +- {r["dead_std"]:.3f}'
      + (f' ({r["diverged"]}/{r["seeds"]} diverged)' if r['diverged'] else '')
      for r in trend['rows']
    )
    lo, hi = trend['ci']
    lines.append(
      f'1. **High learning rate.** ReLU, bias {b0:g}, final dead fraction '
      f'(mean +- std over the seeds that stayed finite): {per_lr}. Trend '
      f'(per-seed slope of the dead fraction per decade of learning rate, '
      f'seeds paired, {trend["n"]} seeds with >= 3 finite rates): '
      f'{trend["mean"]:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}), t-test p = '
      f'{trend["p"]:.2g} (Holm {adjusted[tag]:.2g}), Wilcoxon p = '
      f'{trend["wilcoxon_p"]:.2g}; a slope of {trend["detectable"]:.3f} was '
      f'detectable. **{verdict}.**'
    )
    # (2) negative bias, at initialisation.
    neg = [b for b in biases if b < 0]
    if neg and (c := at.get('relu', lrs[0], neg[0])):
      frac = c['initial_full_layer_dead']
      held = frac > 0.5
      verdicts[f'{tag}: negative bias leaves whole layers dead'] = held
      lines.append(
        f'2. **Bias {neg[0]:g}.** At initialisation a whole ReLU layer is '
        f'dead in {round(frac * c["seeds"])} of {c["seeds"]} seeds (mean '
        f'dead fraction {c["initial_dead_mean"]:.3f}; born dead in '
        f'{np.mean(c["born_dead"]):.0%}). Claim '
        f'{"HELD in most seeds" if held else "DID NOT HOLD in most seeds"}.'
      )
    # (3) bias +0.01 against 0, paired by seed.
    if 0.01 in biases and 0.0 in biases:
      changes = at.changes('relu', 0.01, 0.0)
      sig = [m for _, m, se in changes if math.isfinite(se) and abs(m) > 2 * se]
      helped, hurt = any(m < 0 for m in sig), any(m > 0 for m in sig)
      if helped and not hurt:
        verdict = 'HELPED'
      elif hurt and not helped:
        verdict = 'HURT'
      else:
        verdict = 'NO CLEAR EFFECT'
      verdicts[f'{tag}: bias 0.01 effect'] = verdict
      lines.append(
        '3. **Bias +0.01 vs 0** (paired change in the ReLU dead fraction, '
        'mean +- SE): '
        + '; '.join(f'lr {lr:g}: {m:+.3f} +- {se:.3f}' for lr, m, se in changes)
        + f'. Verdict: {verdict}.'
      )
    # (4) the variants, over the cells that trained.
    rows, all_zero = [], True
    for act in [a for a in flag['activations'] if a != 'relu']:
      if not (trained := at.trained(act)):
        rows.append(f'{act}: every cell diverged')
        continue
      worst = max(c['final_dead_mean'] for c in trained)
      all_zero &= worst == 0.0
      rows.append(f'{act} {worst:.3f}')
    if rows:
      relu = [c['final_dead_mean'] for c in at.trained('relu')]
      verdicts[f'{tag}: variants have no never-positive units'] = all_zero
      lines.append(
        '4. **Variants.** Worst final never-positive fraction over the '
        f'cells that trained: {", ".join(rows)} (ReLU dead, worst: '
        f'{max(relu or [math.nan]):.3f}). Claim "no dead units" '
        f'{"HELD" if all_zero else "DID NOT HOLD"}; never-positive units '
        'of these variants still pass gradient through their slope.'
      )
    lines.append('')
  return '\n'.join(lines) + '\n', verdicts


def _tag(at: stats.DeadCells, flag: dict) -> str:
  return f'depth {at.depth}, width {at.width}, {flag["optimizer"]}'


def trend_verdict(trend: dict, p_holm: float) -> str:
  """The learning-rate claim's verdict from `stats.lr_trend`."""
  if trend['n'] < 2:
    return (
      'NOT TESTABLE (fewer than 2 seeds stayed finite at 3 or more learning '
      'rates)'
    )
  if p_holm <= 0.05:
    return 'SUPPORTED' if trend['mean'] > 0 else 'CONTRADICTED'
  return (
    f'NOT TESTABLE (no significant trend; slopes below '
    f'{trend["detectable"]:.3f} per decade were not detectable)'
  )


def check_flags() -> dict:
  """Every flag, checked before any compute; UsageError on the first bad."""
  flag = {
    'activations': cli.choices('activations', _ACTS.value, ACTIVATIONS),
    'learning_rates': cli.floats(
      'learning_rates', _LRS.value, low=0, low_open=True
    ),
    'bias_inits': cli.floats('bias_inits', _BIASES.value),
    'depths': cli.integers('depths', _DEPTHS.value),
    'widths': cli.integers('widths', _WIDTHS.value),
    'optimizer': cli.choices('optimizer', [_OPTIMIZER.value], OPTIMIZERS)[0],
    **cli.values(_STEPS, _SEEDS, _BATCH, _RECORD_EVERY, _SEED),
  }
  cli.record_schedule(flag, 'seeds', 'batch')
  return {**flag, **sweep.placement(_OUTPUT_DIR.value)}


def write(flag: dict, outcome: sweep.Outcome) -> dict:
  """Report, CSV, summary and figures of the stored cells; the verdicts."""
  cells = outcome.by(
    'activation', 'depth', 'width', 'learning_rate', 'bias_init'
  )
  text, verdicts = report(cells, flag)
  text = report_lib.missing_text(outcome) + text
  report_lib.write_dying(outcome, cells, flag, text, verdicts)
  plots.dead_fraction_figures(cells, flag)
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
