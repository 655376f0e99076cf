"""One plotting style for every figure: fixed styles, honest marks.

Each activation (and variant of one) has one colour, line style and marker
in every figure of every binary; series that would still look alike in one
figure (variants sharing an activation's colour) get shades of it and
markers of their own (`distinct_styles`, and `figure` for every figure it
draws). Diverged seeds are drawn as diverged (a cross at the step they went
non-finite), never as dead; a curve that leaves the axes gets a marker
where it leaves (`mark_exits`). Log axes label their ticks.

Every PNG goes through `save_figure`, which writes no empty figure (it logs
why instead) and checks the figure with `figure_problems`: no two series
of one panel alike, no legend entry twice, no panel without data, a marker
wherever a curve leaves the axes. With the environment variable
JAXRELU_FIGURE_LOG set to a file, it appends a JSON line per figure there
(path, written, problems): the tests read it after running a binary.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from collections.abc import Sequence

from absl import logging

from experiments.store import write_bytes_atomic
from jaxrelu import registry

# Colour-blind-safe palette (Okabe-Ito, then Tableau extras); one colour,
# line style and marker per name. Markers leave out the marks' shapes:
# 'x' (a seed diverged, a curve ends) and '^' 'v' (a curve leaves the axes).
_STYLES = {
  # Every activation of the library: its style in jaxrelu.registry.
  **{name: spec.style for name, spec in registry.ACTIVATIONS.items()},
  # The fixed-slope controls: leaky's colour, each its own dash.
  'leaky_relu_0.25': ('#E69F00', '--', 's'),
  'leaky_relu_0.229': ('#E69F00', ':', 's'),
  'leaky_relu_0.182': ('#E69F00', (0, (5, 1, 1, 1, 1, 1)), 's'),
  'prelu_channel': ('#56B4E9', '--', 'd'),
  'selu_no_dropout': ('#CC79A7', '--', 'p'),
  'selu, alpha dropout': ('#CC79A7', '-.', 'P'),
  'selu, standard dropout': ('#CC79A7', ':', 's'),
  'tanh': ('#0072B2', '-', '8'),
}
_EXTRA = ('#8C564B', '#BCBD22', '#17BECF', '#7F7F7F', '#F0E442', '#1F77B4')
MARKERS = ('o', 's', 'D', 'P', 'h', '*', 'p', 'd', '8', 'H', '<', '>')
DASHES = ('-', '--', ':', '-.', (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
# Blends towards white (> 0) or black (< 0) for the 2nd, 3rd, ... series
# sharing a colour in one figure.
_SHADES = (-0.35, 0.4, -0.6, 0.2, -0.75, -0.15)
# gid of lines that are marks (exits, divergence crosses) or references
# (a target, a chance level): neither is a data series.
MARK, REFERENCE = 'mark', 'reference'
# gid of the cells of a heatmap where every seed diverged.
DIVERGED_CELL = 'diverged'
DIVERGED_COLOR = '#56B4E9'
FIGURE_LOG_ENV = 'JAXRELU_FIGURE_LOG'
EMPTY = 'no data drawn'


def style(name: str) -> dict:
  """matplotlib keywords (color, linestyle, marker) fixed for a name.

  A name with a parenthetical note ('selu (lecun_normal)') is drawn as the
  bare name; a variant named after an activation ('selu, weight var 1.1/n')
  gets its colour and marker, dash-dotted.
  """
  name = name.split(' (')[0]
  if name in _STYLES:
    color, linestyle, marker = _STYLES[name]
  else:
    base = next((a for a in sorted(_STYLES, key=len)[::-1] if a in name), None)
    if base is not None:
      color, linestyle, marker = _STYLES[base][0], '-.', _STYLES[base][2]
    else:
      h = sum(map(ord, name))
      color, linestyle = _EXTRA[h % len(_EXTRA)], '-'
      marker = MARKERS[h % len(MARKERS)]
  return {'color': color, 'linestyle': linestyle, 'marker': marker}


def _shade(color, k: int) -> str:
  """The k-th (k >= 1) shade of a colour: blended towards white or black."""
  from matplotlib import colors

  t = _SHADES[(k - 1) % len(_SHADES)]
  rgb = colors.to_rgb(color)
  mixed = [c + t * (1 - c) if t > 0 else c * (1 + t) for c in rgb]
  return colors.to_hex(mixed)


def _style_key(s: dict) -> tuple:
  from matplotlib import colors

  color = colors.to_hex(s['color']) if s.get('color') is not None else None
  return (color, repr(s.get('linestyle', '-')), s.get('marker') or 'None')


def _free(s: dict, used: set) -> dict:
  """s, or s with the first marker (then dash) that makes it unused."""
  if _style_key(s) not in used:
    return s
  for dash in (s.get('linestyle', '-'), *DASHES):
    for marker in MARKERS:
      other = {**s, 'linestyle': dash, 'marker': marker}
      if _style_key(other) not in used:
        return other
  return s  # more series than styles: figure_problems will say so


def distinct_styles(names: Sequence[str], linestyle=None) -> list[dict]:
  """`style` of each name, made distinct within one figure.

  Names sharing a colour (variants of one activation) get shades of it
  and markers of their own; a (colour, line style, marker) that would
  still repeat moves to the next free marker.

  Args:
    names: the series, in drawing order (the first keeps its style).
    linestyle: one line style for every series (the figure uses the line
      style for another meaning), or None for each name's own.
  """
  out, used, markers = [], set(), {}
  for name in names:
    s = style(name)
    if linestyle is not None:
      s['linestyle'] = linestyle
    taken = markers.setdefault(s['color'], [])
    if taken:
      s['color'] = _shade(s['color'], len(taken))
      if s['marker'] in taken:
        s['marker'] = next((m for m in MARKERS if m not in taken), s['marker'])
    s = _free(s, used)
    taken.append(s['marker'])
    used.add(_style_key(s))
    out.append(s)
  return out


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
    ax.plot(
      steps,
      values,
      'x',
      markersize=7,
      mew=1.5,
      gid=MARK,
      label='_diverged',
      **kwargs,
    )


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


# ----------------------------------------------------------------------------
# What a figure shows, and the check of it.


def _is_capline(ax, line) -> bool:
  from matplotlib.container import ErrorbarContainer

  return any(
    line in c.lines[1]
    for c in ax.containers
    if isinstance(c, ErrorbarContainer)
  )


def _points(line):
  """A line's (x, y) as float arrays (NaN for what is not a number)."""
  import numpy as np

  def floats(values):
    try:
      return np.asarray(values, np.float64).ravel()
    except (TypeError, ValueError):
      return np.full(len(values), np.nan)

  return floats(line.get_xdata()), floats(line.get_ydata())


