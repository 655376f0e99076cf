r"""Claims declared as data before compute, and the five verdicts.

Every binary declares its claims as `Claim` rows before it trains: the ID
of `../shared/CLAIMS.md` (suffixed where a binary splits a claim, e.g.
'D2.sgd'), the notes' sentence, the outcome and its full definition, the
cells it compares, the claimed direction, a margin of practical relevance
fixed in advance and the Holm family. `judge` turns a claim's paired
differences (one per seed, paired by construction) into one of five
verdicts. The effect is their mean; its test is the exact sign-flip
permutation test (`sign_flip_test`: no normality assumed, and its p
cannot go below 2 / 2^n); its CI, the equivalence test and the power are
t-based.

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
    replicates: what one difference is, in the verdicts' words ('seeds';
      born_dead's are 'trials').
  """

  id: str
  sentence: str
  outcome: str
  cells: str
  direction: int
  margin: float
  family: str
  decides: bool = True
  replicates: str = 'seeds'

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
    detectable: for INCONCLUSIVE, the effect the run detects with
      probability 0.8 at the claim's adjusted level (inf where its nonzero
      differences cannot reach the level); NaN for the other verdicts.
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


# The sign-flip test's draws above 16 differences (`stats.stratified_test`):
# its p is then at least 1 / (draws + 1).
_DRAWS = 20_000


def smallest_p(n: int, family_size: int = 1, binary: bool = False) -> float:
  """The smallest Holm-adjusted p a claim can reach with n nonzero paired
  differences (a zero difference flips to itself and adds nothing): the
  exact sign-flip test's floor 2 / 2^n (1 / (draws + 1) above 16, where
  the test samples sign patterns), times the family's size (the first
  step of Holm). A claim whose floor is above the level cannot be decided
  by the run, whatever its effect. With `binary` (0/1 outcomes, whose
  test is exact at any n: `sign_flip_test`), 2 / 2^n at every n."""
  if n < 1:
    return 1.0
  exact = n <= 16 or binary
  floor = 2.0 ** (1 - n) if exact else max(2.0 ** (1 - n), 1 / (_DRAWS + 1))
  return min(1.0, family_size * floor)


def seeds_for_floor(family_size: int = 1, level: float = LEVEL) -> int:
  """The fewest nonzero differences whose `smallest_p` reaches the level."""
  if not 0 < level < 1:
    raise ValueError(f'level={level}; accepted: a number in (0, 1)')
  n = 1
  while smallest_p(n, family_size) > level:
    n += 1
    if n > 64:
      raise ValueError(
        f'family_size={family_size}: no number of seeds reaches level '
        f'{level:g} with the sign-flip test'
      )
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


def sign_flip_test(values: Sequence[float]) -> dict:
  """The paired differences' mean, its t-based 95% CI and standard error,
  and the two-sided sign-flip p: `stats.stratified_test` with one stratum
  (exact up to 16 values, sampled above), or, where every nonzero
  difference has the same size (0/1 outcomes, as born dead or not), the
  exact binomial form of the same test at any number of values."""
  s = np.asarray(values, np.float64)
  nonzero = np.abs(s[s != 0])
  if s.size <= 16 or nonzero.size == 0 or np.ptp(nonzero) > 0:
    return stats.stratified_test([s])
  from scipy import stats as scipy_stats

  out = stats.one_sample(s)
  wins = int((s > 0).sum())
  out['p'] = float(scipy_stats.binomtest(wins, nonzero.size, 0.5).pvalue)
  return out


def judge(
  declared: Sequence[Claim],
  differences: Mapping[str, Sequence[float] | None],
  *,
  level: float = LEVEL,
) -> dict[str, Judged]:
  """Every declared claim's verdict, Holm-adjusted within its family.

  The sign-flip p-values of a family are Holm-adjusted together, and so are
  its equivalence (TOST) p-values, so that neither SUPPORTED/CONTRADICTED
  nor NO EFFECT is claimed more often than the level allows. A claim is
  decided only when its nonzero differences can reach the level at all
  (`seeds_for_floor`): below that it is INCONCLUSIVE, whatever its spread.
  An effect that is significant but also shown within the margin is NO
  EFFECT: it exists, but is smaller than what was declared to matter.

  Args:
    declared: the claims, declared before compute.
    differences: per claim ID, its paired differences (treated minus
      reference, one per seed; non-finite or None ones, diverged seeds,
      are left out), or None when its regime was not sampled. A claim with
      no entry, or none finite, is NOT REACHED and stays out of its
      family.
    level: the family-wise level of every test, in (0, 1).

  Returns:
    Per claim ID, its `Judged`, in the declared order.

  Raises:
    ValueError: for a difference given for an undeclared claim (no verdict
      comes from anything not declared), two claims with one ID, or a
      level outside (0, 1).
  """
  if not 0 < level < 1:
    raise ValueError(f'level={level}; accepted: a number in (0, 1)')
  ids = [c.id for c in declared]
  if len(set(ids)) != len(ids):
    raise ValueError(f'declared: an ID appears twice in {ids}')
  undeclared = sorted(set(differences) - set(ids))
  if undeclared:
    raise ValueError(
      f'differences: {", ".join(undeclared)} not declared; accepted: the '
      f'declared claims ({", ".join(ids)})'
    )
  tests, unreached = {}, {}
  for claim in declared:
    values = differences.get(claim.id)
    if values is None:
      unreached[claim.id] = f'no cell of its regime ({claim.cells}) was sampled'
      continue
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
      unreached[claim.id] = (
        f'every one of its {len(values)} seeds diverged ({claim.cells})'
      )
      continue
    tests[claim.id] = (finite, sign_flip_test(finite))
  families: dict[str, list[str]] = {}
  for claim in declared:
    if claim.id in tests:
      families.setdefault(claim.family, []).append(claim.id)
  p_holm, tost_holm = {}, {}
  for members in families.values():
    p = {i: tests[i][1]['p'] for i in members}
    p_holm.update(
      stats.holm({i: 1.0 if math.isnan(v) else v for i, v in p.items()})
    )
    by_id = {c.id: c for c in declared}
    tost = {i: tost_p(tests[i][0], by_id[i].margin) for i in members}
    tost_holm.update(
      stats.holm({i: 1.0 if math.isnan(v) else v for i, v in tost.items()})
    )
  sizes = {f: len(members) for f, members in families.items()}
  out = {}
  for claim in declared:
    if claim.id in unreached:
      out[claim.id] = _unreached(claim, unreached[claim.id])
    else:
      out[claim.id] = _one(
        claim,
        tests[claim.id],
        p_holm[claim.id],
        tost_holm[claim.id],
        sizes[claim.family],
        level,
      )
  return out


