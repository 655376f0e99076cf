"""The self-normalization test's calibration: its rates, and the claims
on them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from experiments import stats
from experiments.calibrate_self_normalization.settings import Settings
from jaxrelu import self_normalization


def _detectable_rate(n: int, claimed: float, direction: str, alpha: float):
  """The rate a one-sided exact binomial test at alpha rejects with power
  0.8 (the smallest above `claimed`, or the largest below it); None when no
  outcome of n trials could reject."""
  from scipy import stats as scipy_stats

  binom = scipy_stats.binom
  ks = np.arange(n + 1)
  if direction == 'at_most':
    reject = ks[binom.sf(ks - 1, n, claimed) <= alpha]  # k >= k*
    if not reject.size:
      return None
    k_star, lo, hi = reject[0], claimed, 1.0
    power = lambda r: binom.sf(k_star - 1, n, r)
  else:
    reject = ks[binom.cdf(ks, n, claimed) <= alpha]  # k <= k*
    if not reject.size:
      return None
    k_star, lo, hi = reject[-1], claimed, 0.0
    power = lambda r: binom.cdf(k_star, n, r)
  for _ in range(50):  # bisection between the claimed rate and the far end
    mid = 0.5 * (lo + hi)
    lo, hi = (lo, mid) if power(mid) >= 0.8 else (mid, hi)
  return float(hi)


def rate_claims(tests: Mapping[str, tuple], alpha: float = 0.05) -> dict:
  """Verdicts of claims about binomial rates, Holm-corrected within kinds.

  Args:
    tests: name -> (kind, k, n, claimed rate, direction). The claim is that
      the true rate is <= the claimed one (direction 'at_most') or >= it
      ('at_least'); the exact one-sided binomial test of its violation
      gives p.
    alpha: family-wise level within each kind.

  Returns:
    name -> {'verdict', 'k', 'n', 'rate', 'low', 'high', 'p', 'p_holm',
    'detectable'}: CONTRADICTED when the Holm-corrected p <= alpha;
    otherwise SUPPORTED when the run could have caught a clear violation
    (5x the claimed rate for 'at_most', half of it for 'at_least'), else
    NOT TESTABLE. `detectable` is the violating rate the run would have
    caught with probability 0.8 (at alpha / m, m claims of the kind).
  """
  from scipy import stats as scipy_stats

  p = {}
  for name, (_, k, n, claimed, direction) in tests.items():
    side = 'greater' if direction == 'at_most' else 'less'
    p[name] = float(scipy_stats.binomtest(k, n, claimed, side).pvalue)
  out = {}
  for kind in dict.fromkeys(t[0] for t in tests.values()):
    names = [name for name, t in tests.items() if t[0] == kind]
    adjusted = stats.holm({name: p[name] for name in names})
    for name in names:
      _, k, n, claimed, direction = tests[name]
      detectable = _detectable_rate(n, claimed, direction, alpha / len(names))
      if direction == 'at_most':  # could it catch 5x the claimed rate?
        testable = detectable is not None and detectable <= 5 * claimed
      else:  # could it catch half the claimed rate?
        testable = detectable is not None and detectable >= claimed / 2
      if adjusted[name] <= alpha:
        verdict = 'CONTRADICTED'
      elif not testable:
        verdict = f'NOT TESTABLE (too few runs, {n}, to see a violation)'
      else:
        verdict = 'SUPPORTED'
      out[name] = {
        'verdict': verdict,
        **stats.clopper_pearson(k, n),
        'p': p[name],
        'p_holm': adjusted[name],
        'detectable': detectable,
      }
  return out


def selu_test_rows(results: Sequence[dict], settings: Settings) -> list[dict]:
  """Each stored run's self-normalization verdict at every depth of
  settings.depths."""
  rows = []
  for c in results:
    for depth in settings.depths:
      v = self_normalization.check(
        np.asarray(c['means'])[:, :depth],
        np.asarray(c['stds'])[:, :depth],
        width=c['width'],
        batch=c['batch'],
        dropout_rate=c['dropout_rate'],
        level=settings.level,
        detectable=settings.detectable,
      )
      rows.append(
        {
          'setup': c['setup'],
          'width': c['width'],
          'depth': depth,
          'verdict': v.verdict,
          **{
            f'detectable_{p}': v.detectable[p]
            for p in ('scale', 'weight_variance')
          },
          't_mean': v.t['mean'],
          't_std': v.t['std'],
        }
      )
  return rows


def selu_bias_rows(results: Sequence[dict]) -> list[dict]:
  """Measured finite-width bias of the correct stacks against the model.

  Per (setup, width): each stack's average over the second half of its
  layers, less the fixed point (0, 1), averaged over stacks, with its
  standard error over stacks; beside `finite_size_model`'s bias.
  """
  stacks: dict[tuple, list] = {}
  for c in results:
    if c['scale'] == 1 and c['weight_variance'] == 1:
      key = (c['setup'], c['width'], c['batch'], c['dropout_rate'])
      for name in ('means', 'stds'):
        x = np.asarray(c[name])
        stacks.setdefault((*key, name), []).extend(
          x[:, x.shape[1] // 2 :].mean(axis=1) - (name == 'stds')
        )
  rows = []
  for (setup, width, batch, rate, name), values in stacks.items():
    model = self_normalization.finite_size_model(width, batch, rate)
    v = np.asarray(values)
    rows.append(
      {
        'setup': setup,
        'width': width,
        'statistic': name[:-1],
        'stacks': v.size,
        'measured': float(v.mean()),
        'se': float(v.std(ddof=1) / np.sqrt(v.size))
        if v.size > 1
        else math.nan,
        'model': model['bias_mean' if name == 'means' else 'bias_std'],
        'first_order_model': model[
          'bias_mean' if name == 'means' else 'bias_std_first_order'
        ],
      }
    )
  return rows


def simulate_bytes(width: int, batch: int, depth: int, seeds: int) -> int:
  """An upper bound on the memory of `self_normalization.simulate`
  (float32): per stack, 8 arrays of batch x width (a layer's input,
  product, activation, dropout draw and output) and 6 of width x width
  (the weights and their random bits), and two statistics per layer.
  Measured against XLA's analysis of the compiled program: 1.1-1.8x it
  (tests/experiments/test_memory.py)."""
  return 4 * seeds * (8 * batch * width + 6 * width * width + 2 * depth)