def series(ax) -> list:
  """The data series an axes draws: its visible lines with a finite point,
  less marks, references and error bar caps."""
  import numpy as np

  out = []
  for line in ax.get_lines():
    if not line.get_visible() or line.get_gid() in (MARK, REFERENCE):
      continue
    x, y = _points(line)
    if np.any(np.isfinite(x) & np.isfinite(y)) and not _is_capline(ax, line):
      out.append(line)
  return out


def line_style(line) -> tuple:
  """(colour, dash pattern, marker) of a drawn line."""
  from matplotlib import colors

  ls = line.get_linestyle()
  dashes = 'none' if ls in ('None', 'none', ' ', '') else None
  if dashes is None:
    pattern = line._unscaled_dash_pattern[1]  # '--' and (0, (5, 1)) alike
    dashes = 'solid' if pattern is None else tuple(round(d, 3) for d in pattern)
  marker = line.get_marker()
  marker = 'None' if marker in (None, 'None', 'none', '', ' ') else marker
  return colors.to_hex(line.get_color()), dashes, str(marker)


def _name(line) -> str:
  label = line.get_label()
  return (
    repr(label) if not label.startswith('_') else f'a line {line_style(line)}'
  )


def exits(x, y, ylim, log: bool) -> list[tuple[float, float, str]]:
  """Where a curve leaves the view or ends: (x, y, marker) to draw there.

  Each run of finite points outside ylim (at or below 0 on a log axis) is
  marked at its first point, on the edge it lies beyond ('^' above, 'v'
  below); a curve that stops (non-finite values after a finite point
  inside) gets an 'x' at its last finite point.
  """
  import numpy as np

  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  lo, hi = sorted(ylim)
  finite = np.isfinite(x) & np.isfinite(y)
  low = finite & ((y < lo) | (log & (y <= 0)))
  high = finite & (y > hi)
  inside = finite & ~low & ~high
  out = []
  for i in range(len(y)):
    before = i > 0 and (low[i - 1] if low[i] else high[i - 1])
    if (low[i] or high[i]) and not before:
      out.append((x[i], hi if high[i] else lo, '^' if high[i] else 'v'))
    if inside[i] and i + 1 < len(y) and not np.isfinite(y[i + 1]):
      out.append((x[i], y[i], 'x'))
  return out


