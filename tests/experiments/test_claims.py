"""experiments.claims: declared claims and the five verdicts.

References are independent of the code under test: scipy's one-sided
t-tests for the equivalence test, enumeration of sign patterns for the
sign-flip floor, simulated t-tests for the seeds a rerun needs and for
the equivalence test's size, and p-values adjusted by hand.
"""

import math

import numpy as np
from absl.testing import absltest
from scipy import stats as scipy_stats

from experiments import claims, stats


def _claim(id_='D2.sgd', margin=0.05, family='f', direction=1, **kw):
  return claims.Claim(
    id=id_,
    sentence='Too high a learning rate kills units.',
    outcome='dead fraction at the last record, training rows',
    cells='lr 0.9 minus lr 0.01, bias 0',
    direction=direction,
    margin=margin,
    family=family,
    **kw,
  )


class TostTest(absltest.TestCase):
  def test_matches_two_one_sided_t_tests(self):
    rng = np.random.default_rng(0)
    for n, mean, margin in ((5, 0.01, 0.1), (12, -0.05, 0.08), (30, 0.2, 0.1)):
      x = rng.normal(mean, 0.1, n)
      lower = scipy_stats.ttest_1samp(x, -margin, alternative='greater')
      upper = scipy_stats.ttest_1samp(x, margin, alternative='less')
      self.assertAlmostEqual(
        claims.tost_p(x, margin), max(lower.pvalue, upper.pvalue), places=12
      )

  def test_size_at_the_margin_is_at_most_the_level(self):
    # A true effect exactly at the margin is shown within it at most 5% of
    # the time (4000 runs of 20 seeds: binomial SE 0.0034).
    rng = np.random.default_rng(1)
    x = rng.normal(0.1, 0.2, (4000, 20))
    rate = np.mean([claims.tost_p(row, 0.1) <= 0.05 for row in x])
    self.assertLessEqual(rate, 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000))


class PowerTest(absltest.TestCase):
  def test_smallest_p_is_the_sign_flip_floor(self):
    # Every seed the same sign: the exact sign-flip p is its smallest.
    for n in (3, 5, 8, 12):
      floor = stats.stratified_test([np.arange(1.0, n + 1)])['p']
      self.assertAlmostEqual(claims.smallest_p(n), floor, places=12)
    self.assertAlmostEqual(claims.smallest_p(5, family_size=3), 3 / 16)
    # Five seeds can never reach 0.05 (the dying claims' old default).
    self.assertGreater(claims.smallest_p(5), 0.05)
    self.assertEqual(claims.seeds_for_floor(1), 6)  # 2/64 <= 0.05
    self.assertEqual(claims.seeds_for_floor(10), 9)  # 10 * 2/512 <= 0.05

  def test_seeds_needed_reach_the_power_in_simulation(self):
    n = claims.seeds_needed(sd=1.0, effect=1.0)
    rng = np.random.default_rng(2)

    def power(k):
      x = rng.normal(1.0, 1.0, (6000, k))
      return np.mean(scipy_stats.ttest_1samp(x, 0.0, axis=1).pvalue <= 0.05)

    se = math.sqrt(0.8 * 0.2 / 6000)
    self.assertGreaterEqual(power(n), 0.8 - 3 * se)
    self.assertLess(power(n - 1), 0.8 + 3 * se)
    self.assertIsNone(claims.seeds_needed(sd=0.0, effect=1.0))


class SignFlipTest(absltest.TestCase):
  def test_binary_outcomes_use_the_exact_binomial_form(self):
    # 0/1 outcomes paired (+1, -1 or 0): the sign-flip p by enumeration of
    # the 2^k sign patterns of the k nonzero ones, against the binomial form.
    rng = np.random.default_rng(7)
    d = rng.choice([-1.0, 0.0, 0.0, 1.0, 1.0], size=24)
    nonzero = d[d != 0]
    k = nonzero.size
    signs = 1 - 2 * ((np.arange(2**k)[:, None] >> np.arange(k)) & 1)
    enumerated = np.mean(np.abs(signs @ nonzero) >= abs(nonzero.sum()) - 1e-9)
    self.assertAlmostEqual(claims.sign_flip_test(d)['p'], enumerated)
    self.assertAlmostEqual(claims.sign_flip_test(d)['mean'], d.mean())


