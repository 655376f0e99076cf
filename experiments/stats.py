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
