r"""The ReLU variants compared on real data: four claims from the literature.

Claims under test, each with its seed spread and a paired test:

1. ELU converges faster and generalizes better than ReLU (Clevert et al.
   2016).
2. PReLU beats a fixed leaky slope, and its learned slopes shrink with depth
   (He et al. 2015).
3. RReLU regularizes on small data: a smaller train-test gap and a better
   test accuracy than a fixed leaky slope (Xu et al. 2015).
4. SELU trains deep plain feed-forward nets, where the others need
   normalization (Klambauer et al. 2017).

Data: scikit-learn's bundled UCI sets (digits, breast cancer, wine, iris),
which ship inside the wheel and load offline. Each is split once, stratified
60/20/20 into train/validation/test by `--split_seed`, and standardized with
the training statistics. Nothing is downloaded.

Models: plain MLPs (no normalization, no skip connections) with `--depths`
hidden layers of `--width` units. Hidden weights are truncated-normal
variance scaling with each activation's `jaxrelu.initializers.gain` (what
`initializers.for_activation` draws: He for the rectifiers, the unit-scale
rule for elu/celu, LeCun for selu); LeCun-normal read-out; zero biases.
`selu` gets alpha dropout (`--alpha_dropout_rate`) after every hidden
layer, as Klambauer et al. used it; `selu_no_dropout` is the same network
without it, which separates SELU from its regularizer. PReLU slopes start
at 0.25 (He et al.), one per layer (`prelu`) or per unit (`prelu_channel`).

Budget: every activation gets the same optimizer (`--optimizer`, default
Adam), learning rate, steps and minibatches. One compiled program per depth
trains every activation (`experiments.model`: the activation is an unbatched
`lax.switch` index) on every dataset and seed at once (`vmap`; datasets
padded to common shapes by `data.pad_datasets`). Hidden layers run under
`lax.scan`. Seed s draws the same initial noise and the same minibatches
for every activation (its key depends on dataset, depth and seed only), so
comparisons between activations are paired.

Measured per seed, every `--record_every` steps: loss and accuracy on the
full train, validation and test sets (evaluation mode), and the fraction of
hidden units never positive on the training set (dead, for relu and relu6).
Reported: test accuracy at the checkpoint of least validation loss (early
stopping; the headline), final test accuracy, the train-test gap, steps to
reach `--target_loss` on the training set, dead fractions, learned PReLU
slopes per layer. Each claim is decided by a two-sided Wilcoxon signed-rank
test on the paired per-seed differences, pooled over datasets and depths
(alpha 0.05, no correction for multiple tests; every p-value is printed).

A group is one (activation, depth) over all datasets; a cell is one
dataset of it, stored by `experiments.store` under a key of every setting,
so a rerun resumes and `--num_tasks`/`--report_only` split the sweep.
Outputs: `cells/`, `results.csv`, `summary.json`, `report.md`,
`accuracy_vs_depth.png`, `loss_curves.png` and `prelu_slopes.png`. Exit
status: 0 when every claim was SUPPORTED, 1 otherwise, 2 for a usage
error.

Usage (from the repo root; `jaxrelu-compare-variants` once installed):

  python -m experiments.compare_variants
  python -m experiments.compare_variants --datasets=iris \
      --activations=relu,elu --depths=2,8
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

import numpy as np
from absl import flags

from experiments import cli, data, model, plots, stats, sweep
from experiments import report as report_lib
from experiments.data import DATASETS
from experiments.model import ACTIVATIONS, OPTIMIZERS, PRELU_INIT

# Claim 3 is about small data: training sets under this many examples.
SMALL_TRAIN = 1000
ALPHA = 0.05
# Bumped when the computation of a cell changes, so old cells are not reused.
VERSION = 1

_DATASETS = flags.DEFINE_list(
  'datasets', list(DATASETS), f'Any of {",".join(DATASETS)}.'
)
_ACTS = flags.DEFINE_list(
  'activations', list(ACTIVATIONS), f'Any of {",".join(ACTIVATIONS)}.'
)
_DEPTHS = flags.DEFINE_list('depths', ['2', '8', '16', '32'], 'Hidden layers.')
_WIDTH = flags.DEFINE_integer('width', 32, 'Units per hidden layer.')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds per group (vectorized).')
_STEPS = flags.DEFINE_integer('steps', 400, 'Training steps.')
_BATCH = flags.DEFINE_integer('batch', 64, 'Minibatch size.')
_RECORD_EVERY = flags.DEFINE_integer('record_every', 20, 'Steps per record.')
_LR = flags.DEFINE_float('learning_rate', 0.001, 'Learning rate for all.')
_OPTIMIZER = flags.DEFINE_string(
  'optimizer', 'adam', f'One of {OPTIMIZERS} (sgd: momentum 0.9).'
)
_TARGET = flags.DEFINE_float(
  'target_loss', 0.1, 'Training loss that counts as converged.'
)
_DROPOUT = flags.DEFINE_float(
  'alpha_dropout_rate', 0.05, 'Alpha dropout rate for selu, in [0, 1).'
)
_CELU_ALPHA = flags.DEFINE_float('celu_alpha', 1.0, 'CELU alpha, > 0.')
_SPLIT_SEED = flags.DEFINE_integer('split_seed', 0, 'Seed of the data split.')
_SEED = flags.DEFINE_integer('seed', 0, 'Base PRNG seed for training.')
_OUTPUT_DIR = flags.DEFINE_string(
  'output_dir', 'results/compare_variants', 'Where results go.'
)


def group_key(dataset: str, activation: str, depth: int) -> str:
  return json.dumps([dataset, activation, depth])


def config_of(flag: dict) -> dict:
  """The flags that change what a group computes (not which groups run)."""
  keys = (
    'width',
    'seeds',
    'steps',
    'batch',
    'record_every',
    'learning_rate',
    'optimizer',
    'alpha_dropout_rate',
    'celu_alpha',
    'split_seed',
    'seed',
  )
  return {k: flag[k] for k in keys}


# ----------------------------------------------------------------------------
# Per-seed metrics and statistics.


class _Table(stats.SeedTable):
  """The stored cells' per-seed metrics, read by the report, CSV and plots."""

  def __init__(self, cells, flag):
    metrics = {
      (c['dataset'], c['activation'], c['depth']): stats.curve_metrics(
        c, flag['target_loss']
      )
      for c in cells.values()
    }
    super().__init__(metrics, flag['datasets'], flag['depths'])
    self.cells, self.flag = cells, flag

  def final_slopes(self, dataset, act, depth):
    """Per-layer final PReLU slope, mean over finite seeds; None if absent."""
    cell = self.cells.get(group_key(dataset, act, depth))
    if cell is None or 'slope_mean' not in cell:
      return None
    return stats.nanmean(np.asarray(cell['slope_mean'])[:, -1], axis=0)


