"""A report of `activation_stats` as a Markdown table, or a plot over steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxrelu._unit_trace import DORMANT_TAU, UnitStats, short_source


def report_table(
  report: Mapping[str, UnitStats], *, tau: float = DORMANT_TAU
) -> str:
  """A Markdown table of a report: one row per site.

  Fractions are over all of a site's units (and iterations, in a scan).

  Args:
    report: from `activation_stats` (concrete, not traced).
    tau: the dormancy threshold.

  Returns:
    The table as a string.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxrelu import diagnostics
    >>> def f(x):
    ...   with jax.named_scope('layer'):
    ...     return jnp.maximum(x, 0.0)
    >>> _, report = diagnostics.activation_stats(f)(jnp.array([[1.0, -1.0]]))
    >>> print(diagnostics.report_table(report), end='')  # doctest: +ELLIPSIS
    | site | kind | units | dead | dormant (tau=0.1) | zero-grad | source |
    |---|---|---|---|---|---|---|
    | layer | maximum | 2 | 0.500 | 0.500 | 0.500 | <doctest ...>:3 |
  """
  lines = [
    f'| site | kind | units | dead | dormant (tau={tau:g}) '
    '| zero-grad | source |',
    '|---|---|---|---|---|---|---|',
  ]
  for name, s in report.items():
    units = int(np.prod(np.shape(s.active)[np.ndim(s.active) - s.unit_ndim :]))
    dead = float(np.mean(np.asarray(s.dead)))
    dormant = float(np.mean(np.asarray(s.dormant(tau))))
    zero = float(np.sum(s.zero_grad) / max(int(np.sum(s.examples)), 1))
    lines.append(
      f'| {name} | {s.kind} | {units} | {dead:.3f} | {dormant:.3f} '
      f'| {zero:.3f} | {short_source(s.source)} |'
    )
  return '\n'.join(lines) + '\n'


def plot_dead_fraction(
  steps: Sequence[int],
  history: Mapping[str, Sequence[float]],
  *,
  ax: Any = None,
  title: str = 'Dead units per layer',
) -> Any:
  """Plots the dead fraction of each site over training steps.

  matplotlib is imported here only (it is not a dependency of jaxrelu).

  Args:
    steps: the training steps at which the fractions were taken.
    history: site name -> dead fraction at each of those steps.
    ax: a matplotlib Axes to draw on; a new figure's when None.
    title: the axes title.

  Returns:
    The Axes (save with ``ax.figure.savefig(path)``).

  Raises:
    ValueError: if a site's history does not have one value per step.
  """
  for name, fractions in history.items():
    if len(fractions) != len(steps):
      raise ValueError(
        f'plot_dead_fraction: history[{name!r}] has {len(fractions)} '
        f'values for {len(steps)} steps.'
      )
  if ax is None:
    from matplotlib.figure import Figure

    ax = Figure(figsize=(6, 4), layout='constrained').add_subplot()
  for name, fractions in history.items():
    ax.plot(steps, fractions, label=name)
  ax.set_xlabel('step')
  ax.set_ylabel('dead fraction')
  ax.set_ylim(-0.02, 1.02)
  ax.set_title(title)
  ax.legend(fontsize='small')
  return ax
