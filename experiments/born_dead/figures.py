"""born_dead's figure."""

from __future__ import annotations

from collections.abc import Sequence

from experiments import plots


def born_dead_figure(
  rows: list[dict], inits: Sequence[str], path: str
) -> str | None:
  """P(born dead) against depth, a panel per init; returns path (None:
  no rows, nothing written).

  Args:
    rows: `network.born_dead_rows`.
    inits: the order of the panels (inits without rows are left out).
    path: where the PNG goes.
  """
  present = sorted({r['init'] for r in rows}, key=list(inits).index)
  widths = sorted({r['width'] for r in rows})
  # A panel per (activation, init) where the run had more than ReLU.
  activations = list(dict.fromkeys(r.get('activation') for r in rows))
  panels = []
  for act, init in [(a, i) for a in activations for i in present]:
    mine = [r for r in rows if r.get('activation') == act]
    lines = []
    for i, width in enumerate(widths):
      sel = [r for r in mine if r['init'] == init and r['width'] == width]
      depth = [r['depth'] for r in sel]
      band = ([r['ci95_low'] for r in sel], [r['ci95_high'] for r in sel])
      p = [r['probability'] for r in sel]
      color, marker = f'C{i % 10}', plots.MARKERS[i % len(plots.MARKERS)]
      lines.append(
        plots.Line(depth, p, f'width {width}', color, marker=marker, band=band)
      )
      closed = [r['closed_form'] for r in sel]
      lines.append(plots.Line(depth, closed, None, color, ':'))
    panels.append(
      plots.Panel(
        lines,
        title=init if act is None else f'{act}, {init}',
        xlabel='depth',
        ylabel='P(born dead), 95% CI; dotted: 1-(1-2^-N)^L',
        xlog=sorted({r['depth'] for r in rows}),
        ylim=(-0.02, 1.02),
      )
    )
  return plots.figure(panels, path, size=(4.2, 4), why_empty='no cell stored')