def _claims(table: _Table, acts: list[str]) -> tuple[list[str], dict]:
  lines, out = [], {}
  small = [
    ds for ds in table.datasets if table.flag['train_sizes'][ds] < SMALL_TRAIN
  ]
  deepest = table.depths[-1]

  def record(name, test, direction, text):
    v = stats.verdict(test, direction, ALPHA)
    out[name] = {'verdict': v, **test}
    lines.append(f'- {text}: {stats.describe(test)}. **{v}.**')
    return v

  lines.append('### 1. ELU vs ReLU (Clevert et al. 2016)\n')
  if {'elu', 'relu'} <= set(acts):
    t = table.test('elu', 'relu', 'steps_to_target')
    record(
      'elu_converges_faster',
      t,
      -1,
      f'Steps to training loss {table.flag["target_loss"]:g}, ELU - ReLU '
      '(never reached counts as one record past the budget)',
    )
    t = table.test('elu', 'relu', 'test_acc')
    record(
      'elu_generalizes_better',
      t,
      +1,
      'Early-stopped test accuracy, ELU - ReLU',
    )
  else:
    lines.append('- Needs elu and relu in --activations.')
  lines.append('\n### 2. PReLU vs a fixed leaky slope (He et al. 2015)\n')
  if 'leaky_relu' in acts:
    for variant in ('prelu', 'prelu_channel'):
      if variant in acts:
        record(
          f'{variant}_beats_leaky_relu',
          table.test(variant, 'leaky_relu', 'test_acc'),
          +1,
          f'Early-stopped test accuracy, {variant} (slopes learned from '
          f'{PRELU_INIT}) - leaky_relu (slope 0.01)',
        )
  for variant in ('prelu', 'prelu_channel'):
    if variant not in acts:
      continue
    # Per network: mean slope of the deeper half minus the shallower half.
    deeper, shallower, moved = [], [], []
    for ds in table.datasets:
      for depth in table.depths:
        cell = table.cells.get(group_key(ds, variant, depth))
        if cell is None or depth < 4:
          continue
        s = np.asarray(cell['slope_mean'])[:, -1]  # (seeds, depth)
        deeper.append(s[:, depth // 2 :].mean(1))
        shallower.append(s[:, : depth // 2].mean(1))
        moved.append(np.abs(s - PRELU_INIT).ravel())
    if deeper:
      moved = np.concatenate(moved)
      moved = moved[np.isfinite(moved)]
      record(
        f'{variant}_slopes_shrink_with_depth',
        stats.paired_test(np.concatenate(deeper), np.concatenate(shallower)),
        -1,
        f'Learned {variant} slope, deeper half - shallower half of each '
        'network (depths >= 4; the slopes moved a mean '
        f'{moved.mean():.3f}, at most {moved.max():.3f}, from their initial '
        f'{PRELU_INIT})',
      )
  lines.append('\n### 3. RReLU on small data (Xu et al. 2015)\n')
  if {'rrelu', 'leaky_relu'} <= set(acts) and small:
    lines.append(
      f'Small datasets (under {SMALL_TRAIN} training examples): '
      f'{", ".join(small)}. Measured at the end of training, without early '
      'stopping (itself a regularizer). The comparator is leaky_relu '
      '(slope 0.01); RReLU evaluates with slope (1/8 + 1/3) / 2.\n'
    )
    record(
      'rrelu_smaller_gap',
      table.test('rrelu', 'leaky_relu', 'gap', datasets=small),
      -1,
      'Train - test accuracy gap, RReLU - leaky_relu',
    )
    record(
      'rrelu_better_test_accuracy',
      table.test('rrelu', 'leaky_relu', 'final_test_acc', datasets=small),
      +1,
      'Final test accuracy, RReLU - leaky_relu',
    )
  else:
    lines.append('- Needs rrelu, leaky_relu and a small dataset.')
  lines.append(
    f'\n### 4. SELU in deep plain nets (Klambauer et al. 2017), depth '
    f'{deepest}\n'
  )
  selus = [a for a in ('selu', 'selu_no_dropout') if a in acts]
  others = [a for a in acts if a not in ('selu', 'selu_no_dropout')]
  for selu in selus:
    tests = {}
    for other in others:
      tests[other] = t = table.test(selu, other, 'test_acc', depths=[deepest])
      lines.append(
        f'- Early-stopped test accuracy, {selu} - {other}: {stats.describe(t)}.'
      )
    beaten_by = [
      a for a, t in tests.items() if t['p'] < ALPHA and t['direction'] < 0
    ]
    beats = [
      a for a, t in tests.items() if t['p'] < ALPHA and t['direction'] > 0
    ]
    if beaten_by:
      v = 'CONTRADICTED'
    elif 'relu' in beats:
      v = 'SUPPORTED'
    else:
      v = 'NOT SUPPORTED (no significant difference)'
    out[f'{selu}_trains_deep_nets'] = {
      'verdict': v,
      'depth': deepest,
      'beats': beats,
      'beaten_by': beaten_by,
      'tests': tests,
    }
    lines.append(
      f'- **{selu}**: SUPPORTED if it beats relu at depth {deepest} and '
      'nothing beats it there; CONTRADICTED if anything beats it. It beats: '
      f'{", ".join(beats) or "none"}; beaten by: '
      f'{", ".join(beaten_by) or "none"}. **{v}.**\n'
    )
  if len(selus) == 2:
    lines.append(
      '- selu and selu_no_dropout are the same network and initialization; '
      'they differ only by alpha dropout in training.'
    )
  if not selus or not others:
    lines.append('- Needs selu or selu_no_dropout, and another activation.')
  return lines, out


def report(table: _Table) -> tuple[str, dict]:
  """Markdown report: tables, then each claim with numbers and verdict."""
  flag = table.flag
  acts = list(flag['activations'])
  seeds, steps = flag['seeds'], flag['steps']
  lines = [
    f'Plain MLPs of width {flag["width"]}, {flag["optimizer"]} '
    f'(lr {flag["learning_rate"]:g}), {steps} steps of batch '
    f'{flag["batch"]}, {seeds} seeds paired across activations, split seed '
    f'{flag["split_seed"]}. Accuracy is mean +- std over seeds. Data: '
    + ', '.join(
      f'{ds} ({flag["train_sizes"][ds]} train)' for ds in table.datasets
    )
    + '.\n',
  ]

  rows = [(ds, depth) for ds in table.datasets for depth in table.depths]

  def grid(title, cell):
    """A (dataset, depth) x activation table; cell(metrics) is a string."""
    lines.extend(
      report_lib.grid(
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

  grid('Early-stopped test accuracy', lambda m: stats.mean_std(m['test_acc']))
  grid(
    f'Steps to training loss {flag["target_loss"]:g} (median; seeds '
    'reaching it)',
    steps_cell,
  )
  grid(
    'Final dead (relu, relu6) / never-positive (others) fraction of hidden '
    'units, on the training set',
    lambda m: f'{stats.nanmean(m["final_dead"]):.3f}',
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
              f'- {a}, {ds}, depth {depth}: ' + ' '.join(f'{v:.2f}' for v in s)
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
      else 'No run diverged.'
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
      f'test accuracies in {sum(same)} of {len(same)} groups.'
    )
  claim_lines, verdicts = _claims(table, acts)
  lines += [
    '',
    '## Claims\n',
    'Paired per-seed differences pooled over datasets and depths unless '
    'stated; two-sided Wilcoxon signed-rank, alpha 0.05, no correction for '
    'the number of tests.\n',
    *claim_lines,
  ]
  return '\n'.join(lines) + '\n', verdicts


def write_outputs(outcome: sweep.Outcome, flag: dict) -> dict:
  """Report, CSV, summary and plots of the stored cells; the verdicts."""
  out = flag['output_dir']
  cells = {
    group_key(c['dataset'], c['activation'], c['depth']): c
    for c in outcome.results()
  }
  table = _Table(cells, flag)
  text, verdicts = report(table)
  text = sweep.missing_text(outcome) + text
  report_lib.write_text(
    f'{out}/report.md', '# ReLU variants on real data\n\n' + text
  )
  fields = [
    'dataset',
    'activation',
    'depth',
    'seeds',
    'test_acc_mean',
    'test_acc_std',
    'final_test_acc_mean',
    'final_train_acc_mean',
    'gap_mean',
    'final_train_loss_mean',
    'steps_to_target_median',
    'reached',
    'final_dead_mean',
    'diverged',
    'slopes',
  ]
  summary_rows = []
  for (ds, act, depth), m in table.metrics.items():
    slopes = table.final_slopes(ds, act, depth)
    row = {
      'dataset': ds,
      'activation': act,
      'depth': depth,
      'seeds': len(m['test_acc']),
      'test_acc_mean': m['test_acc'].mean(),
      'test_acc_std': m['test_acc'].std(),
      'final_test_acc_mean': stats.nanmean(m['final_test_acc']),
      'final_train_acc_mean': stats.nanmean(m['final_train_acc']),
      'gap_mean': stats.nanmean(m['gap']),
      'final_train_loss_mean': stats.nanmean(m['final_train_loss']),
      'steps_to_target_median': float(np.median(m['steps_to_target'])),
      'reached': int(m['reached'].sum()),
      'final_dead_mean': stats.nanmean(m['final_dead']),
      'diverged': int(m['diverged'].sum()),
      'slopes': '' if slopes is None else ' '.join(f'{v:.4f}' for v in slopes),
    }
    row = {
      k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()
    }
    summary_rows.append(row)
  report_lib.write_csv(f'{out}/results.csv', summary_rows, fields)
  report_lib.write_json(
    f'{out}/summary.json',
    {
      'meta': report_lib.provenance(
        {k: v for k, v in flag.items() if k not in ('train_sizes', 'task')}
      ),
      'missing_cells': len(outcome.missing),
      'train_sizes': flag['train_sizes'],
      'verdicts': verdicts,
      'groups': summary_rows,
    },
  )
  _plots(table)
  print(text)
  return verdicts


def _plots(table: _Table):
  flag, out = table.flag, table.flag['output_dir']
  acts, datasets, depths = flag['activations'], table.datasets, table.depths
  panels = []
  for ds in datasets:
    lines = []
    for a in acts:
      ran = [d for d in depths if table.get(ds, a, d) is not None]
      acc = [table.get(ds, a, d)['test_acc'] for d in ran]
      if ran:
        means, stds = [v.mean() for v in acc], [v.std() for v in acc]
        lines.append(plots.Line.of(a, ran, means, yerr=stds))
    panels.append(
      plots.Panel(
        lines,
        title=ds,
        xlabel='hidden layers',
        ylabel='test accuracy (early stopped), mean +- std',
        xlog=depths,
        xlog_base=2,
      )
    )
  plots.figure(panels, f'{out}/accuracy_vs_depth.png', size=(4, 3.4))
  panels = []
  for ds in datasets:
    for depth in depths:
      lines = []
      for a in acts:
        if c := table.cells.get(group_key(ds, a, depth)):
          loss = np.asarray(c['train_loss'], np.float64)
          mean, last = plots.while_finite(loss, loss[:, 1:])
          steps = np.arange(loss.shape[1]) * c['config']['record_every']
          gone = last < loss.shape[1] - 1
          stops = (steps[last[gone]], mean[last[gone]])
          lines.append(plots.Line.of(a, steps, mean, stops=stops))
      panels.append(
        plots.Panel(
          lines,
          title=f'{ds}, depth {depth}',
          xlabel='step',
          ylabel='train loss (x: a seed diverged)',
          hline=flag['target_loss'],
          ylog=True,
        )
      )
  plots.figure(
    panels, f'{out}/loss_curves.png', ncols=len(depths), size=(3.2, 2.6)
  )
  panels = []
  for ds in datasets:
    lines = [
      plots.Line(
        np.arange(1, depth + 1),
        slopes,
        label=f'{a}, depth {depth}',
        color=f'C{k}',
        linestyle='-' if a == 'prelu' else '--',
      )
      for a in ('prelu', 'prelu_channel')
      if a in acts
      for k, depth in enumerate(depths)
      if (slopes := table.final_slopes(ds, a, depth)) is not None
    ]
    panels.append(
      plots.Panel(
        lines,
        title=ds,
        xlabel='hidden layer',
        ylabel='learned slope (mean over seeds)',
        hline=PRELU_INIT,
      )
    )
  plots.figure(panels, f'{out}/prelu_slopes.png')


# ----------------------------------------------------------------------------
# Flags and main.


def check_flags() -> dict:
  """Every flag, checked before any compute; UsageError on the first bad."""
  flag = {
    'datasets': cli.choices('datasets', _DATASETS.value, DATASETS),
    'activations': cli.choices('activations', _ACTS.value, ACTIVATIONS),
    'depths': cli.integers('depths', _DEPTHS.value),
    'width': _WIDTH.value,
    'seeds': _SEEDS.value,
    'steps': _STEPS.value,
    'batch': _BATCH.value,
    'record_every': _RECORD_EVERY.value,
    'learning_rate': cli.number(
      'learning_rate', _LR.value, low=0, low_open=True
    ),
    'optimizer': cli.choices('optimizer', [_OPTIMIZER.value], OPTIMIZERS)[0],
    'target_loss': cli.number(
      'target_loss', _TARGET.value, low=0, low_open=True
    ),
    'alpha_dropout_rate': cli.number(
      'alpha_dropout_rate', _DROPOUT.value, low=0, high=1, high_open=True
    ),
    'celu_alpha': cli.number(
      'celu_alpha', _CELU_ALPHA.value, low=0, low_open=True
    ),
    'split_seed': _SPLIT_SEED.value,
    'seed': _SEED.value,
  }
  cli.at_least(flag, ('width', 'seeds', 'batch'))
  cli.record_schedule(flag)
  return {**flag, **sweep.placement(_OUTPUT_DIR.value)}


@functools.cache
def _padded(datasets: tuple[str, ...], split_seed: int):
  return data.pad_datasets(datasets, split_seed)


def groups(flag: dict) -> list[sweep.Group]:
  """One group per (activation, depth): every dataset and seed at once."""
  from sklearn import __version__ as sklearn_version

  config = config_of(flag)
  shared = {'config': config, 'sklearn': sklearn_version, 'version': VERSION}
  datasets = tuple(flag['datasets'])
  out = []
  for depth in flag['depths']:
    for act in flag['activations']:
      compute = lambda act=act, depth=depth: model.train_datasets(
        _padded(datasets, flag['split_seed']), datasets, act, depth, config
      )
      settings = [
        {**shared, 'dataset': ds, 'activation': act, 'depth': depth}
        for ds in datasets
      ]
      out.append(sweep.Group(f'{act} depth {depth}', settings, compute))
  return out


def main(argv: Sequence[str]) -> int:
  cli.no_arguments(argv)
  flag = check_flags()
  outcome = sweep.run_binary('compare_variants', flag, groups(flag))
  if outcome is None:
    return cli.EXIT_HELD
  padded = _padded(tuple(flag['datasets']), flag['split_seed'])
  flag['train_sizes'] = dict(
    zip(flag['datasets'], padded['train_size'].tolist(), strict=True)
  )
  verdicts = write_outputs(outcome, flag)
  held = all(v['verdict'] == 'SUPPORTED' for v in verdicts.values())
  return cli.EXIT_HELD if held else cli.EXIT_NOT_HELD


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'compare_variants')


if __name__ == '__main__':
  cli_main()
