"""dying_relu's figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from experiments import plots
from experiments.dying_relu import effects as dying_effects
from experiments.dying_relu.settings import Settings


def heatmaps(
  grids: dict,
  xticks: Sequence[str],
  yticks: Sequence[str],
  path: str,
  *,
  xlabel: str,
  ylabel: str,
  label: str,
  title: str = '',
  diverged: dict | None = None,
  why_empty: str = 'no cell stored',
) -> str | None:
  """One [0, 1] heatmap per named grid (rows: y, columns: x).

  NaN cells are white ('not run') unless `diverged` (a boolean grid per
  name) marks them: those are hatched blue ('every seed diverged'). A
  grid with neither a value nor a diverged cell is left out; a legend
  names the two kinds of cell without a value. Returns the path, or None
  when no grid has anything to show (nothing written).
  """
  from matplotlib.patches import Patch, Rectangle

  plt = plots.pyplot()
  diverged = diverged or {}
  shown = {}
  for name, grid in grids.items():
    grid = np.asarray(grid, np.float64)
    gone = np.asarray(diverged.get(name, np.zeros(grid.shape, bool)))
    if np.isfinite(grid).any() or gone.any():
      shown[name] = grid, gone
  if not shown:
    return plots.save_figure(plt.figure(), path, why_empty=why_empty)
  fig, axes = plt.subplots(
    1,
    len(shown),
    figsize=(3 * len(shown) + 1, 3.6),
    squeeze=False,
    layout='constrained',
  )
  cmap = plt.get_cmap('magma').with_extremes(bad='white')
  kinds = set()
  for ax, (name, (grid, gone)) in zip(axes[0], shown.items(), strict=True):
    image = ax.imshow(
      np.ma.masked_invalid(grid),
      vmin=0,
      vmax=1,
      cmap=cmap,
      origin='lower',
    )
    for i, j in zip(*np.nonzero(gone), strict=True):
      ax.add_patch(
        Rectangle(
          (j - 0.5, i - 0.5),
          1,
          1,
          facecolor=plots.DIVERGED_COLOR,
          edgecolor='black',
          hatch='xx',
          lw=0.5,
          gid=plots.DIVERGED_CELL,
        )
      )
    kinds |= {'diverged'} if gone.any() else set()
    kinds |= {'not run'} if (~np.isfinite(grid) & ~gone).any() else set()
    ax.set_xticks(range(len(xticks)), xticks)
    ax.set_yticks(range(len(yticks)), yticks)
    ax.set(title=name, xlabel=xlabel)
  axes[0][0].set_ylabel(ylabel)
  fig.suptitle(title)
  fig.colorbar(image, ax=axes[0].tolist(), label=label)
  handles = []
  if 'not run' in kinds:
    handles.append(Patch(facecolor='white', edgecolor='0.4', label='not run'))
  if 'diverged' in kinds:
    handles.append(
      Patch(
        facecolor=plots.DIVERGED_COLOR,
        edgecolor='black',
        hatch='xx',
        label='every seed diverged',
      )
    )
  if handles:
    fig.legend(handles=handles, loc='outside lower center', ncols=2, fontsize=7)
  return plots.save_figure(fig, path, why_empty=why_empty)


def dead_fraction_figures(cells: dict, settings: Settings) -> None:
  """dying_relu's figures, into settings.placement.output_dir.

  For settings.grid.optimizer (a suffix of every file name): dead_heatmaps: the
  final dead fraction over (learning rate, bias init) per activation;
  dead_vs_step: ReLU's dead fraction in training, a cross where a seed
  diverged; dead_vs_lr: the final dead fraction against the learning rate
  (finite seeds) beside the fraction diverged. A heatmap tells cells not
  run (white) from cells where every seed diverged (hatched).

  Args:
    cells: stored cells by (activation, depth, width, lr, bias).
    settings: the binary's checked flags; the first depth and width are drawn.
  """
  out = settings.placement.output_dir
  lrs, biases = (
    sorted(settings.grid.learning_rates),
    sorted(settings.grid.bias_inits),
  )
  depth, width = settings.depths[0], settings.widths[0]
  grids, diverged = {}, {}
  for act in settings.activations:
    grids[act] = np.full((len(biases), len(lrs)), np.nan)
    diverged[act] = np.zeros((len(biases), len(lrs)), bool)
    for i, b in enumerate(biases):
      for j, lr in enumerate(lrs):
        if c := cells.get((act, depth, width, lr, b)):
          every = c['diverged'] == len(c['finite_seeds'])
          diverged[act][i, j] = every
          grids[act][i, j] = np.nan if every else c['final_dead_mean']
  heatmaps(
    grids,
    [f'{v:g}' for v in lrs],
    [f'{v:g}' for v in biases],
    f'{out}/dead_heatmaps_{settings.grid.optimizer}.png',
    xlabel='learning rate',
    ylabel='bias init',
    label='final dead fraction',
    title='final dead (ReLU) / never-positive (variants) fraction, mean over '
    'finite seeds',
    diverged=diverged,
  )
  lines = []
  for i, lr in enumerate(lrs):
    for j, b in enumerate(biases):
      if c := cells.get(('relu', depth, width, lr, b)):
        dead = np.asarray(c['dead_per_layer'], np.float64).mean(-1)
        mean, last = plots.while_finite(dead, c['loss'])
        steps = np.arange(dead.shape[1]) * c['record_every']
        # A diverged seed stops where its loss went non-finite: a cross at
        # its last finite dead fraction, never a climb to "all dead".
        gone = last < dead.shape[1] - 1
        stops = (steps[last[gone]], dead[gone, last[gone]])
        label = f'lr {lr:g}, bias {b:g}'
        dashes, marker = (
          plots.DASHES[j % len(plots.DASHES)],
          plots.MARKERS[j % len(plots.MARKERS)],
        )
        lines.append(
          plots.Line(
            steps, mean, label, f'C{i % 10}', dashes, marker, stops=stops
          )
        )
  panel = plots.Panel(
    lines,
    title='x: a seed diverged (it leaves the mean from there on)',
    xlabel='step',
    ylabel='ReLU dead fraction (mean over layers, finite seeds)',
  )
  plots.figure(
    [panel],
    f'{out}/dead_vs_step_{settings.grid.optimizer}.png',
    size=(6, 4),
    why_empty='no ReLU cell stored',
  )
  # The curve the experiment exists for: final dead fraction against the
  # learning rate (finite seeds), beside the fraction of seeds diverged.

  b0 = dying_effects.reference_bias(biases)
  dead_lines, diverged_lines = [], []
  for act in settings.activations:
    found = [
      (lr, c) for lr in lrs if (c := cells.get((act, depth, width, lr, b0)))
    ]
    if not found:
      continue
    x = [lr for lr, _ in found]
    mean = [c['final_dead_mean'] for _, c in found]
    std = [c['final_dead_std'] for _, c in found]
    gone = [c['diverged'] / len(c['finite_seeds']) for _, c in found]
    dead_lines.append(plots.Line.of(act, x, mean, yerr=std))
    diverged_lines.append(plots.Line.of(act, x, gone))
  plots.figure(
    [
      plots.Panel(
        dead_lines,
        title=f'bias {b0:g}: mean +- std over the seeds that stayed finite',
        xlabel='learning rate',
        ylabel='final dead (ReLU) / never-positive fraction',
        xlog=lrs,
      ),
      plots.Panel(
        diverged_lines,
        title='divergence, its own outcome',
        xlabel='learning rate',
        ylabel='fraction of seeds diverged',
        xlog=lrs,
        ylim=(-0.05, 1.05),
      ),
    ],
    f'{out}/dead_vs_lr_{settings.grid.optimizer}.png',
    size=(5.5, 4),
    why_empty=f'no cell stored at bias {b0:g}',
  )


def dead_accuracy_figure(test: dict, path: str) -> str | None:
  """dying_relu's ">50% dead" figure: probe accuracy against the final
  dead fraction, a point per run (finite seed x cell), an optimizer per
  colour and marker; the dotted line is a constant predictor. Returns
  path (None: no run, nothing written)."""
  lines = []
  for i, opt in enumerate(sorted({r[2] for r in test['runs']})):
    mine = [r for r in test['runs'] if r[2] == opt]
    xs, ys = [r[0] for r in mine], [r[1] for r in mine]
    marker = plots.MARKERS[i % len(plots.MARKERS)]
    lines.append(plots.Line(xs, ys, opt, f'C{i % 10}', 'none', marker))
  panel = plots.Panel(
    lines,
    title='ReLU runs; dotted: a constant predictor (majority class)',
    xlabel='final dead fraction (mean over layers)',
    ylabel='probe accuracy',
    hline=test['chance'],
  )
  return plots.figure(
    [panel], path, size=(6, 4), why_empty='no finite ReLU run'
  )


def recovery_figure(cells: dict, settings: Settings) -> str | None:
  """dying_relu's per-layer recovery figure, recovery_{optimizer}.png:
  of ReLU's units ever dead before the last record, the fraction alive at
  the last, per layer (pooled over every cell and finite seed, with its
  Clopper-Pearson 95% band), without and with revival; the first depth
  and width of the flags. Returns the path (None: no unit was ever dead,
  nothing written).

  Args:
    cells: stored cells by (activation, depth, width, lr, bias,
      *model.TREATMENTS).
    settings: the binary's checked flags, for one optimizer.
  """

  grid = dying_effects.DeadCells(
    cells, settings, settings.depths[0], settings.widths[0]
  )
  lines = []
  for i, revive in enumerate((False, True)):
    layers = [
      x for x in dying_effects.recovery(grid, revive)['layers'] if x['n']
    ]
    if layers:
      lines.append(
        plots.Line(
          [x['layer'] for x in layers],
          [x['rate'] for x in layers],
          'with revival (ReDo)' if revive else 'without revival',
          f'C{i}',
          marker=plots.MARKERS[i],
          band=([x['low'] for x in layers], [x['high'] for x in layers]),
        )
      )
  panel = plots.Panel(
    lines,
    title=f'ReLU, depth {grid.depth}, width {grid.width}',
    xlabel='hidden layer',
    ylabel='recovered fraction of ever-dead units',
    ylim=(-0.02, 1.02),
  )
  path = (
    f'{settings.placement.output_dir}/recovery_{settings.grid.optimizer}.png'
  )
  return plots.figure(
    [panel], path, size=(5, 4), why_empty='no ReLU unit was ever dead'
  )