def mark_exits(ax) -> None:
  """Marks (`exits`) where each series of ax leaves the view or ends.

  Call it once the axes has all its data, scales and limits: it fixes the
  y limits, so that the marks on their edges stay there.
  """
  ylim = ax.get_ylim()
  ax.set_ylim(ylim)
  log = ax.get_yscale() == 'log'
  for line in series(ax):
    points = exits(*_points(line), ylim, log)
    for x, y, marker in points:
      ax.plot(
        [x],
        [y],
        marker=marker,
        linestyle='none',
        color=line.get_color(),
        markersize=7,
        mew=1.5,
        clip_on=False,
        gid=MARK,
        label='_exit',
        scalex=False,
        scaley=False,
      )


def _has_data(ax) -> bool:
  import numpy as np

  if series(ax):
    return True
  for image in ax.images:
    if np.any(np.isfinite(np.ma.filled(image.get_array(), np.nan))):
      return True
  return any(p.get_gid() == DIVERGED_CELL for p in ax.patches)


def data_axes(fig) -> list:
  """The axes of a figure that show data (not colorbars, hidden or
  switched-off axes)."""
  return [
    ax
    for ax in fig.axes
    if ax.get_visible() and ax.axison and not hasattr(ax, '_colorbar')
  ]


def figure_problems(fig) -> list[str]:
  """What makes a figure misleading; [] when nothing does.

  EMPTY alone when no panel draws data. Otherwise, per panel: no data;
  two series (labelled or not) with one colour, line style and marker; a
  curve leaving the axes or ending without a mark there (`exits`; marks
  are lines with gid MARK); and across the figure: one label drawn in two
  styles or two labels in one style, and a legend with an entry twice.
  """
  import numpy as np

  panels = data_axes(fig)
  if not any(_has_data(ax) for ax in panels):
    return [EMPTY]
  problems, labels, clashed = [], {}, set()
  for n, ax in enumerate(panels):
    where = f'panel {n}' + (f' ({ax.get_title()})' if ax.get_title() else '')
    if not _has_data(ax):
      problems.append(f'{where}: no data')
    seen = {}
    for line in series(ax):
      key = line_style(line)
      if key in seen:
        clashed.add(key)
        problems.append(
          f'{where}: {_name(seen[key])} and {_name(line)} share colour, '
          f'line style and marker {key}'
        )
      seen[key] = line
      if not line.get_label().startswith('_'):
        labels.setdefault(line.get_label(), set()).add(key)
    marks = [_points(line) for line in ax.get_lines() if line.get_gid() == MARK]
    mx = np.concatenate([m[0] for m in marks]) if marks else np.zeros(0)
    my = np.concatenate([m[1] for m in marks]) if marks else np.zeros(0)
    log = ax.get_yscale() == 'log'
    for line in series(ax):
      for x, y, _ in exits(*_points(line), ax.get_ylim(), log):
        hit = np.isclose(mx, x, rtol=1e-9, atol=1e-12) & np.isclose(
          my, y, rtol=1e-9, atol=1e-12
        )
        if not hit.any():
          problems.append(
            f'{where}: {_name(line)} leaves the axes or ends at x={x:g} '
            'without a mark'
          )
  styles = {}
  for label, keys in labels.items():
    if len(keys) > 1:
      problems.append(f'{label!r} is drawn in {len(keys)} styles')
    for key in keys:
      styles.setdefault(key, []).append(label)
  for key, names in styles.items():
    if len(names) > 1 and key not in clashed:  # across panels
      problems.append(f'{names} share colour, line style and marker {key}')
  legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
  for legend in filter(None, legends):
    texts = [t.get_text() for t in legend.get_texts()]
    twice = sorted({t for t in texts if texts.count(t) > 1})
    if twice:
      problems.append(f'a legend lists {twice} more than once')
  return problems


