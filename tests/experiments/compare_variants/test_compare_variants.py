"""experiments.compare_variants: its binary, datasets, training and claims,
and the engine's model and statistics they use."""

import dataclasses
import itertools
import json
import math
import os
import shutil
import tempfile

import binaries
import jax
import jax.numpy as jnp
import numpy as np
import report_check
from absl.testing import absltest, parameterized

from experiments import model, plots, stats
from experiments.compare_variants import claims as variants_claims
from experiments.compare_variants import datasets as data
from experiments.compare_variants import training as variants
from experiments.compare_variants.settings import Settings

# What a cell computes; then which cells: the main block (Adam) and the
# SELU protocol (SGD) at the same depth, two datasets of one pad group.
_CONFIG = (
  '--width=16',
  '--steps=60',
  '--record_every=20',
  '--splits=2',
  '--seeds=2',
  '--learning_rate=0.01',
)
_SMALL = (
  *_CONFIG,
  '--datasets=iris,wine',
  '--activations=relu,elu,celu,prelu,leaky_relu_0.25,selu,selu_no_dropout',
  '--depths=2',
  '--sgd_learning_rates=0.1',
)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _reference_activation(name, z, slopes, celu_alpha):
  """Float64 NumPy formulas, written from the papers' definitions."""
  leaky = lambda a: np.where(z > 0, z, a * z)
  return {
    'relu': lambda: np.maximum(z, 0.0),
    'leaky_relu': lambda: leaky(0.01),
    'leaky_relu_0.25': lambda: leaky(0.25),
    'leaky_relu_0.229': lambda: leaky(0.2291666666666667),
    'leaky_relu_0.182': lambda: leaky(1 / 5.5),
    'prelu': lambda: leaky(slopes[0]),
    'prelu_channel': lambda: leaky(slopes),
    'rrelu': lambda: leaky((1 / 8 + 1 / 3) / 2),  # evaluation slope
    'elu': lambda: np.where(z > 0, z, np.expm1(z)),
    'celu': lambda: np.where(z > 0, z, celu_alpha * np.expm1(z / celu_alpha)),
    'relu6': lambda: np.clip(z, 0.0, 6.0),
    'selu': lambda: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(z)),
    # Alpha dropout acts only in training; evaluation is plain SELU.
    'selu_no_dropout': lambda: (
      SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(z))
    ),
  }[name]()


