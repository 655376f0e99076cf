"""compare_variants' tables: cells.csv, summary.json and report.md's tables."""

from __future__ import annotations

import numpy as np

from experiments import report, stats
from experiments.model import PRELU_INIT


def variant_tables(table) -> list[str]:
  """The report's lines before the claims: setup, tables and notes.

  Args:
    table: a `claims.Results` (its main block); its settings also
      holds the datasets' training-set sizes ('train_sizes').
  """
  settings = table.settings
  acts = list(settings.activations)
  seeds, steps = settings.splits * settings.seeds, settings.steps
  lines = [
    f'Plain MLPs of width {settings.width}. Main block: {settings.optimizer} '
    f'(lr {settings.learning_rate:g}), {steps} steps of batch '
    f'{settings.batch}, depths {", ".join(map(str, table.depths))}. '
    f'{settings.splits} repeated stratified 60/20/20 splits (split seeds '
    f'{settings.split_seed} to {settings.split_seed + settings.splits - 1}) x '
    f'{settings.seeds} seed(s), paired across activations. Accuracy is mean '
    '+- std over every network. Data: '
    + ', '.join(
      f'{ds} ({table.train_sizes[ds]} train)' for ds in table.datasets
    )
    + '; standardized with training statistics (MNIST-5k: pixels / 255, '
    f'one mean and std). selu: alpha dropout {settings.alpha_dropout_rate:g} '
    'after every hidden layer in training; selu_no_dropout: without.\n',
  ]
  rows = [(ds, depth) for ds in table.datasets for depth in table.depths]

  def by_activation(title, cell):
    """A (dataset, depth) x activation table; cell(metrics) is a string."""
    lines.extend(
      report.grid(
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
    f'Steps to training loss {settings.target_loss:g} (median; seeds '
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
              + ' '.join(report.fmt(v, '.2f') for v in s)
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
  if {'elu', 'celu'} <= set(acts) and settings.celu_alpha == 1.0:
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
    table: its `claims.Results`.
    claims: the Markdown lines of the claims, with their verdicts.
    verdicts: the verdicts by claim, for summary.json.
    extra: Markdown lines after the main tables (the SELU protocol's, the
      per-stratum differences).

  Returns:
    The report's text (without its title).
  """
  settings = table.settings
  out = settings.placement.output_dir
  text = '\n'.join(
    [
      *variant_tables(table),
      '',
      *extra,
      '## Claims\n',
      *claims,
    ]
  )
  text = report.missing_text(outcome) + text + '\n'
  meta = report.provenance(report.flag_values(settings))
  report.write_text(
    f'{out}/report.md',
    f'# ReLU variants on real data\n\n{text}\n'
    f'{report.provenance_markdown(meta)}',
  )
  rows = variant_rows(table)
  report.write_csv(f'{out}/results.csv', rows, VARIANT_FIELDS)
  report.write_json(
    f'{out}/summary.json',
    {
      'meta': meta,
      'missing_cells': len(outcome.missing),
      'train_sizes': table.train_sizes,
      'verdicts': verdicts,
      'groups': rows,
    },
  )
  return text