def _log_figure(path: str, written: bool, problems: list[str]) -> None:
  """One JSON line in the file FIGURE_LOG_ENV names, if it is set."""
  log = os.environ.get(FIGURE_LOG_ENV)
  if log:
    with open(log, 'a') as f:
      entry = {'path': path, 'written': written, 'problems': problems}
      f.write(json.dumps(entry) + '\n')


def read_figure_log(log: str) -> list[dict]:
  """The entries `save_figure` appended to a FIGURE_LOG_ENV file."""
  if not os.path.exists(log):
    return []
  with open(log) as f:
    return [json.loads(line) for line in f if line.strip()]


def save_figure(
  fig, path: str, dpi: int = 110, *, why_empty: str = 'nothing to draw'
) -> str | None:
  """Writes a matplotlib figure to a PNG atomically and closes it.

  An empty figure (no panel draws data) is not written: one log line says
  which and `why_empty`, and a PNG of that name from an earlier run is
  removed (it would show other cells than the report). Other problems
  (`figure_problems`) are logged as a warning; the PNG is written.

  Returns:
    path, or None when nothing was written.
  """
  problems = figure_problems(fig)
  name = os.path.basename(path)
  if problems == [EMPTY]:
    pyplot().close(fig)
    stale = os.path.exists(path)
    if stale:
      os.remove(path)
    logging.info(
      '%s not written: %s%s',
      name,
      why_empty,
      ' (the one of an earlier run removed)' if stale else '',
    )
    _log_figure(path, False, [])
    return None
  if problems:
    logging.warning('%s: %s', name, '; '.join(problems))
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=dpi, bbox_inches='tight')
  pyplot().close(fig)
  write_bytes_atomic(path, buf.getvalue())
  _log_figure(path, True, problems)
  return path


@dataclasses.dataclass
class Line:
  """One curve of a panel.

  `yerr` draws error bars, `band` = (low, high) a shaded interval, and
  `stops` = (xs, ys) crosses where seeds diverged (the curve excludes them
  from there on). `hollow` draws open markers; `markevery` thins them
  (None: about ten along a long curve).
  """

  x: Sequence[float]
  y: Sequence[float]
  label: str | None = None
  color: str | None = None
  linestyle: str | tuple = '-'
  marker: str | None = None
  yerr: Sequence[float] | None = None
  band: tuple[Sequence[float], Sequence[float]] | None = None
  stops: tuple[Sequence[float], Sequence[float]] | None = None
  hollow: bool = False
  markevery: int | tuple[int, int] | None = None

  @classmethod
  def of(cls, name: str, x, y, **kwargs) -> Line:
    """A line in the fixed style of activation `name`, labelled by it."""
    return cls(x, y, **{'label': name, **style(name), **kwargs})

  def drawn(self) -> bool:
    """Whether the curve has a finite point."""
    import numpy as np

    x = np.asarray(self.x, np.float64)
    y = np.asarray(self.y, np.float64)
    return bool(np.any(np.isfinite(x) & np.isfinite(y)))


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


def _distinct_lines(panels: Sequence[Panel]) -> list[list[Line]]:
  """Each panel's lines, restyled where two would look alike.

  A label keeps one style across the figure; labelled lines differ from
  each other across the figure, unlabelled ones (a theory curve beside
  its data) within their panel. A clash moves the later line to the first
  free marker (then dash).
  """
  labelled, used = {}, set()
  for panel in panels:
    for line in panel.lines:
      if line.label and line.label not in labelled and line.drawn():
        s = _free(vars(line), used)
        labelled[line.label] = s
        used.add(_style_key(s))
  out = []
  for panel in panels:
    mine = {
      _style_key(labelled[ln.label])
      for ln in panel.lines
      if ln.label in labelled
    }
    lines = []
    for line in panel.lines:
      if line.label in labelled:
        s = labelled[line.label]
      else:
        s = _free(vars(line), used | mine)
        mine.add(_style_key(s))
      lines.append(
        dataclasses.replace(
          line, color=s['color'], linestyle=s['linestyle'], marker=s['marker']
        )
      )
    out.append(lines)
  return out


