"""One plotting style for every figure: fixed colours, honest marks.

Each activation (and variant of one) has one colour and line style in every
figure of every binary. Diverged seeds are drawn as diverged (a cross at
the step they went non-finite), never as dead. Log axes label their ticks.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from experiments.store import write_bytes_atomic

# Colour-blind-safe palette (Okabe-Ito, then Tableau extras); one per name.
_STYLES = {
  'relu': ('#000000', '-'),
  'leaky_relu': ('#E69F00', '-'),
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
