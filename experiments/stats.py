"""Statistics for the verdicts: paired tests, binomial intervals, Holm."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
  """95% Wilson score interval for a binomial proportion."""
  p = successes / n
  denom = 1 + z * z / n
  center = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return max(0.0, center - half), min(1.0, center + half)


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict:
  """Paired comparison of a against b: mean difference and Wilcoxon test.

  Returns the number of pairs, the mean difference a - b with a t-based 95%
  confidence interval, wins/losses/ties of a, the direction of the
  signed-rank statistic (+1: a tends higher) and the two-sided Wilcoxon
  signed-rank p-value (zero differences dropped; p = 1 when all tie).
  """
  from scipy import stats

  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  d = d[np.isfinite(d)]
  n = d.size
  out = {
    'n': int(n),
    'mean': float(d.mean()) if n else math.nan,
    'ci': [math.nan, math.nan],
    'wins': int((d > 0).sum()),
    'losses': int((d < 0).sum()),
    'ties': int((d == 0).sum()),
    'direction': 0,
    'p': 1.0,
  }
  if n > 1:
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    out['ci'] = [out['mean'] - half, out['mean'] + half]
  nonzero = d[d != 0]
  if nonzero.size:
    ranks = stats.rankdata(np.abs(nonzero))
    r_plus = ranks[nonzero > 0].sum()
    r_minus = ranks[nonzero < 0].sum()
    out['direction'] = int(np.sign(r_plus - r_minus))
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # scipy's notes on ties and small n
      out['p'] = float(stats.wilcoxon(nonzero).pvalue)
  return out


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
  """Holm-Bonferroni adjusted p-values (family-wise error control).

  The i-th smallest of m p-values is multiplied by (m - i), made monotone
  non-decreasing in that order, and capped at 1.
  """
  order = sorted(p_values, key=lambda k: p_values[k])
  m, running, out = len(order), 0.0, {}
  for i, name in enumerate(order):
    running = max(running, min(1.0, (m - i) * p_values[name]))
    out[name] = running
  return out


def curve_metrics(cell: dict, target_loss: float) -> dict[str, np.ndarray]:
  """Per-seed scalars of one group (arrays of length seeds)."""
  val_loss = np.asarray(cell['val_loss'], np.float64)
  train_loss = np.asarray(cell['train_loss'], np.float64)
  every = cell['config']['record_every']
  # Early stopping: the checkpoint of least validation loss. A seed that
  # diverged keeps its best checkpoint from before the divergence.
  filled = np.where(np.isfinite(val_loss), val_loss, np.inf)
  best = np.argmin(filled, axis=1)
  rows = np.arange(val_loss.shape[0])
  reached = train_loss <= target_loss
  # Not reached within the budget: censored one record past the end.
  censored = cell['config']['steps'] + every
  steps_to_target = np.where(
    reached.any(1), np.argmax(reached, axis=1) * every, censored
  )
  test_acc = np.asarray(cell['test_acc'])
  diverged = ~np.isfinite(train_loss).all(1)
  train_acc = np.asarray(cell['train_acc'])
  return {
    'test_acc': test_acc[rows, best],
    # End-of-training values mean nothing after a divergence: NaN, which
    # the paired tests and the tables leave out.
    'final_test_acc': np.where(diverged, np.nan, test_acc[:, -1]),
    'final_train_acc': np.where(diverged, np.nan, train_acc[:, -1]),
    'gap': np.where(diverged, np.nan, train_acc[:, -1] - test_acc[:, -1]),
    'final_train_loss': np.where(diverged, np.nan, train_loss[:, -1]),
    'steps_to_target': steps_to_target.astype(np.float64),
    'reached': reached.any(1),
    'final_dead': np.where(
      diverged, np.nan, np.asarray(cell['dead'])[:, -1].mean(-1)
    ),
    'diverged': diverged,
  }


def verdict(test: dict, claimed_direction: int, alpha: float = 0.05) -> str:
  """SUPPORTED, CONTRADICTED or NOT SUPPORTED for a paired_test result."""
  if test['n'] == 0:
    return 'NOT TESTED'
  if test['p'] < alpha and test['direction'] == claimed_direction:
    return 'SUPPORTED'
  if test['p'] < alpha:
    return 'CONTRADICTED'
  return 'NOT SUPPORTED (no significant difference)'


def describe(test: dict) -> str:
  """A paired_test result in words."""
  lo, hi = test['ci']
  return (
    f'mean difference {test["mean"]:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}), '
    'wins/losses/ties '
    f'{test["wins"]}/{test["losses"]}/{test["ties"]} over {test["n"]} pairs, '
    f'Wilcoxon p = {test["p"]:.2g}'
  )


def nanmean(values, axis=None):
  """Mean over the finite seeds (NaN, silently, when there are none)."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    return np.nanmean(np.asarray(values, np.float64), axis=axis)


def mean_std(values, spec='.3f'):
  values = np.asarray(values, np.float64)
  return f'{values.mean():{spec}} +- {values.std():{spec}}'


class SeedTable:
  """Per-seed metrics by (dataset, activation, depth), with pairing."""

  def __init__(self, metrics: dict, datasets, depths):
    self.metrics = metrics
    self.datasets = list(datasets)
    self.depths = sorted(depths)

  def get(self, dataset, act, depth):
    return self.metrics.get((dataset, act, depth))

  def pairs(self, a, b, metric, datasets=None, depths=None):
    """Concatenated per-seed values of a and b where both ran."""
    xs, ys = [], []
    for ds in datasets or self.datasets:
      for depth in depths or self.depths:
        ma, mb = self.get(ds, a, depth), self.get(ds, b, depth)
        if ma is not None and mb is not None:
          xs.append(ma[metric])
          ys.append(mb[metric])
    if not xs:
      return np.zeros(0), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ys)

  def test(self, a, b, metric, **where):
    return paired_test(*self.pairs(a, b, metric, **where))