def figure(
  panels: Sequence[Panel],
  path: str,
  *,
  ncols: int | None = None,
  size: tuple[float, float] = (4.0, 3.2),
  suptitle: str | None = None,
  why_empty: str = 'nothing to draw',
) -> str | None:
  """Draws panels on a grid (row-major), writes the PNG.

  A panel without data is left blank ('not run'); a figure without any is
  not written (`save_figure`, which logs why_empty). Returns the path, or
  None when nothing was written.
  """
  plt = pyplot()
  if not any(ln.drawn() for p in panels for ln in p.lines):
    return save_figure(plt.figure(), path, why_empty=why_empty)
  ncols = ncols or len(panels)
  nrows = max(1, math.ceil(len(panels) / ncols))
  fig, axes = plt.subplots(
    nrows,
    ncols,
    figsize=(size[0] * ncols, size[1] * nrows),
    squeeze=False,
  )
  flat = axes.ravel()
  styled = _distinct_lines(panels)
  labelled = [
    i
    for i, lines in enumerate(styled)
    if any(ln.label and ln.drawn() for ln in lines)
  ]
  for i, (ax, panel) in enumerate(zip(flat, panels, strict=False)):
    lines = styled[i]
    if not any(ln.drawn() for ln in lines):
      ax.set_axis_off()
      ax.text(0.5, 0.5, f'{panel.title}\nnot run', ha='center', va='center')
      continue
    for k, line in enumerate(lines):
      if not line.drawn():
        continue
      kw = {
        'color': line.color,
        'linestyle': line.linestyle,
        'marker': line.marker,
        'lw': 1,
        'markersize': 4,
        'markevery': line.markevery,
      }
      if line.hollow:
        kw['markerfacecolor'] = 'none'
      n = len(line.x)
      if line.markevery is None and n > 12:
        step = math.ceil(n / 10)
        kw['markevery'] = ((3 * k) % step, step)  # staggered
      if line.yerr is not None:
        ax.errorbar(
          line.x, line.y, line.yerr, label=line.label, capsize=2, **kw
        )
      else:
        ax.plot(line.x, line.y, label=line.label, **kw)
      if line.band is not None:
        ax.fill_between(line.x, *line.band, color=line.color, alpha=0.2)
      if line.stops is not None:
        mark_diverged(ax, *line.stops, color=line.color)
    if panel.hline is not None:
      ax.axhline(panel.hline, color='grey', ls=':', lw=0.8, gid=REFERENCE)
    if panel.hspan is not None:
      ax.axhspan(*panel.hspan, color='0.85', zorder=0)
    if panel.xlog is not None:
      log_axis(ax, 'x', panel.xlog, panel.xlog_base)
    if panel.ylog:
      ax.set_yscale('log')
    if panel.ylim is not None:
      ax.set_ylim(panel.ylim)
    mark_exits(ax)
    ax.set_title(panel.title, fontsize=9)
    # Axis labels on the outer panels only (a y label also where it
    # differs from its row's first); one legend, on the last panel.
    if i // ncols == nrows - 1 or i + ncols >= len(panels):
      ax.set_xlabel(panel.xlabel)
    if i % ncols == 0 or panel.ylabel != panels[i - i % ncols].ylabel:
      ax.set_ylabel(panel.ylabel)
  if labelled:
    # Every label of the figure once, whichever panel drew it.
    entries = {}
    for ax in flat[: len(panels)]:
      for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
        entries.setdefault(label, handle)
    flat[labelled[-1]].legend(entries.values(), entries.keys(), fontsize=6)
  for ax in flat[len(panels) :]:
    ax.set_visible(False)
  if suptitle:
    fig.suptitle(suptitle)
  fig.tight_layout()
  return save_figure(fig, path, why_empty=why_empty)