class UciTest(absltest.TestCase):
  def test_split_is_stratified_disjoint_and_standardized_on_train(self):
    d = data.load_dataset('iris', split_seed=0)
    for part, n in (('train', 90), ('val', 30), ('test', 30)):
      self.assertLen(d[f'y_{part}'], n)
      # 50 of each class in iris: stratified parts keep 1/3 each.
      np.testing.assert_array_equal(np.bincount(d[f'y_{part}']), [n // 3] * 3)
    np.testing.assert_allclose(d['x_train'].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(d['x_train'].std(0), 1, atol=1e-5)
    self.assertGreater(np.abs(d['x_test'].mean(0)).max(), 1e-3)
    # Wine has no duplicate rows, so its parts must be disjoint and cover
    # all 178 examples.
    wine = data.load_dataset('wine', split_seed=0)
    rows = [{tuple(r) for r in wine[f'x_{p}']} for p in data.PARTS]
    self.assertEqual([len(r) for r in rows], [106, 36, 36])
    self.assertLen(set.union(*rows), 178)
    other = data.load_dataset('iris', split_seed=1)
    self.assertFalse(np.array_equal(other['y_test'], d['y_test']))

  def test_padding_keeps_every_real_row_and_masks_the_rest(self):
    padded = data.pad_datasets(['iris', 'digits'], split_seed=0)
    iris = data.load_dataset('iris', 0)
    self.assertEqual(padded['x_train'].shape[-1], 64)  # digits' features
    np.testing.assert_array_equal(padded['train_size'], [90, 1077])
    np.testing.assert_array_equal(padded['inputs'], [4, 64])
    np.testing.assert_array_equal(padded['class_mask'].sum(-1), [3, 10])
    np.testing.assert_array_equal(
      padded['x_train'][0, :90, :4], iris['x_train']
    )
    self.assertEqual(np.abs(padded['x_train'][0, :, 4:]).max(), 0)
    self.assertEqual(np.abs(padded['x_train'][0, 90:]).max(), 0)
    for i, part in enumerate(data.PARTS):
      self.assertEqual(
        (padded['part_eval'][0] == i).sum(), len(iris[f'y_{part}'])
      )
      np.testing.assert_array_equal(
        padded['y_eval'][0][padded['part_eval'][0] == i], iris[f'y_{part}']
      )


class PlainMlpTest(parameterized.TestCase):
  @parameterized.parameters(*model.ACTIVATIONS)
  def test_forward_matches_float64_reference(self, activation):
    rng = np.random.default_rng(1)
    depth, width, features, n = 3, 6, 5, 7
    params = {
      'w_in': rng.normal(size=(features, width)),
      # Unit 0 of the first layer is never positive (dead for relu).
      'b_in': np.concatenate([[-100.0], rng.normal(size=width - 1)]),
      'w_hidden': rng.normal(size=(depth - 1, width, width)) / 2,
      'b_hidden': rng.normal(size=(depth - 1, width)),
      'w_out': rng.normal(size=(width, 3)),
      'b_out': rng.normal(size=3),
      'slopes': rng.uniform(0.05, 0.5, size=(depth, width)),
    }
    x = 2 * rng.normal(size=(n, features))
    rows = np.arange(n) < 5
    run = lambda **kw: model.forward(
      jax.tree.map(jnp.float32, params),
      jnp.float32(x),
      rows,
      model.ACTIVATIONS.index(activation),
      rate=0.1,
      celu_alpha=0.7,
      **kw,
    )
    logits, top = run()
    h, tops, ref_means = x, [], []
    layers = [
      (params['w_in'], params['b_in']),
      *zip(params['w_hidden'], params['b_hidden'], strict=True),
    ]
    for i, (w, b) in enumerate(layers):
      z = h @ w + b
      tops.append(z[rows].max(0))
      h = _reference_activation(activation, z, params['slopes'][i], 0.7)
      # The live units' mean |unit mean| over their RMS activation.
      live = (h[rows] != 0).any(0)
      ref_means.append(
        np.abs(h[rows][:, live].mean(0)).mean()
        / np.sqrt((h[rows][:, live] ** 2).mean())
      )
    np.testing.assert_allclose(
      logits, h @ params['w_out'] + params['b_out'], rtol=2e-5, atol=2e-5
    )
    np.testing.assert_allclose(top, np.stack(tops), rtol=2e-5, atol=2e-5)
    _, top2, means = run(means=True)
    np.testing.assert_array_equal(top2, top)
    np.testing.assert_allclose(means, ref_means, rtol=2e-5, atol=2e-5)

  def test_init_scales_to_true_fan_in_and_pairs_activations(self):
    padded = data.pad_datasets(['wine'], split_seed=0)
    wine = jax.tree.map(lambda a: a[0], padded)
    key = jax.random.key(3)
    unit = model.init_params(key, wine, 1.0, depth=3, width=4000)
    relu = model.init_params(key, wine, math.sqrt(2), depth=3, width=4000)
    # Same noise, scaled by the gain: seed s is paired across activations.
    for name in ('w_in', 'w_hidden'):
      np.testing.assert_allclose(relu[name], math.sqrt(2) * unit[name], 1e-6)
    w_in = np.asarray(relu['w_in'])
    self.assertEqual(np.abs(w_in[13:]).max(), 0)  # wine has 13 features
    # He: variance 2 / fan_in, with fan_in the 13 real features, not 64.
    self.assertAlmostEqual(w_in[:13].var() * 13 / 2, 1.0, delta=0.05)
    self.assertAlmostEqual(
      float(relu['w_hidden'].var()) * 4000 / 2, 1.0, delta=0.01
    )
    gains = model.gains(celu_alpha=1.0)
    self.assertEqual(gains['selu'], 1.0)
    self.assertAlmostEqual(gains['prelu'], math.sqrt(2 / (1 + 0.25**2)))
    self.assertEqual(gains['elu'], gains['celu'])
    # PReLU's control: the same init as PReLU.
    self.assertEqual(gains['leaky_relu_0.25'], gains['prelu'])
    self.assertAlmostEqual(
      gains['leaky_relu_0.182'], math.sqrt(2 / (1 + (1 / 5.5) ** 2))
    )


class DataTest(absltest.TestCase):
  def test_mnist_sets_load_offline_split_and_scaled(self):
    for name in ('mnist5k', 'mnist1d'):
      x, y = data.raw_dataset(name)
      self.assertEqual(x.shape, (5000, 784 if name == 'mnist5k' else 40))
      np.testing.assert_array_equal(np.bincount(y), [500] * 10)
      d = data.load_dataset(name, split_seed=0)
      for part, n in (('train', 3000), ('val', 1000), ('test', 1000)):
        self.assertLen(d[f'y_{part}'], n)
        np.testing.assert_array_equal(
          np.bincount(d[f'y_{part}']), [n // 10] * 10
        )
    # MNIST-5k: pixels in [0, 1], then one mean and std over training pixels.
    x, _ = data.raw_dataset('mnist5k')
    self.assertEqual((x.min(), x.max()), (0.0, 1.0))
    d = data.load_dataset('mnist5k', split_seed=0)
    self.assertAlmostEqual(float(d['x_train'].mean()), 0.0, places=4)
    self.assertAlmostEqual(float(d['x_train'].std()), 1.0, places=4)
    # MNIST-1D: per feature.
    d = data.load_dataset('mnist1d', split_seed=0)
    np.testing.assert_allclose(d['x_train'].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(d['x_train'].std(0), 1, atol=1e-4)

  def test_mnist1d_leaves_global_generators_alone(self):
    import random

    data.raw_dataset.cache_clear()
    np.random.seed(123)  # noqa: NPY002 (the global stream under test)
    random.seed(123)
    expected = (np.random.rand(), random.random())  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    data.raw_dataset('mnist1d')
    self.assertEqual((np.random.rand(), random.random()), expected)  # noqa: NPY002

  def test_split_is_reproducible_from_its_seed(self):
    for name in ('iris', 'mnist1d'):
      a, b = data.load_dataset(name, 7), data.load_dataset(name, 7)
      for k in ('x_train', 'y_train', 'x_val', 'x_test', 'y_test'):
        np.testing.assert_array_equal(a[k], b[k])
      other = data.load_dataset(name, 8)
      self.assertFalse(np.array_equal(a['x_test'], other['x_test']))
    self.assertEqual(data.split_seeds(3, 4), [3, 4, 5, 6])

  def test_pad_groups_keep_mnist_apart(self):
    uci = data.pad_datasets(['iris'], split_seed=0)
    self.assertEqual(uci['x_train'].shape[1:], (1077, 64))  # digits'
    self.assertEqual(uci['x_eval'].shape[1], 1797)
    one = data.pad_datasets(['mnist1d'], split_seed=0)
    self.assertEqual(one['x_train'].shape[1:], (3000, 40))
    self.assertEqual(
      {data.pad_group(d) for d in data.DATASETS}, set(data.PAD_GROUPS)
    )


def _exhaustive(strata):
  """T and its exact two-sided sign-flip p, by brute force."""
  flat = [(k, v) for k, d in enumerate(strata) for v in d]
  sizes = [len(d) for d in strata]
  t = np.mean([np.mean(d) for d in strata])
  null = []
  for signs in itertools.product([-1, 1], repeat=len(flat)):
    sums = np.zeros(len(strata))
    for s, (k, v) in zip(signs, flat, strict=True):
      sums[k] += s * v
    null.append(np.mean(sums / sizes))
  return t, np.mean(np.abs(null) >= abs(t) - 1e-12)


class StratifiedTestTest(absltest.TestCase):
  def test_exact_p_and_equal_stratum_weights(self):
    strata = [[0.3, 0.1, -0.05], [0.02, 0.04, 0.01, -0.01, 0.03]]
    t, p = _exhaustive(strata)
    out = stats.stratified_test(strata)
    self.assertAlmostEqual(out['mean'], t, places=12)
    self.assertAlmostEqual(out['mean'], (0.35 / 3 + 0.09 / 5) / 2, places=12)
    self.assertAlmostEqual(out['p'], p, places=12)
    self.assertTrue(out['exact'])
    self.assertEqual((out['n'], out['strata']), (8, 2))
    self.assertEqual((out['wins'], out['losses'], out['ties']), (6, 2, 0))
    self.assertEqual(out['strata_signs'], [2, 0, 0])

  def test_monte_carlo_p_agrees_with_exact(self):
    rng = np.random.default_rng(4)
    strata = [
      rng.normal(0.2, 1, 6),
      rng.normal(0.2, 1, 6),
      rng.normal(0.2, 1, 6),
    ]
    _, p = _exhaustive([d[:5] for d in strata])  # 15 values: exact
    self.assertAlmostEqual(
      stats.stratified_test([d[:5] for d in strata])['p'], p
    )
    # 18 values: Monte Carlo; its exact value by enumeration of 2^18 signs.
    flat = np.concatenate(strata) / (3 * 6)
    signs = 1 - 2 * ((np.arange(2**18)[:, None] >> np.arange(18)) & 1)
    exact = np.mean(np.abs(signs @ flat) >= abs(flat.sum()) - 1e-12)
    out = stats.stratified_test(strata, draws=20_000)
    self.assertFalse(out['exact'])
    self.assertLess(
      abs(out['p'] - exact), 4 * math.sqrt(exact * (1 - exact) / 20_000) + 1e-4
    )

  def test_one_stratum_ci_is_the_one_sample_t_interval(self):
    from scipy import stats as scipy_stats

    d = np.array([0.03, -0.01, 0.05, 0.02, 0.04, 0.00])
    out = stats.stratified_test([d])
    ci = scipy_stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    np.testing.assert_allclose(out['ci'], [ci.low, ci.high], rtol=1e-10)
    self.assertAlmostEqual(out['t_p'], scipy_stats.ttest_1samp(d, 0).pvalue)
    self.assertAlmostEqual(out['spread'], d.std(ddof=1))

  def test_two_strata_degrees_of_freedom_are_welchs(self):
    from scipy import stats as scipy_stats

    a = np.array([0.1, 0.3, -0.2, 0.4, 0.0])
    b = np.array([1.0, -2.0, 0.5, 3.0, -1.5, 2.5, 0.2])
    out = stats.stratified_test([a, b])
    welch = scipy_stats.ttest_ind(a, b, equal_var=False)
    self.assertAlmostEqual(out['df'], welch.df, places=10)
    # se of the mean of two means: half the Welch se of their difference.
    self.assertAlmostEqual(
      out['se'], np.sqrt(a.var(ddof=1) / 5 + b.var(ddof=1) / 7) / 2
    )
    # A stratum of one borrows the pooled variance and its dof: the df
    # stays near the others' (it used to jump to 114 here).
    single = stats.stratified_test([a, b, [0.3]])
    self.assertLess(single['df'], 20)

  def test_false_positive_rate_under_the_null(self):
    # Symmetric null differences in 3 strata of 5 splits with unequal
    # spreads: rejections at 0.05 stay within a binomial bound.
    rng = np.random.default_rng(0)
    runs, rejected = 400, 0
    for _ in range(runs):
      strata = [rng.normal(0, s, 5) for s in (0.01, 0.1, 1.0)]
      rejected += stats.stratified_test(strata)['p'] <= 0.05
    # P(Binomial(400, 0.05) > 32) < 0.001.
    self.assertLessEqual(rejected, 32)

  def test_nan_replicates_and_empty_strata_are_dropped(self):
    out = stats.stratified_test([[0.1, math.nan, 0.2], [math.nan], [0.0, 0.0]])
    self.assertEqual((out['n'], out['strata']), (4, 2))
    self.assertAlmostEqual(out['mean'], (0.15 + 0.0) / 2)
    tied = stats.stratified_test([[0.0, 0.0], [0.0]])
    self.assertEqual((tied['p'], tied['ties']), (1.0, 3))


def _cell(**curves):
  """A stored cell: curves of shape (splits, seeds, records)."""
  return {'config': {'record_every': 20, 'steps': 60}, **curves}


class ResultsTest(absltest.TestCase):
  def test_split_metrics_from_known_curves(self):
    nan = math.nan
    # 2 splits x 2 seeds, records at steps 0, 20, 40, 60. Split 1 seed 1
    # diverges; split 0 seed 1 never reaches loss 0.1.
    train_loss = [
      [[1, 0.05, 0.02, 0.01], [1, 0.6, 0.4, 0.3]],
      [[1, 0.5, 0.08, 0.05], [1, 0.5, nan, nan]],
    ]
    val_loss = [
      [[1, 0.3, 0.5, 0.6], [1, 0.8, 0.7, 0.75]],
      [[1, 0.4, 0.2, 0.3], [1, 0.4, nan, nan]],
    ]
    test_acc = [
      [[0.3, 0.9, 0.8, 0.8], [0.3, 0.5, 0.6, 0.55]],
      [[0.3, 0.7, 0.95, 0.9], [0.3, 0.7, 0.3, 0.3]],
    ]
    train_acc = [[[0.3, 1, 1, 1], [0.3, 0.6, 0.7, 0.75]]] * 2
    dead = [[[[0, 0]] * 3 + [[0.5, 0.25]]] * 2] * 2
    act_mean = [[[[9, 9], [0.5, 0.3], [0.1, 0.1], [0.2, 0.0]]] * 2] * 2
    m = variants_claims.split_metrics(
      _cell(
        train_loss=train_loss,
        val_loss=val_loss,
        test_acc=test_acc,
        train_acc=train_acc,
        dead=dead,
        act_mean=act_mean,
      ),
      0.1,
    )
    # Early stopping at the least validation loss (records 1, 2, 2, 1).
    np.testing.assert_allclose(m['test_acc'], [[0.9, 0.6], [0.95, 0.7]])
    np.testing.assert_allclose(m['best_val'], [[0.3, 0.7], [0.2, 0.4]])
    np.testing.assert_allclose(m['steps_to_target'], [[20, 80], [40, 20 * 4]])
    self.assertTrue(m['diverged'][1, 1])
    self.assertTrue(math.isnan(m['final_test_acc'][1, 1]))
    # Averaged over layers and the records after init (record 0 is init).
    self.assertAlmostEqual(
      m['act_mean'][0, 0], (0.5 + 0.3 + 0.1 + 0.1 + 0.2 + 0.0) / 6
    )

  def test_differences_average_seeds_within_a_split(self):
    a = {'x': np.array([[1.0, 3.0], [2.0, math.nan], [math.nan, math.nan]])}
    b = {'x': np.zeros((3, 2))}
    d = variants_claims.differences(a, b, 'x')
    np.testing.assert_allclose(d[:2], [2.0, 2.0])
    self.assertTrue(math.isnan(d[2]))
    # Steps to the target: a pair where neither reached it is left out.
    a = {
      'steps_to_target': np.array([[20.0, 80.0], [80.0, 80.0]]),
      'reached': np.array([[True, False], [False, False]]),
    }
    b = {
      'steps_to_target': np.array([[40.0, 80.0], [60.0, 80.0]]),
      'reached': np.array([[True, False], [True, False]]),
    }
    d = variants_claims.differences(a, b, 'steps_to_target')
    np.testing.assert_allclose(d, [-20.0, 20.0])

  def test_validation_chooses_per_split_and_dropout_for_selu(self):
    settings = Settings(
      datasets=('iris',),
      activations=('selu', 'selu_no_dropout', 'relu'),
      sgd_learning_rates=(0.01, 0.1),
      sgd_depth=4,
    )
    ones = np.ones((2, 1, 4))

    def cell(val, acc):  # per split (2), one seed
      return _cell(
        train_loss=ones,
        val_loss=np.asarray(val, float)[:, None, None] * ones,
        test_acc=np.asarray(acc, float)[:, None, None] * ones,
        train_acc=ones,
        dead=np.zeros((2, 1, 4, 4)),
        act_mean=np.zeros((2, 1, 4, 4)),
      )

    cells = {
      ('iris', 'selu', 4, 'sgd', 0.01): cell([0.5, 0.2], [0.1, 0.2]),
      ('iris', 'selu', 4, 'sgd', 0.1): cell([0.4, 0.9], [0.3, 0.4]),
      ('iris', 'selu_no_dropout', 4, 'sgd', 0.01): cell([0.6, 0.3], [0.5, 0.6]),
      ('iris', 'selu_no_dropout', 4, 'sgd', 0.1): cell([0.3, 0.8], [0.7, 0.8]),
    }
    r = variants_claims.Results(cells, settings)
    chosen = r.chosen('iris', variants_claims.SELU_VALIDATED)
    # Split 0: no dropout at 0.1 (val 0.3); split 1: dropout at 0.01 (0.2).
    self.assertEqual(
      chosen['choice'], [('selu_no_dropout', 0.1), ('selu', 0.01)]
    )
    np.testing.assert_allclose(chosen['test_acc'][:, 0], [0.7, 0.2])
    always = r.chosen('iris', variants_claims.SELU_ALWAYS)
    self.assertEqual(always['choice'], [('selu', 0.1), ('selu', 0.01)])
    self.assertIsNone(r.chosen('iris', 'relu'))  # not stored
    self.assertEqual(
      variants_claims.selu_others(
        dataclasses.replace(
          settings, activations=('elu', 'celu', 'relu', 'selu')
        )
      ),
      ['elu', 'relu'],
    )


def _item(diffs, sign=+1, held=True, why=None):
  """A variants_claims test item over one dataset's per-split values."""
  cells = {('iris', 2): np.asarray(diffs, float)}
  test = stats.stratified_test([cells['iris', 2]])
  test['detectable'] = 0.05
  return dict(cells=cells, test=test, sign=sign, held=held, why=why, tied=[])


class VerdictTest(absltest.TestCase):
  def test_three_way_verdicts_and_their_reasons(self):
    v = variants_claims._verdict
    up = _item([0.1, 0.2, 0.15, 0.12, 0.3, 0.2])
    self.assertEqual(v(up, 0.01, 1), 'SUPPORTED')
    self.assertEqual(v({**up, 'sign': -1}, 0.01, 1), 'CONTRADICTED')
    self.assertStartsWith(v(up, 0.2, 1), 'NOT TESTABLE (no significant')
    self.assertIn('0.050', v(up, 0.2, 1))  # the detectable effect
    tied = _item([0.0, 0.0, 0.0])
    self.assertIn('every paired split tied', v(tied, 1.0, 1))
    # Its numbers in words: no spread is 'none', not NaN (issue 28 item 7).
    phrase = variants_claims._phrase(tied, math.nan)
    self.assertIn('t-test p = none (the splits do not vary)', phrase)
    report_check.assert_finite_prose(self, phrase)
    # 4 splits: the exact sign-flip p is at least 2 / 16 = 0.125.
    few = _item([0.1, 0.2, 0.3, 0.4])
    self.assertIn('cannot reach 0.05/1', v(few, 0.125, 1))
    self.assertStartsWith(v(_item([0.1]), 1.0, 1), 'NOT TESTABLE (fewer')
    why = 'NOT TESTABLE (the slopes did not move)'
    gated = _item([0.1, 0.2, 0.15, 0.12, 0.3, 0.2], why=why)
    self.assertEqual(v(gated, 0.3, 1), why)
    # Significant behind the gate: still NOT TESTABLE, with the direction.
    self.assertIn('did end higher, Holm p 0.01', v(gated, 0.01, 1))
    self.assertStartsWith(v(gated, 0.01, 1), 'NOT TESTABLE')

  def test_selu_verdict_needs_relu_beaten_and_nothing_better(self):
    arm = variants_claims.SELU_VALIDATED
    items = {
      (arm, 'relu'): _item([0.1] * 6),
      (arm, 'elu'): _item([0.0] * 6),
      (arm, 'prelu'): _item([-0.1] * 6),
    }
    others = ['relu', 'elu', 'prelu']
    holm = {(arm, 'relu'): 0.01, (arm, 'elu'): 1.0, (arm, 'prelu'): 0.5}
    out = variants_claims._selu_verdict(arm, items, holm, others)
    self.assertEqual(out['verdict'], 'SUPPORTED')
    self.assertEqual(
      out['reason'], 'beats relu by +0.100 (Holm p = 0.01) and nothing beats it'
    )
    self.assertEqual(
      (out['beats'], out['ties'], out['beaten_by']),
      (['relu'], ['elu', 'prelu'], []),
    )
    holm[(arm, 'prelu')] = 0.01  # prelu significantly better
    out = variants_claims._selu_verdict(arm, items, holm, others)
    self.assertEqual(
      (out['verdict'], out['beaten_by']), ('CONTRADICTED', ['prelu'])
    )
    self.assertEqual(out['reason'], 'beaten by prelu (-0.100, Holm p = 0.01)')
    holm[(arm, 'prelu')], holm[(arm, 'relu')] = 0.5, 0.2
    out = variants_claims._selu_verdict(arm, items, holm, others)
    self.assertStartsWith(out['verdict'], 'NOT TESTABLE (not significantly')

  def test_claims_and_companions_are_separate_holm_families(self):
    items = {
      'a': {**_item([0.1] * 6), 'test': {'p': 0.01}},
      'b': {**_item([0.1] * 6), 'test': {'p': 0.04}},
      'c': {**_item([0.1] * 6, held=False), 'test': {'p': 0.01}},
    }
    fam = variants_claims._families(items)
    # Claims: Holm over 2 (0.02, 0.04); the companion alone (0.01).
    self.assertEqual(fam['a'], (0.02, 2))
    self.assertEqual(fam['b'], (0.04, 2))
    self.assertEqual(fam['c'], (0.01, 1))


class CompareVariantsBinaryTest(parameterized.TestCase):
  """One small sweep, whole and stopped then resumed, read by the tests."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Every figure its runs write is checked (plots.FIGURE_LOG_ENV).
    figures = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, figures)
    cls.figure_log = os.path.join(figures, 'figures.jsonl')
    cls.binary = binaries.Binary(
      'experiments.compare_variants',
      env={**os.environ, plots.FIGURE_LOG_ENV: cls.figure_log},
    )
    cls.addClassCleanup(cls.binary.close)
    sweep = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, sweep)
    cls.sweep = binaries.whole_and_resumed(cls.binary.run, _SMALL, sweep)
    cells = binaries.read_cells(cls.sweep['whole_dir'])
    cls.cells = {
      (c['dataset'], c['activation'], c['optimizer']): c for c in cells
    }

  def test_flag_fuzz(self):
    self.assertGreater(binaries.fuzz_flags(self, self.binary), 100)

  def setUp(self):
    super().setUp()
    self.out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.out)

  def test_small_run_interrupted_and_resumed_equals_uninterrupted(self):
    a, b = binaries.assert_resumed_equals_whole(self, self.sweep)
    # 7 activations x 2 blocks, 2 datasets each.
    self.assertLen(a, 7 * 2 * 2)
    for key in a:
      for curve in ('train_loss', 'test_acc', 'dead', 'act_mean'):
        self.assertEqual(a[key][curve], b[key][curve])
    # Training works: both datasets far above chance (1/3) at depth 2.
    for ds in ('iris', 'wine'):
      for act in ('relu', 'elu'):
        acc = np.asarray(self.cells[ds, act, 'adam']['test_acc'])[..., -1]
        self.assertEqual(acc.shape, (2, 2))  # splits x seeds
        self.assertGreater(acc.mean(), 0.8, (ds, act))
    parts = self.sweep['parts_dir']
    for png in ('accuracy_vs_depth.png', 'loss_curves.png', 'prelu_slopes.png'):
      with open(f'{parts}/{png}', 'rb') as f:
        self.assertEqual(f.read(4), b'\x89PNG')
    with open(f'{parts}/results.csv') as f:
      self.assertLen(f.read().strip().splitlines(), 1 + 28)
    with open(f'{parts}/summary.json') as f:
      verdicts = json.load(f)['verdicts']
    for claim in (
      'ELU: higher test accuracy than ReLU (generalizes better)',
      'prelu beats a fixed slope (its init, 0.25)',
      'selu_validated beats relu, and nothing beats it',
    ):
      self.assertIn(claim, verdicts)
    # Exit 0 exactly when every deciding claim (held not None) held.
    deciding = [v['held'] for v in verdicts.values() if v['held'] is not None]
    self.assertNotEmpty(deciding)
    self.assertEqual(self.sweep['whole'].returncode, 0 if all(deciding) else 1)
    v = verdicts['ELU: higher test accuracy than ReLU (generalizes better)']
    # Datasets are the strata, splits the replicates.
    self.assertEqual((v['n'], v['strata']), (2 * 2, 2))
    self.assertTrue(
      v['verdict'].startswith(('SUPPORTED', 'CONTRADICTED', 'NOT TESTABLE'))
    )
    with open(f'{parts}/report.md') as f:
      report = f.read()
    for text in (
      'Two Holm families',
      'permutation p =',
      'Paired differences per dataset and depth',
      'CELU with alpha 1 is ELU',
    ):
      self.assertIn(text, report)

  def test_stdout_and_report_say_why(self):
    # Issue 28 item 7: stdout is a summary of at most 100 columns, each
    # deciding claim with its reason; report.md has the tables and every
    # claim with its numbers, and ends with the provenance.
    whole, directory = self.sweep['whole'], self.sweep['whole_dir']
    with open(f'{directory}/report.md') as f:
      text = f.read()
    flags = ('datasets', 'activations', 'depths', 'splits', 'seeds', 'steps')
    report_check.assert_report(self, whole.stdout, text, flags)
    self.assertNotIn('| iris |', whole.stdout)
    self.assertIn(f'full table: {directory}/report.md', whole.stdout)
    self.assertRegex(
      whole.stdout,
      r'(?m)^ReLU variants: \d+ deciding claims, \d+ supported; \d+ companion',
    )
    # The SELU rule is prose; its verdict is a row with a reason.
    self.assertIn(
      '- **selu_validated** (supported if it beats relu and nothing beats '
      'it, Holm; contradicted if anything beats it). Beats: ',
      text,
    )

  def test_figures_tell_activations_apart_and_none_is_empty(self):
    whole = binaries.figures_written(
      self, self.figure_log, self.sweep['whole_dir']
    )
    self.assertEqual(
      whole,
      {
        'accuracy_vs_depth.png': True,
        'loss_curves.png': True,
        'prelu_slopes.png': True,
      },
    )

  def test_elu_and_celu_at_alpha_1_give_identical_curves(self):
    for ds in ('iris', 'wine'):
      for opt in ('adam', 'sgd'):
        elu, celu = self.cells[ds, 'elu', opt], self.cells[ds, 'celu', opt]
        for curve in ('train_loss', 'val_loss', 'test_acc', 'act_mean'):
          self.assertEqual(elu[curve], celu[curve], (ds, opt, curve))

  def test_seeds_pair_across_activations_and_optimizers(self):
    # PReLU and leaky_relu_0.25 start as the same network (slope 0.25,
    # the same gain and noise): identical at init in every split and
    # seed, and apart once PReLU's slopes learn.
    for ds in ('iris', 'wine'):
      prelu = self.cells[ds, 'prelu', 'adam']
      fixed = self.cells[ds, 'leaky_relu_0.25', 'adam']
      for curve in ('val_loss', 'test_acc', 'act_mean'):
        init = lambda c, curve=curve: np.asarray(c[curve])[:, :, 0]
        np.testing.assert_array_equal(init(prelu), init(fixed))
        # ... and with the same activation under the other optimizer.
        np.testing.assert_array_equal(
          init(prelu), init(self.cells[ds, 'prelu', 'sgd'])
        )
      self.assertFalse(np.array_equal(prelu['val_loss'], fixed['val_loss']))
      # Splits and seeds differ from each other.
      loss = np.asarray(prelu['val_loss'])[:, :, 0]
      self.assertLen(np.unique(loss), 4)
    # The keys take (seed, dataset, depth, split) and nothing else; other
    # splits and datasets get other keys.
    k = variants.keys(0, 'iris', 2, 1, 2)
    self.assertFalse(
      np.array_equal(
        jax.random.key_data(k),
        jax.random.key_data(variants.keys(0, 'wine', 2, 1, 2)),
      )
    )
    self.assertFalse(
      np.array_equal(
        jax.random.key_data(k),
        jax.random.key_data(variants.keys(0, 'iris', 2, 2, 2)),
      )
    )

  def test_full_sets_the_larger_protocol_unless_a_flag_is_given(self):
    # --report_only computes nothing: the report lists the missing cells.
    result = self.binary.run(
      '--full',
      '--report_only',
      '--datasets=iris',
      '--splits=3',
      f'--output_dir={self.out}',
    )
    # Cells missing: the report is written, and the run decides nothing.
    self.assertEqual(result.returncode, 3, result.stderr[-3000:])
    with open(f'{self.out}/summary.json') as f:
      summary = json.load(f)
    flags = summary['meta']['flags']
    self.assertEqual(flags['splits'], 3)  # given: kept
    self.assertEqual(flags['seeds'], 2)
    self.assertEqual(flags['depths'], [2, 8, 16, 32])
    self.assertEqual((flags['steps'], flags['record_every']), (1000, 50))
    self.assertEqual(flags['sgd_depth'], 32)
    self.assertNotIn('celu', flags['activations'])  # ELU at alpha 1
    # 12 activations x (4 main depths + 3 SGD rates at depth 32).
    self.assertEqual(summary['missing_cells'], 12 * (4 + 3))
    self.assertEqual(binaries.cell_files(self.out), [])

  def test_another_binarys_directory_is_refused_before_compute(self):
    os.makedirs(f'{self.out}/cells')
    with open(f'{self.out}/store.json', 'w') as f:
      f.write('{"binary": "dying_relu", "format": 1}\n')
    result = self.binary.run('--datasets=iris', f'--output_dir={self.out}')
    self.assertEqual(result.returncode, 2, result.stderr)
    lines = result.stderr.strip().splitlines()
    self.assertLen(lines, 1, result.stderr)
    self.assertIn("holds results of 'dying_relu'", lines[0])
    self.assertEqual(os.listdir(f'{self.out}/cells'), [])

  @parameterized.parameters(
    ('--datasets=iris,mnist', '--datasets: unknown mnist'),
    ('--activations=relu,swish', '--activations: unknown swish'),
    ('--activations=relu,nomodule:f', "cannot import 'nomodule'"),
    ('--depths=0', '--depths: 0 is not an integer >= 1'),
    ('--depths=2,2', '--depths repeats 2'),
    ('--learning_rate=-1', '--learning_rate: -1 is not a finite number > 0'),
    ('--optimizer=rmsprop', '--optimizer: unknown rmsprop'),
    ('--steps=30', '--steps: 30 is not a positive multiple'),
    ('--alpha_dropout_rate=1', '--alpha_dropout_rate: 1 is not in [0, 1)'),
    ('--celu_alpha=0', '--celu_alpha: 0 is not a finite number > 0'),
    ('--target_loss=nan', '--target_loss: nan is not a finite number > 0'),
    ('--splits=0', '--splits: 0 is not >= 1'),
    ('--split_seed=-1', '--split_seed: -1 is not >= 0'),
    (
      '--sgd_learning_rates=0.1,0',
      '--sgd_learning_rates: 0 is not a finite number > 0',
    ),
    ('--sgd_depth=0', '--sgd_depth: 0 is not >= 1'),
  )
  def test_bad_flags(self, flag, message):
    result = self.binary.run(flag, f'--output_dir={self.out}/never')
    binaries.assert_one_line_error(self, result, message, f'{self.out}/never')


if __name__ == '__main__':
  absltest.main()
