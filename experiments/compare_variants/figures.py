"""compare_variants' figures."""

from __future__ import annotations

import numpy as np

from experiments import plots
from experiments.model import PRELU_INIT


def variant_figures(table) -> None:
  """compare_variants' figures of a `claims.Results`, into its
  output_dir.

  accuracy_vs_depth.png, loss_curves.png (crosses where seeds diverged) and
  prelu_slopes.png (not written when no PReLU cell is stored).
  """
  settings, out = table.settings, table.settings.placement.output_dir
  acts, datasets, depths = settings.activations, table.datasets, table.depths
  if not datasets:  # nothing stored yet (a --report_only before any task)
    return
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
  plots.figure(
    panels,
    f'{out}/accuracy_vs_depth.png',
    size=(4, 3.4),
    why_empty='no main-block cell stored',
  )
  panels = []
  for ds in datasets:
    for depth in depths:
      lines = []
      for a in acts:
        if c := table.cells.get((ds, a, depth)):
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
          hline=settings.target_loss,
          ylog=True,
        )
      )
  plots.figure(
    panels,
    f'{out}/loss_curves.png',
    ncols=len(depths),
    size=(3.2, 2.6),
    why_empty='no main-block cell stored',
  )
  panels = []
  for ds in datasets:
    lines = [
      plots.Line(
        np.arange(1, depth + 1),
        slopes,
        label=f'{a}, depth {depth}',
        color=f'C{k % 10}',
        linestyle='-' if a == 'prelu' else '--',
        marker=plots.MARKERS[(2 * k + j) % len(plots.MARKERS)],
      )
      for j, a in enumerate(('prelu', 'prelu_channel'))
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
  plots.figure(
    panels,
    f'{out}/prelu_slopes.png',
    why_empty='no PReLU in this run'
    if not {'prelu', 'prelu_channel'} & set(acts)
    else 'no PReLU cell stored',
  )
