"""Statistics for the verdicts: paired tests, binomial intervals, Holm."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def holm(p_values: dict) -> dict:
  """Holm-Bonferroni adjusted p-values: step-down, monotone, capped at 1.

  The i-th smallest of m p-values is multiplied by m - i (from 0), then
  made non-decreasing in that order. (jaxrelu.self_normalization has its
  own, private: the experiments use the library's public names only.)

  Raises:
    ValueError: for a p-value that is NaN or outside [0, 1], naming it.
  """
  for k, p in p_values.items():
    if not 0.0 <= p <= 1.0:
      raise ValueError(f'holm: p-value {k!r} must be in [0, 1], got {p!r}.')
  out, running = {}, 0.0
  order = sorted(p_values, key=p_values.get)
  for i, k in enumerate(order):
    running = max(running, min(1.0, (len(order) - i) * p_values[k]))
    out[k] = running
  return out


def nanmean(values, axis=None):
  """Mean over the finite seeds (NaN, silently, when there are none)."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    return np.nanmean(np.asarray(values, np.float64), axis=axis)


def mean_std(values, spec='.3f'):
  values = np.asarray(values, np.float64)
  return f'{values.mean():{spec}} +- {values.std():{spec}}'


def stratified_test(
  strata: Sequence[Sequence[float]], draws: int = 20_000, seed: int = 0
) -> dict:
  """A paired effect pooled over strata, each stratum weighing the same.

  Args:
    strata: per stratum (for compare_variants, a dataset), the
      paired differences of its replicates (its splits); NaN ones (a
      diverged arm) are dropped, and strata left empty.
    draws: sign-flip draws when exact enumeration (at most 2^16 sign
      patterns) is too large.
    seed: the generator of the draws (the p-value is reproducible).

  The effect is T, the mean over strata of each stratum's mean
  difference: a dataset with many replicates or big differences does not
  outweigh the others. Its test is a stratified sign-flip permutation
  test: under the null each replicate's difference is symmetric about 0,
  so flipping the signs of replicates independently (within their own
  stratum, whose weight they keep) draws T's null distribution. Two-sided
  p = P(|T*| >= |T|): exact over every sign pattern when there are at most
  16 replicates, else (1 + hits) / (1 + draws). The 95% CI is T +- t * se,
  se^2 = sum_k s_k^2 / n_k / K^2 (s_k the stratum's replicate std; the
  pooled within-stratum std for a stratum of one), with Satterthwaite's
  degrees of freedom; 't_p' is that t-test's p-value, beside the
  permutation p.

  Returns:
    n (replicates), strata (kept), mean (T), ci, se, df, p (permutation),
    t_p, exact, spread (pooled within-stratum std: the replicate spread),
    wins/losses/ties over replicates, strata_signs (strata with a positive,
    negative, zero mean), and 'detectable' NaN (the caller fills it).
  """
  from scipy import stats as scipy_stats

  kept = [
    d[np.isfinite(d)]
    for d in (np.asarray(v, np.float64).ravel() for v in strata)
  ]
  kept = [d for d in kept if d.size]
  k = len(kept)
  out = {'n': sum(d.size for d in kept), 'strata': k, 'mean': math.nan}
  out.update(ci=[math.nan, math.nan], se=math.nan, df=math.nan, p=math.nan)
  out.update(t_p=math.nan, exact=False, spread=math.nan, detectable=math.nan)
  every = np.concatenate(kept) if kept else np.zeros(0)
  out.update(
    wins=int((every > 0).sum()),
    losses=int((every < 0).sum()),
    ties=int((every == 0).sum()),
  )
  means = np.array([d.mean() for d in kept])
  out['strata_signs'] = [
    int((means > 0).sum()),
    int((means < 0).sum()),
    int((means == 0).sum()),
  ]
  if not k:
    return out
  mean = float(means.mean())
  out['mean'] = mean
  # The permutation test: T* = sum_i w_i s_i d_i with w_i = 1 / (K n_k).
  weights = np.concatenate([np.full(d.size, 1.0 / (k * d.size)) for d in kept])
  wd = weights * every
  tol = 1e-12 * max(1.0, np.abs(wd).sum())
  if every.size <= 16:
    signs = 1 - 2 * (
      (np.arange(2**every.size)[:, None] >> np.arange(every.size)) & 1
    )
    out['p'] = float(np.mean(np.abs(signs @ wd) >= abs(mean) - tol))
    out['exact'] = True
  else:
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, draws, 5000):
      signs = rng.choice(
        [-1.0, 1.0], size=(min(5000, draws - start), every.size)
      )
      hits += int((np.abs(signs @ wd) >= abs(mean) - tol).sum())
    out['p'] = (1 + hits) / (1 + draws)
  dof = np.array([d.size - 1 for d in kept])
  var = np.array([d.var(ddof=1) if d.size > 1 else math.nan for d in kept])
  if dof.sum() > 0:
    pooled = float(np.nansum(var * dof) / dof.sum())
    out['spread'] = math.sqrt(pooled)
    var = np.where(dof > 0, var, pooled)
    v = var / np.array([d.size for d in kept])
    se = math.sqrt(v.sum()) / k
    # Satterthwaite: a stratum's variance estimate has its own dof; one
    # that borrows the pooled variance has the pooled dof.
    dof_v = np.where(dof > 0, dof, dof.sum())
    df_den = np.sum(v**2 / dof_v)
    df = float(v.sum() ** 2 / df_den) if df_den > 0 else float(dof.sum())
    out['se'], out['df'] = se, df
    # Differences equal to rounding do not vary: no t-test.
    if se > 1e-12 * max(1.0, abs(mean)):
      half = float(scipy_stats.t.ppf(0.975, df)) * se
      out['ci'] = [mean - half, mean + half]
      out['t_p'] = float(2 * scipy_stats.t.sf(abs(mean) / se, df))
    else:
      out['ci'] = [mean, mean]
  return out