class JudgeTest(absltest.TestCase):
  def test_the_five_verdicts(self):
    rng = np.random.default_rng(3)
    declared = [
      _claim('up'),
      _claim('down'),
      _claim('flat', margin=0.1),
      _claim('noisy', margin=0.01),
      _claim('unsampled'),
    ]
    judged = claims.judge(
      declared,
      {
        'up': 0.3 + rng.normal(0, 0.05, 10),
        'down': -0.3 + rng.normal(0, 0.05, 10),
        'flat': rng.normal(0, 0.01, 10),
        'noisy': rng.normal(0.02, 0.5, 4),
        'unsampled': None,
      },
    )
    verdicts = {k: j.verdict for k, j in judged.items()}
    self.assertEqual(
      verdicts,
      {
        'up': 'SUPPORTED',
        'down': 'CONTRADICTED',
        'flat': 'NO EFFECT',
        'noisy': 'INCONCLUSIVE',
        'unsampled': 'NOT REACHED',
      },
    )
    noisy = judged['noisy']
    self.assertRegex(
      noisy.reason,
      r'at least \d+ nonzero differences .*, \d+ seeds to detect the margin',
    )
    self.assertGreater(noisy.seeds_needed, 100)  # sd 0.5 against 0.01
    self.assertFalse(noisy.decides)
    self.assertTrue(judged['flat'].decides)
    self.assertIn('lr 0.9 minus lr 0.01', judged['unsampled'].reason)

  def test_holm_within_the_family_only(self):
    # Two claims in one family, one alone: adjusted by hand.
    x = np.array([0.1, 0.2, 0.15, 0.12, 0.3, 0.22, 0.18, 0.25])
    y = np.array([0.1, -0.05, 0.2, 0.02, 0.15, -0.1, 0.12, 0.08])
    declared = [_claim('a', family='one'), _claim('b', family='one')]
    declared.append(_claim('c', family='two'))
    judged = claims.judge(declared, {'a': x, 'b': y, 'c': y})
    pa = stats.stratified_test([x])['p']
    pb = stats.stratified_test([y])['p']
    self.assertLess(pa, pb)
    self.assertAlmostEqual(judged['a'].p_holm, min(1.0, 2 * pa))
    self.assertAlmostEqual(judged['b'].p_holm, min(1.0, max(2 * pa, pb)))
    self.assertAlmostEqual(judged['c'].p_holm, pb)

  def test_no_verdict_from_anything_undeclared(self):
    with self.assertRaisesRegex(ValueError, 'D9 not declared'):
      claims.judge([_claim('D2')], {'D2': [1.0, 2.0], 'D9': [1.0]})
    with self.assertRaisesRegex(ValueError, 'appears twice'):
      claims.judge([_claim('D2'), _claim('D2')], {})

  def test_five_seeds_all_positive_stay_inconclusive(self):
    # Issue 31's case: a positive effect in 5 of 5 seeds cannot reach 0.05
    # (sign-flip floor 1/16), and the verdict says how many seeds would.
    values = [0.3, 0.2, 0.4, 0.25, 0.35]
    j = claims.judge([_claim()], {'D2.sgd': values})['D2.sgd']
    self.assertEqual(j.verdict, 'INCONCLUSIVE')
    self.assertAlmostEqual(j.p, 1 / 16)
    self.assertGreaterEqual(j.seeds_needed, 6)

  def test_review_cases(self):
    # An independent review's counterexamples (2026-12-08), each a rule.
    c = [_claim('x', margin=0.1)]
    # Two or five seeds cannot decide anything, NO EFFECT included.
    for values in ([0.001, 0.002], [0.0, 0.0], [0.001, -0.002, 0.0, 0.001, 0]):
      self.assertEqual(
        claims.judge(c, {'x': values})['x'].verdict, 'INCONCLUSIVE', values
      )
    # Zero differences do not count towards the sign-flip floor.
    j = claims.judge([_claim('x')], {'x': [0, 0.3, 0.2, 0.4, 0.25, 0.35]})['x']
    self.assertEqual(j.verdict, 'INCONCLUSIVE')
    self.assertIn('5 nonzero differences cannot reach the level', j.reason)
    self.assertAlmostEqual(claims.smallest_p(5), 1 / 16)
    # Every seed diverged: not reached, and out of its family.
    both = [_claim('a', family='f'), _claim('b', family='f')]
    up = [0.3, 0.2, 0.4, 0.25, 0.35, 0.3]
    judged = claims.judge(both, {'a': [math.nan] * 6, 'b': up})
    self.assertEqual(judged['a'].verdict, 'NOT REACHED')
    self.assertIn('every one of its 6 seeds diverged', judged['a'].reason)
    self.assertEqual(judged['b'].verdict, 'SUPPORTED')  # a family of one
    # Significant but within the margin: the effect is too small to matter.
    rng = np.random.default_rng(5)
    small = 0.01 + rng.normal(0, 0.002, 12)
    j = claims.judge(c, {'x': small})['x']
    self.assertLess(j.p_holm, 0.05)
    self.assertEqual(j.verdict, 'NO EFFECT')
    self.assertIn('significant, but within the margin', j.reason)
    with self.assertRaisesRegex(ValueError, 'level=0; accepted'):
      claims.judge(c, {}, level=0)

  def test_no_effect_is_held_to_the_level_over_a_family(self):
    # Ten claims at exactly the margin, 9 seeds each: the family-wise rate
    # of any false NO EFFECT stays at most 5% (200 families, SE 0.015;
    # with TOST unadjusted it was 0.40).
    rng = np.random.default_rng(6)
    family = [_claim(f'c{i}', margin=0.1) for i in range(10)]
    wrong = 0
    for _ in range(200):
      values = {c.id: rng.normal(0.1, 0.05, 9) for c in family}
      judged = claims.judge(family, values)
      wrong += any(j.verdict == 'NO EFFECT' for j in judged.values())
    self.assertLessEqual(wrong / 200, 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200))

  def test_declaration_is_checked(self):
    with self.assertRaisesRegex(ValueError, 'direction=0; accepted: \\+1'):
      _claim(direction=0)
    with self.assertRaisesRegex(ValueError, 'margin=0; accepted'):
      _claim(margin=0)

  def test_robust_and_fragile(self):
    declared = [_claim('x', margin=0.1)]
    flat = claims.judge(declared, {'x': [0.001, -0.002, 0.0, 0.001]})['x']
    gone = claims.judge(declared, {'x': None})['x']
    self.assertEqual(
      claims.robust({'train': flat, 'probe': flat}), flat.verdict
    )
    self.assertEqual(claims.robust({'train': flat, 'probe': gone}), 'FRAGILE')

  def test_power_before_compute(self):
    family = [_claim(f'c{i}') for i in range(10)]
    (line,) = claims.power_lines(family, 5)
    # 10 x 2/2^5 = 0.625: no five seeds can decide; nine nonzero can.
    self.assertIn('INCONCLUSIVE up front', line)
    self.assertIn('Holm p 0.62 at best; 9 seeds', line)
    (line,) = claims.power_lines(family, 12)
    self.assertIn('12 seeds reach Holm p 0.0049 at best', line)

  def test_table_lists_every_declared_field(self):
    text = claims.table([_claim('D4', margin=0.02, decides=False)])
    self.assertIn(
      '| D4 | Too high a learning rate kills units. | dead fraction at the '
      'last record, training rows | lr 0.9 minus lr 0.01, bias 0 | up | 0.02 '
      '| f | no |',
      text,
    )


if __name__ == '__main__':
  absltest.main()