def _unreached(claim: Claim, why: str) -> Judged:
  nan = math.nan
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
    f'not reached: {why}',
  )


def _one(claim, test, p_holm, p_tost, family_size, level) -> Judged:
  """One claim's `Judged` from its values, its test and its adjusted p's."""
  from scipy import stats as scipy_stats

  values, t = test
  n, mean = t['n'], t['mean']
  ci = (t['ci'][0], t['ci'][1])
  nonzero = sum(v != 0 for v in values)
  floor = seeds_for_floor(family_size, level)
  reachable = nonzero >= floor
  # The level each test runs at: Holm's first step, the hardest.
  alpha = level / family_size
  sd = t['se'] * math.sqrt(n) if n >= 2 else math.nan
  # TOST at level alpha is the (1 - 2 alpha) interval inside the margin.
  if n >= 2 and t['se'] > 0:
    half = scipy_stats.t.ppf(1 - alpha, n - 1) * t['se']
    tost_ci = (
      f'{100 * (1 - 2 * alpha):.4g}% CI {mean - half:+.4g} to '
      f'{mean + half:+.4g}'
    )
  else:
    tost_ci = 'no spread'
  numbers = (
    f'mean {mean:+.4g} (95% CI {ci[0]:+.4g} to {ci[1]:+.4g}; {n} '
    f'{claim.replicates}, '
    f'{nonzero} nonzero), Holm p = {p_holm:.2g}; within margin '
    f'{claim.margin:g}: Holm TOST p = {p_tost:.2g} ({tost_ci})'
  )
  fields = dict(
    claim=claim, n=n, mean=mean, ci=ci, p=t['p'], p_holm=p_holm, p_tost=p_tost
  )
  if reachable and n >= 2 and p_tost <= level:
    why = (
      'significant, but within the margin'
      if p_holm <= level
      else 'within the margin'
    )
    return Judged(
      verdict=NO_EFFECT,
      detectable=math.nan,
      seeds_needed=None,
      reason=f'{why}: {numbers}',
      **fields,
    )
  if reachable and n >= 2 and p_holm <= level:
    claimed = claim.direction * mean > 0
    side = 'the claimed' if claimed else 'the opposite'
    return Judged(
      verdict=SUPPORTED if claimed else CONTRADICTED,
      detectable=math.nan,
      seeds_needed=None,
      reason=f'{side} direction: {numbers}',
      **fields,
    )
  detectable = (
    stats.detectable_mean(t['se'], n, alpha)
    if n >= 2 and reachable
    else math.inf
  )
  need = seeds_needed(sd, claim.margin, alpha)
  need = None if need is None else max(need, floor)
  why = (
    f'undecided: {numbers}; '
    + (
      f'the run detects {detectable:.3g} (power {POWER:g}); '
      if reachable
      else f'{nonzero} nonzero differences cannot reach the level; '
    )
    + f'the test needs at least {floor} nonzero differences to reach it'
    + (f', {need} seeds to detect the margin (t approximation)' if need else '')
  )
  return Judged(
    verdict=INCONCLUSIVE,
    detectable=detectable,
    seeds_needed=need,
    reason=why,
    **fields,
  )


def power_lines(
  declared: Sequence[Claim], replicates: int, binary: bool = False
) -> list[str]:
  """Before compute: per Holm family, the smallest adjusted p its claims
  can reach with `replicates` paired differences each, and, where that is
  above the level, how many they need (their claims cannot be decided:
  INCONCLUSIVE up front)."""
  sizes: dict[str, int] = {}
  units: dict[str, str] = {}
  for claim in declared:
    sizes[claim.family] = sizes.get(claim.family, 0) + 1
    units[claim.family] = claim.replicates
  lines = []
  for family, m in sizes.items():
    floor = smallest_p(replicates, m, binary)
    need = seeds_for_floor(m)
    unit = units[family]
    if floor <= LEVEL:
      lines.append(
        f'- power, {family} ({m} claims): {replicates} {unit} reach Holm p '
        + (f'{floor:.2g}' if floor > 0 else 'below 1e-300')
        + f' at best (the level {LEVEL:g} needs {need} nonzero)'
      )
    else:
      lines.append(
        f'- power, {family} ({m} claims): INCONCLUSIVE up front: '
        f'{replicates} {unit} reach Holm p {floor:.2g} at best; {need} '
        f'{unit} with a nonzero difference are needed'
      )
  return lines


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