def detectable_stratified(test: dict, alpha: float) -> float:
  """The effect `stratified_test`'s t-approximation detects with
  probability 0.8 at `alpha` (its se and Satterthwaite df)."""
  if not (test['se'] > 0 and test['df'] >= 1):
    return math.nan
  return detectable_mean(test['se'], round(test['df']) + 1, alpha)


def clopper_pearson(k: int, n: int) -> dict:
  """k successes of n, with the exact (Clopper-Pearson) 95% interval."""
  from scipy import stats as scipy_stats

  lo = scipy_stats.beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
  hi = scipy_stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
  return {'k': k, 'n': n, 'rate': k / n, 'low': float(lo), 'high': float(hi)}


def one_sample(values: Sequence[float]) -> dict:
  """The finite values' mean with its (unadjusted) t-based 95% CI, its
  standard error, the one-sample two-sided t-test against 0 (p NaN when
  the values do not vary: untestable) and Wilcoxon's signed-rank p (at
  least 0.0625 with 5 values). 'detectable' is filled by `detectable_mean`
  once the multiplicity is known."""
  from scipy import stats as scipy_stats

  s = np.asarray([v for v in values if math.isfinite(v)], np.float64)
  out = {'n': int(s.size), 'mean': math.nan, 'ci': [math.nan, math.nan]}
  out.update(p=math.nan, wilcoxon_p=math.nan, detectable=math.nan, se=math.nan)
  if s.size >= 2:
    se = s.std(ddof=1) / math.sqrt(s.size)
    t_crit = float(scipy_stats.t.ppf(0.975, s.size - 1))
    out['mean'], out['se'] = float(s.mean()), float(se)
    out['ci'] = [out['mean'] - t_crit * se, out['mean'] + t_crit * se]
    # Values equal to rounding (se ~ 1e-17 of the mean) do not vary.
    if se > 1e-9 * abs(out['mean']) and se > 0:
      out['p'] = float(scipy_stats.ttest_1samp(s, 0.0).pvalue)
    out['detectable'] = detectable_mean(se, s.size, 0.05)
    nonzero = s[s != 0]
    if nonzero.size:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        out['wilcoxon_p'] = float(scipy_stats.wilcoxon(nonzero).pvalue)
  return out


def detectable_mean(se: float, n: int, alpha: float) -> float:
  """The mean a two-sided one-sample t-test at `alpha` (n values, standard
  error se) detects with probability 0.8: from the noncentral t."""
  from scipy import stats as scipy_stats

  if not (n >= 2 and se > 0):
    return math.nan
  df = n - 1
  t_crit = scipy_stats.t.ppf(1 - alpha / 2, df)

  def power(d):
    nct = scipy_stats.nct(df, d)
    return nct.sf(t_crit) + nct.cdf(-t_crit)

  lo, hi = 0.0, 1.0
  while power(hi) < 0.8:
    hi *= 2
  for _ in range(60):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if power(mid) < 0.8 else (lo, mid)
  return float(hi * se)


def paired_verdict(
  test: dict, p_holm: float, sign: int, too_few: str, missed: str
) -> str:
  """A paired claim's verdict from `stats.one_sample`'s test.

  SUPPORTED (CONTRADICTED) when the Holm-corrected p <= 0.05 and the mean
  has (has not) the claimed `sign`; NOT TESTABLE with `too_few` below 2
  seeds, else with `missed` (a format of the detectable size).
  """
  if test['n'] < 2:
    return f'NOT TESTABLE ({too_few})'
  if p_holm <= 0.05:
    return 'SUPPORTED' if sign * test['mean'] > 0 else 'CONTRADICTED'
  if not math.isfinite(test['detectable']):
    return (
      f'NOT TESTABLE (every one of {test["n"]} values is '
      f'{test["mean"]:+.3f}: no spread to test)'
    )
  return (
    f'NOT TESTABLE (no significant {missed.format(test["detectable"])} would '
    'have been detected with probability 0.8)'
  )


def paired_reason(
  test: dict, p_holm: float, sign: int, replicates: str
) -> str | None:
  """Why `paired_verdict` said SUPPORTED or CONTRADICTED, in words (None
  for NOT TESTABLE, whose verdict carries its reason)."""
  if test['n'] < 2 or not p_holm <= 0.05:
    return None
  lo, hi = test['ci']
  side = 'the claimed' if sign * test['mean'] > 0 else 'the opposite'
  return (
    f'mean {test["mean"]:+.3f} in {side} direction (95% CI {lo:+.3f} to '
    f'{hi:+.3f}; {test["n"]} paired {replicates}), Holm p = {p_holm:.2g} '
    '<= 0.05'
  )
