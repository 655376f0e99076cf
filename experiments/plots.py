"""One plotting style for every figure: fixed colours, honest marks.

Each activation (and variant of one) has one colour and line style in every
figure of every binary. Diverged seeds are drawn as diverged (a cross at
the step they went non-finite), never as dead. Log axes label their ticks.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence

from experiments.store import write_bytes_atomic

# Colour-blind-safe palette (Okabe-Ito, then Tableau extras); one per name.
_STYLES = {
  'relu': ('#000000', '-'),
  'leaky_relu': ('#E69F00', '-'),
  # The fixed-slope controls: leaky's colour, each its own dash.
  'leaky_relu_0.25': ('#E69F00', '--'),
  'leaky_relu_0.229': ('#E69F00', ':'),
  'leaky_relu_0.182': ('#E69F00', (0, (5, 1, 1, 1, 1, 1))),
  'prelu': ('#56B4E9', '-'),
  'prelu_channel': ('#56B4E9', '--'),
  'rrelu': ('#009E73', '-'),
  'elu': ('#D55E00', '-'),
  'celu': ('#D55E00', ':'),
  'relu6': ('#999999', '-'),
  'selu': ('#CC79A7', '-'),
  'selu_no_dropout': ('#CC79A7', '--'),
  'selu, alpha dropout': ('#CC79A7', '-.'),
  'tanh': ('#0072B2', '-'),
}
_EXTRA = ('#8C564B', '#BCBD22', '#17BECF', '#7F7F7F', '#F0E442', '#1F77B4')


def style(name: str) -> dict:
  """matplotlib keywords (color, linestyle) fixed for an activation name.

  A name with a parenthetical note ('selu (lecun_normal)') is drawn as the
  bare name; a variant named after an activation ('selu, weight var 1.1/n')
  gets its colour, dash-dotted.
  """
  name = name.split(' (')[0]
  if name in _STYLES:
    color, linestyle = _STYLES[name]
  else:
    base = next((a for a in sorted(_STYLES, key=len)[::-1] if a in name), None)
    if base is not None:
      color, linestyle = _STYLES[base][0], '-.'
    else:
      color = _EXTRA[sum(map(ord, name)) % len(_EXTRA)]
      linestyle = '-'
  return {'color': color, 'linestyle': linestyle}


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display needed)."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  return plt


def log_axis(ax, axis: str, ticks: Sequence[float], base: float = 10) -> None:
  """A log axis labelled at exactly the given ticks, no minor labels."""
  from matplotlib import ticker

  getattr(ax, f'set_{axis}scale')('log', base=base)
  target = ax.xaxis if axis == 'x' else ax.yaxis
  target.set_major_locator(ticker.FixedLocator(list(ticks)))
  target.set_major_formatter(ticker.FixedFormatter([f'{t:g}' for t in ticks]))
  target.set_minor_formatter(ticker.NullFormatter())


def mark_diverged(ax, steps, values, **kwargs) -> None:
  """Crosses where seeds diverged: (step, value at which the curve stops)."""
  if len(steps):
    ax.plot(steps, values, 'x', markersize=7, mew=1.5, **kwargs)


def while_finite(values, losses):
  """Per-seed curves cut where training diverged, and where each stops.

  Args:
    values: (seeds, records + 1) metric, record 0 at initialisation.
    losses: (seeds, records) training loss of the chunk before each later
      record; a seed counts as diverged from its first non-finite chunk on.

  Returns:
    (mean over the seeds still finite at each record, NaN where none is;
    per seed, the index of its last finite record).
  """
  import numpy as np

  values = np.asarray(values, np.float64)
  finite = np.cumprod(np.isfinite(np.asarray(losses, np.float64)), 1)
  alive = np.concatenate([np.ones((values.shape[0], 1)), finite], 1) > 0
  count = alive.sum(0)
  total = np.where(alive, values, 0.0).sum(0)
  mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
  return mean, alive.sum(1) - 1


def save_figure(fig, path: str, dpi: int = 110) -> str:
  """Writes a matplotlib figure to a PNG atomically, closes it, returns path."""
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=dpi, bbox_inches='tight')
  pyplot().close(fig)
  write_bytes_atomic(path, buf.getvalue())
  return path


@dataclasses.dataclass
class Line:
  """One curve of a panel.

  `yerr` draws error bars, `band` = (low, high) a shaded interval, and
  `stops` = (xs, ys) crosses where seeds diverged (the curve excludes them
  from there on).
  """

  x: Sequence[float]
  y: Sequence[float]
  label: str | None = None
  color: str | None = None
  linestyle: str = '-'
  marker: str | None = None
  yerr: Sequence[float] | None = None
  band: tuple[Sequence[float], Sequence[float]] | None = None
  stops: tuple[Sequence[float], Sequence[float]] | None = None

  @classmethod
  def of(cls, name: str, x, y, **kwargs) -> Line:
    """A line in the fixed style of activation `name`, labelled by it."""
    return cls(x, y, **{'label': name, **style(name), **kwargs})


@dataclasses.dataclass
class Panel:
  """One subplot: its lines, labels, reference line/band and axis scales."""

  lines: list[Line]
  title: str = ''
  xlabel: str = ''
  ylabel: str = ''
  hline: float | None = None
  hspan: tuple[float, float] | None = None
  xlog: Sequence[float] | None = None  # log x axis labelled at these ticks
  xlog_base: float = 10
  ylog: bool = False
  ylim: tuple[float, float] | None = None


def figure(
  panels: Sequence[Panel],
  path: str,
  *,
  ncols: int | None = None,
  size: tuple[float, float] = (4.0, 3.2),
  suptitle: str | None = None,
) -> str:
  """Draws panels on a grid (row-major), writes the PNG; returns path."""
  plt = pyplot()
  ncols = ncols or len(panels)
  nrows = max(1, math.ceil(len(panels) / ncols))
  fig, axes = plt.subplots(
    nrows,
    ncols,
    figsize=(size[0] * ncols, size[1] * nrows),
    squeeze=False,
  )
  flat = axes.ravel()
  labelled = [
    i for i, p in enumerate(panels) if any(ln.label for ln in p.lines)
  ]
  for i, (ax, panel) in enumerate(zip(flat, panels, strict=False)):
    for line in panel.lines:
      kw = {'color': line.color, 'linestyle': line.linestyle, 'lw': 1}
      if line.yerr is not None:
        ax.errorbar(
          line.x, line.y, line.yerr, label=line.label, capsize=2, **kw
        )
      else:
        ax.plot(line.x, line.y, marker=line.marker, label=line.label, **kw)
      if line.band is not None:
        ax.fill_between(line.x, *line.band, color=line.color, alpha=0.2)
      if line.stops is not None:
        mark_diverged(ax, *line.stops, color=line.color)
    if panel.hline is not None:
      ax.axhline(panel.hline, color='grey', ls=':', lw=0.8)
    if panel.hspan is not None:
      ax.axhspan(*panel.hspan, color='0.85')
    if panel.xlog is not None:
      log_axis(ax, 'x', panel.xlog, panel.xlog_base)
    if panel.ylog:
      ax.set_yscale('log')
    if panel.ylim is not None:
      ax.set_ylim(panel.ylim)
    ax.set_title(panel.title, fontsize=9)
    # Axis labels on the outer panels only; one legend, on the last panel.
    if i // ncols == nrows - 1 or i + ncols >= len(panels):
      ax.set_xlabel(panel.xlabel)
    if i % ncols == 0:
      ax.set_ylabel(panel.ylabel)
    if labelled and i == labelled[-1]:
      ax.legend(fontsize=6)
  for ax in flat[len(panels) :]:
    ax.set_visible(False)
  if suptitle:
    fig.suptitle(suptitle)
  fig.tight_layout()
  return save_figure(fig, path)


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
) -> str:
  """One [0, 1] heatmap per named grid (rows: y, columns: x); NaN is white."""
  plt = pyplot()
  fig, axes = plt.subplots(
    1, len(grids), figsize=(3 * len(grids), 3), squeeze=False
  )
  for ax, (name, grid) in zip(axes[0], grids.items(), strict=True):
    image = ax.imshow(grid, vmin=0, vmax=1, cmap='magma', origin='lower')
    ax.set_xticks(range(len(xticks)), xticks)
    ax.set_yticks(range(len(yticks)), yticks)
    ax.set(title=name, xlabel=xlabel)
  axes[0][0].set_ylabel(ylabel)
  fig.suptitle(title)
  fig.colorbar(image, ax=axes[0].tolist(), label=label)
  return save_figure(fig, path)


# ----------------------------------------------------------------------------
# The binaries' figures.


def variant_figures(table) -> None:
  """compare_variants' figures of a `stats.CurveTable`, into its output_dir.

  accuracy_vs_depth.png, loss_curves.png (crosses where seeds diverged) and
  prelu_slopes.png.
  """
  import numpy as np

  from experiments.model import PRELU_INIT

  flag, out = table.flag, table.flag['output_dir']
  acts, datasets, depths = flag['activations'], table.datasets, table.depths
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
        lines.append(Line.of(a, ran, means, yerr=stds))
    panels.append(
      Panel(
        lines,
        title=ds,
        xlabel='hidden layers',
        ylabel='test accuracy (early stopped), mean +- std',
        xlog=depths,
        xlog_base=2,
      )
    )
  figure(panels, f'{out}/accuracy_vs_depth.png', size=(4, 3.4))
  panels = []
  for ds in datasets:
    for depth in depths:
      lines = []
      for a in acts:
        if c := table.cells.get((ds, a, depth)):
          loss = np.asarray(c['train_loss'], np.float64)
          mean, last = while_finite(loss, loss[:, 1:])
          steps = np.arange(loss.shape[1]) * c['config']['record_every']
          gone = last < loss.shape[1] - 1
          stops = (steps[last[gone]], mean[last[gone]])
          lines.append(Line.of(a, steps, mean, stops=stops))
      panels.append(
        Panel(
          lines,
          title=f'{ds}, depth {depth}',
          xlabel='step',
          ylabel='train loss (x: a seed diverged)',
          hline=flag['target_loss'],
          ylog=True,
        )
      )
  figure(panels, f'{out}/loss_curves.png', ncols=len(depths), size=(3.2, 2.6))
  panels = []
  for ds in datasets:
    lines = [
      Line(
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
      Panel(
        lines,
        title=ds,
        xlabel='hidden layer',
        ylabel='learned slope (mean over seeds)',
        hline=PRELU_INIT,
      )
    )
  figure(panels, f'{out}/prelu_slopes.png')


def dead_fraction_figures(cells: dict, flag: dict) -> None:
  """dying_relu's figures, into flag['output_dir'].

  For flag['optimizer'] (a suffix of every file name): dead_heatmaps: the
  final dead fraction over (learning rate, bias init) per activation;
  dead_vs_step: ReLU's dead fraction in training, a cross where a seed
  diverged; dead_vs_lr: the final dead fraction against the learning rate
  (finite seeds) beside the fraction diverged.

  Args:
    cells: stored cells by (activation, depth, width, lr, bias).
    flag: the binary's checked flags; the first depth and width are drawn.
  """
  import numpy as np

  out = flag['output_dir']
  lrs, biases = sorted(flag['learning_rates']), sorted(flag['bias_inits'])
  depth, width = flag['depths'][0], flag['widths'][0]
  grids = {}
  for act in flag['activations']:
    grids[act] = np.full((len(biases), len(lrs)), np.nan)
    for i, b in enumerate(biases):
      for j, lr in enumerate(lrs):
        if c := cells.get((act, depth, width, lr, b)):
          grids[act][i, j] = c['final_dead_mean']
  heatmaps(
    grids,
    [f'{v:g}' for v in lrs],
    [f'{v:g}' for v in biases],
    f'{out}/dead_heatmaps_{flag["optimizer"]}.png',
    xlabel='learning rate',
    ylabel='bias init',
    label='final dead fraction',
    title='final dead (ReLU) / never-positive (variants) fraction, mean over '
    'finite seeds; white: not run, or every seed diverged',
  )
  lines = []
  for i, lr in enumerate(lrs):
    for dashes, b in zip(('-', '--', ':', '-.'), biases, strict=False):
      if c := cells.get(('relu', depth, width, lr, b)):
        dead = np.asarray(c['dead_per_layer'], np.float64).mean(-1)
        mean, last = while_finite(dead, c['loss'])
        steps = np.arange(dead.shape[1]) * c['record_every']
        # A diverged seed stops where its loss went non-finite: a cross at
        # its last finite dead fraction, never a climb to "all dead".
        gone = last < dead.shape[1] - 1
        stops = (steps[last[gone]], dead[gone, last[gone]])
        label = f'lr {lr:g}, bias {b:g}'
        lines.append(Line(steps, mean, label, f'C{i}', dashes, stops=stops))
  panel = Panel(
    lines,
    title='x: a seed diverged (it leaves the mean from there on)',
    xlabel='step',
    ylabel='ReLU dead fraction (mean over layers, finite seeds)',
  )
  figure([panel], f'{out}/dead_vs_step_{flag["optimizer"]}.png', size=(6, 4))
  # The curve the experiment exists for: final dead fraction against the
  # learning rate (finite seeds), beside the fraction of seeds diverged.
  from experiments import stats

  b0 = stats.reference_bias(biases)
  dead_lines, diverged_lines = [], []
  for act in flag['activations']:
    found = [
      (lr, c) for lr in lrs if (c := cells.get((act, depth, width, lr, b0)))
    ]
    if not found:
      continue
    x = [lr for lr, _ in found]
    mean = [c['final_dead_mean'] for _, c in found]
    std = [c['final_dead_std'] for _, c in found]
    gone = [c['diverged'] / len(c['finite_seeds']) for _, c in found]
    dead_lines.append(Line.of(act, x, mean, yerr=std, marker='o'))
    diverged_lines.append(Line.of(act, x, gone, marker='o'))
  figure(
    [
      Panel(
        dead_lines,
        title=f'bias {b0:g}: mean +- std over the seeds that stayed finite',
        xlabel='learning rate',
        ylabel='final dead (ReLU) / never-positive fraction',
        xlog=lrs,
      ),
      Panel(
        diverged_lines,
        title='divergence, its own outcome',
        xlabel='learning rate',
        ylabel='fraction of seeds diverged',
        xlog=lrs,
        ylim=(-0.05, 1.05),
      ),
    ],
    f'{out}/dead_vs_lr_{flag["optimizer"]}.png',
    size=(5.5, 4),
  )


def born_dead_figure(rows: list[dict], inits: Sequence[str], path: str) -> str:
  """P(born dead) against depth, a panel per init; returns path.

  Args:
    rows: `stats.born_dead_rows`.
    inits: the order of the panels (inits without rows are left out).
    path: where the PNG goes.
  """
  present = sorted({r['init'] for r in rows}, key=list(inits).index)
  widths = sorted({r['width'] for r in rows})
  panels = []
  for init in present:
    lines = []
    for i, width in enumerate(widths):
      sel = [r for r in rows if r['init'] == init and r['width'] == width]
      depth = [r['depth'] for r in sel]
      band = ([r['ci95_low'] for r in sel], [r['ci95_high'] for r in sel])
      p = [r['probability'] for r in sel]
      lines.append(
        Line(depth, p, f'width {width}', f'C{i}', marker='o', band=band)
      )
      closed = [r['closed_form'] for r in sel]
      lines.append(Line(depth, closed, None, f'C{i}', ':'))
    panels.append(
      Panel(
        lines,
        title=init,
        xlabel='depth',
        ylabel='P(born dead), 95% CI; dotted: 1-(1-2^-N)^L',
        xlog=sorted({r['depth'] for r in rows}),
        ylim=(-0.02, 1.02),
      )
    )
  return figure(panels, path, size=(4.2, 4))


def dead_accuracy_figure(test: dict, path: str) -> str:
  """dying_relu's ">50% dead" figure: probe accuracy against the final
  dead fraction, a point per run (finite seed x cell), an optimizer per
  colour; the dotted line is a constant predictor. Returns path."""
  lines = []
  for i, opt in enumerate(sorted({r[2] for r in test['runs']})):
    mine = [r for r in test['runs'] if r[2] == opt]
    xs, ys = [r[0] for r in mine], [r[1] for r in mine]
    lines.append(Line(xs, ys, opt, f'C{i}', linestyle='none', marker='o'))
  panel = Panel(
    lines,
    title='ReLU runs; dotted: a constant predictor (majority class)',
    xlabel='final dead fraction (mean over layers)',
    ylabel='probe accuracy',
    hline=test['chance'],
  )
  return figure([panel], path, size=(6, 4))


def recovery_figure(cells: dict, flag: dict) -> str:
  """dying_relu's per-layer recovery figure, recovery_{optimizer}.png:
  of ReLU's units ever dead before the last record, the fraction alive at
  the last, per layer (pooled over every cell and finite seed, with its
  Clopper-Pearson 95% band), without and with revival; the first depth
  and width of the flags. Returns the path.

  Args:
    cells: stored cells by (activation, depth, width, lr, bias,
      *stats.TREATMENTS).
    flag: the binary's checked flags, for one optimizer.
  """
  from experiments import stats

  grid = stats.DeadCells(cells, flag, flag['depths'][0], flag['widths'][0])
  lines = []
  for i, revive in enumerate((False, True)):
    layers = [x for x in stats.recovery(grid, revive)['layers'] if x['n']]
    if layers:
      lines.append(
        Line(
          [x['layer'] for x in layers],
          [x['rate'] for x in layers],
          'with revival (ReDo)' if revive else 'without revival',
          f'C{i}',
          marker='o',
          band=([x['low'] for x in layers], [x['high'] for x in layers]),
        )
      )
  panel = Panel(
    lines,
    title=f'ReLU, depth {grid.depth}, width {grid.width}',
    xlabel='hidden layer',
    ylabel='recovered fraction of ever-dead units',
    ylim=(-0.02, 1.02),
  )
  path = f'{flag["output_dir"]}/recovery_{flag["optimizer"]}.png'
  return figure([panel], path, size=(5, 4))
