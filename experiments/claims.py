r"""Claims declared as data before compute, and the five verdicts.

Every binary declares its claims as `Claim` rows before it trains: the ID
of `../shared/CLAIMS.md` (suffixed where a binary splits a claim, e.g.
'D2.sgd'), the notes' sentence, the outcome and its full definition, the
cells it compares, the claimed direction, a margin of practical relevance
fixed in advance and the Holm family. `judge` turns a claim's paired
differences (one per seed, paired by construction) into one of five
verdicts. The effect is their mean; its test is the exact sign-flip
permutation test (`stats.stratified_test` with one stratum: no normality
assumed, and its p cannot go below 2 / 2^n); its CI, the equivalence
test and the power are t-based.

- SUPPORTED: the effect has the claimed sign, Holm-adjusted p <= level;
- CONTRADICTED: the opposite sign, Holm-adjusted p <= level;
- NO EFFECT: two one-sided t-tests (TOST) each reject an effect as large
  as the margin at the level: the effect lies within (-margin, margin);
- INCONCLUSIVE: none of these; the verdict states the effect the run
  could detect with probability 0.8 and the seeds a rerun needs to detect
  the margin;
- NOT REACHED: the regime where the claim can show was not sampled (no
  differences), naming what is missing.

Only SUPPORTED, CONTRADICTED and NO EFFECT decide anything. A claim judged
under several declared definitions of its outcome whose verdicts differ
is FRAGILE (`robust`) and decides nothing.

`smallest_p` and `seeds_needed` are the power before compute: the
smallest Holm-adjusted p a claim can reach with n seeds (the exact
sign-flip test's floor, 2 / 2^n), and the seeds a t-test needs to detect
an effect.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from experiments import stats

SUPPORTED = 'SUPPORTED'
CONTRADICTED = 'CONTRADICTED'
NO_EFFECT = 'NO EFFECT'
INCONCLUSIVE = 'INCONCLUSIVE'
NOT_REACHED = 'NOT REACHED'
FRAGILE = 'FRAGILE'
# The verdicts that decide a claim (and a binary's exit status).
DECIDING = (SUPPORTED, CONTRADICTED, NO_EFFECT)
LEVEL = 0.05
POWER = 0.8


@dataclasses.dataclass(frozen=True)
class Claim:
  """One claim, declared before compute.

  Attributes:
    id: the claim's ID in CLAIMS.md, suffixed where a binary splits it
      ('D2.sgd').
    sentence: what the notes claim, in their words.
    outcome: the measured quantity and its full definition (which rows,
      which threshold, which layers, which record).
    cells: the cells compared: treated minus reference, per seed.
    direction: +1 when the claim predicts a positive difference, -1 a
      negative one.
    margin: the smallest difference of practical relevance, in the
      outcome's units (> 0), fixed in advance: NO EFFECT means within it.
    family: the Holm family the claim's p-value is adjusted in.
    decides: whether its verdict decides the binary's exit status.
  """

  id: str
  sentence: str
  outcome: str
  cells: str
  direction: int
  margin: float
  family: str
  decides: bool = True

  def __post_init__(self):
    if self.direction not in (-1, 1):
      raise ValueError(
        f'Claim {self.id}: direction={self.direction}; accepted: +1 or -1'
      )
    if not (self.margin > 0 and math.isfinite(self.margin)):
      raise ValueError(
        f'Claim {self.id}: margin={self.margin}; accepted: a finite number > 0'
      )


@dataclasses.dataclass(frozen=True)
class Judged:
  """A claim's verdict with everything it rests on.

  Attributes:
    claim: the declared claim.
    verdict: one of the five verdicts (or FRAGILE, from `robust`).
    n: paired differences (seeds) the verdict rests on.
    mean: their mean (NaN when not reached).
    ci: its two-sided 95% t interval, unadjusted.
    p: the two-sided sign-flip test's p against 0.
    p_holm: p, Holm-adjusted in the claim's family.
    p_tost: the equivalence test's p (the larger one-sided p).
    detectable: the effect the run detects with probability 0.8 at the
      claim's adjusted level.
    seeds_needed: seeds that detect the margin with probability 0.8 at
      that level, at the observed spread (for INCONCLUSIVE).
    reason: the verdict in words, with its numbers.
  """

  claim: Claim
  verdict: str
  n: int
  mean: float
  ci: tuple[float, float]
  p: float
  p_holm: float
  p_tost: float
  detectable: float
  seeds_needed: int | None
  reason: str

  @property
  def decides(self) -> bool:
    return self.claim.decides and self.verdict in DECIDING


def tost_p(values: Sequence[float], margin: float) -> float:
  """The two one-sided t-tests' p for |mean| < margin: the larger of the
  p of 'mean <= -margin' and of 'mean >= margin' (NaN under 2 values; 1
  when the values do not vary and lie outside the margin)."""
  from scipy import stats as scipy_stats

  s = np.asarray([v for v in values if math.isfinite(v)], np.float64)
  if s.size < 2:
    return math.nan
  mean, se = float(s.mean()), float(s.std(ddof=1) / math.sqrt(s.size))
  if not se > 0:
    return 0.0 if abs(mean) < margin else 1.0
  df = s.size - 1
  p_low = scipy_stats.t.sf((mean + margin) / se, df)  # H0: mean <= -margin
  p_high = scipy_stats.t.cdf((mean - margin) / se, df)  # H0: mean >= margin
  return float(max(p_low, p_high))


def smallest_p(n: int, family_size: int = 1) -> float:
  """The smallest Holm-adjusted p a claim can reach with n paired seeds:
  the exact sign-flip test's floor 2 / 2^n, times the family's size (the
  first step of Holm). A claim whose floor is above the level cannot be
  decided by the run, whatever its effect."""
  if n < 1:
    return 1.0
  return min(1.0, family_size * 2.0 / 2.0**n)


def seeds_for_floor(family_size: int = 1, level: float = LEVEL) -> int:
  """The fewest seeds whose `smallest_p` reaches the level."""
  n = 1
  while smallest_p(n, family_size) > level:
    n += 1
  return n


def seeds_needed(
  sd: float, effect: float, level: float = LEVEL, power: float = POWER
) -> int | None:
  """The seeds a two-sided one-sample t-test at `level` needs to detect a
  mean of `effect` with probability `power`, when the values' standard
  deviation is `sd` (noncentral t; None when sd or effect is not > 0)."""
  from scipy import stats as scipy_stats

  if not (sd > 0 and effect > 0 and math.isfinite(sd)):
    return None

  def power_at(n):
    df = n - 1
    t_crit = scipy_stats.t.ppf(1 - level / 2, df)
    nct = scipy_stats.nct(df, effect / sd * math.sqrt(n))
    return nct.sf(t_crit) + nct.cdf(-t_crit)

  n = 2
  while power_at(n) < power:
    n *= 2
    if n > 2**20:
      return None
  lo, hi = n // 2, n
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if power_at(mid) < power else (lo, mid)
  return max(hi, 2)


def judge(
  declared: Sequence[Claim],
  differences: Mapping[str, Sequence[float] | None],
  *,
  level: float = LEVEL,
) -> dict[str, Judged]:
  """Every declared claim's verdict, Holm-adjusted within its family.

  Args:
    declared: the claims, declared before compute.
    differences: per claim ID, its paired differences (treated minus
      reference, one per seed; non-finite ones, diverged seeds, are left
      out), or None when its regime was not sampled. A claim without an
      entry is NOT REACHED too.
    level: the family-wise level of every test.

  Returns:
    Per claim ID, its `Judged`, in the declared order.

  Raises:
    ValueError: for a difference given for an undeclared claim (no verdict
      comes from anything not declared), or two claims with one ID.
  """
  ids = [c.id for c in declared]
  if len(set(ids)) != len(ids):
    raise ValueError(f'declared: an ID appears twice in {ids}')
  undeclared = sorted(set(differences) - set(ids))
  if undeclared:
    raise ValueError(
      f'differences: {", ".join(undeclared)} not declared; accepted: the '
      f'declared claims ({", ".join(ids)})'
    )
  tests = {}
  for claim in declared:
    values = differences.get(claim.id)
    if values is not None:
      finite = [float(v) for v in values if math.isfinite(v)]
      tests[claim.id] = (finite, stats.stratified_test([finite]))
  families: dict[str, dict[str, float]] = {}
  for claim in declared:
    if claim.id in tests:
      p = tests[claim.id][1]['p']
      # A claim without values to test stays in its family at p = 1.
      families.setdefault(claim.family, {})[claim.id] = (
        1.0 if math.isnan(p) else p
      )
  adjusted = {}
  for family in families.values():
    adjusted.update(stats.holm(family))
  sizes = {f: len(members) for f, members in families.items()}
  return {
    claim.id: _one(
      claim,
      tests.get(claim.id),
      adjusted.get(claim.id, math.nan),
      sizes.get(claim.family, 1),
      level,
    )
    for claim in declared
  }


def _one(claim, test, p_holm, family_size, level) -> Judged:
  """One claim's `Judged` from its values and test."""
  nan = math.nan
  if test is None:
    return Judged(
      claim,
      NOT_REACHED,
      0,
      nan,
      (nan, nan),
      nan,
      nan,
      nan,
      nan,
      None,
      f'not reached: no cell of its regime ({claim.cells}) was sampled',
    )
  values, t = test
  n, mean = t['n'], t['mean']
  ci = (t['ci'][0], t['ci'][1])
  p_tost = tost_p(values, claim.margin)
  # The level each test runs at: Holm's first step, the hardest.
  alpha = level / family_size
  sd = t['se'] * math.sqrt(n) if n >= 2 else nan
  detectable = stats.detectable_mean(t['se'], n, alpha) if n >= 2 else math.inf
  numbers = (
    f'mean {mean:+.4g} (95% CI {ci[0]:+.4g} to {ci[1]:+.4g}; {n} seeds), '
    f'Holm p = {p_holm:.2g}, TOST p = {p_tost:.2g} for margin '
    f'{claim.margin:g}'
  )
  if n >= 2 and p_holm <= level:
    claimed = claim.direction * mean > 0
    verdict = SUPPORTED if claimed else CONTRADICTED
    side = 'the claimed' if claimed else 'the opposite'
    return Judged(
      claim,
      verdict,
      n,
      mean,
      ci,
      t['p'],
      p_holm,
      p_tost,
      detectable,
      None,
      f'{side} direction: {numbers}',
    )
  if n >= 2 and p_tost <= level:
    return Judged(
      claim,
      NO_EFFECT,
      n,
      mean,
      ci,
      t['p'],
      p_holm,
      p_tost,
      detectable,
      None,
      f'within the margin: {numbers}',
    )
  need = seeds_needed(sd, claim.margin, alpha)
  floor = seeds_for_floor(family_size, level)
  need = None if need is None else max(need, floor)
  why = (
    f'undecided: {numbers}; the run detects {detectable:.3g} '
    f'(power {POWER:g}); the test needs at least {floor} seeds to reach '
    f'the level at all'
    + (f', {need} to detect the margin' if need is not None else '')
  )
  return Judged(
    claim,
    INCONCLUSIVE,
    n,
    mean,
    ci,
    t['p'],
    p_holm,
    p_tost,
    detectable,
    need,
    why,
  )


def robust(by_definition: Mapping[str, Judged]) -> str:
  """One verdict over a claim judged under several declared definitions of
  its outcome: theirs when all agree, else FRAGILE (decides nothing)."""
  verdicts = {j.verdict for j in by_definition.values()}
  return verdicts.pop() if len(verdicts) == 1 else FRAGILE


def table(declared: Sequence[Claim]) -> str:
  """The declared claims as the Markdown table a report opens with."""
  header = (
    'ID',
    'claim',
    'outcome',
    'cells',
    'direction',
    'margin',
    'family',
    'decides',
  )
  rows = [
    (
      c.id,
      c.sentence,
      c.outcome,
      c.cells,
      'up' if c.direction > 0 else 'down',
      f'{c.margin:g}',
      c.family,
      'yes' if c.decides else 'no',
    )
    for c in declared
  ]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(map(str, r)) + ' |' for r in rows]
  return '\n'.join(lines) + '\n'
