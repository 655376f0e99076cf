"""dying_relu's per-unit tracking, revival, treatments and their claims.

Each against an independent reference: a float64 NumPy forward pass, counts
made by hand, SciPy's tests on the values the claim should use.
"""

import json
import math

import dying_settings
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized
from scipy import stats as scipy_stats

from experiments import model
from experiments.dying_relu import effects as dying_effects
from experiments.dying_relu import teacher as dying_teacher

_UNTREATED = (1.0, 0.0, False)


def _numpy_forward(params, x, act):
  """float64 pre-activations of each hidden layer, and the derivative."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  derivative = {
    'relu': lambda z: (z > 0).astype(float),
    'leaky_relu': lambda z: np.where(z > 0, 1.0, 0.01),
    'elu': lambda z: np.where(z > 0, 1.0, np.exp(z)),
    'selu': lambda z: (
      1.0507009873554805 * np.where(z > 0, 1.0, 1.6732632423543772 * np.exp(z))
    ),
  }[act]
  forward = {
    'relu': lambda z: np.maximum(z, 0),
    'leaky_relu': lambda z: np.where(z > 0, z, 0.01 * z),
    'elu': lambda z: np.where(z > 0, z, np.expm1(z)),
    'selu': lambda z: (
      1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * np.expm1(z))
    ),
  }[act]
  layers = [(p['w_in'], p['b_in'])]
  layers += list(zip(p['w_hidden'], p['b_hidden'], strict=True))
  h, zs = np.asarray(x, np.float64), []
  for w, b in layers:
    z = h @ w + b
    zs.append(z)
    h = forward(z)
  return zs, derivative, h @ p['w_out'] + p['b_out']


def _params(bias, depth=3, width=16, seed=0):
  dataset = jax.tree.map(jnp.asarray, dying_teacher.teacher_dataset(0))
  params = model.init_params(
    jax.random.key(seed), dataset, 1.4142135, bias, depth=depth, width=width
  )
  return dataset, params


def _small_cfg(optimizer: str) -> dict:
  """`train_seed`'s cfg for a small teacher-task network (width 8, 20
  steps, records every 10, units judged on the training set)."""
  return {
    'width': 8,
    'steps': 20,
    'batch': 16,
    'record_every': 10,
    'optimizer': optimizer,
    'momentum': 0.0,
    'alpha_dropout_rate': 0.0,
    'celu_alpha': 1.0,
    # Two branches: the switch stays a conditional, as in every run.
    'activations': ['relu', 'prelu'],
    'parts': dying_teacher.TEACHER_PARTS,
    'dead_part': 1,
    'unit_stats': True,
  }


class UnitSlopeTest(parameterized.TestCase):
  @parameterized.parameters('relu', 'leaky_relu', 'elu', 'selu')
  def test_mean_derivative_on_the_judged_rows(self, act):
    dataset, params = _params(-0.5)
    x = dataset['x_eval']
    rows = jnp.arange(x.shape[0]) < 200  # judged: the first 200 rows
    _, top, slope = model.forward(
      params,
      x,
      rows,
      jnp.int32(model.ACTIVATIONS.index(act)),
      rate=0.0,
      celu_alpha=1.0,
      derivative=True,
    )
    zs, derivative, _ = _numpy_forward(params, x, act)
    expected = np.stack([derivative(z[:200]).mean(0) for z in zs])
    top_expected = np.stack([z[:200].max(0) for z in zs])
    # float32 against float64: a pre-activation within rounding of 0 may
    # flip its side, moving one unit's mean by at most 1/200.
    diff = np.abs(np.asarray(slope) - expected)
    self.assertLessEqual(diff.max(), 1 / 200 + 1e-5)
    self.assertLess(np.mean(diff > 1e-4), 0.02)
    np.testing.assert_allclose(top, top_expected, rtol=1e-4, atol=1e-4)
    if act == 'relu':  # dead (never positive) is exactly slope 0
      np.testing.assert_array_equal(
        np.asarray(slope) == 0, np.asarray(top) <= 0
      )

  def test_negative_prelu_slope_passes_its_absolute_value(self):
    # A learned PReLU slope may turn negative: a unit then still passes
    # gradient |a| on its negative side, and is not starved.
    dataset, params = _params(-0.5)
    slopes = np.array([-0.3, 0.2, -0.05])  # one shared slope per layer
    params['slopes'] = jnp.asarray(
      np.repeat(slopes[:, None], params['slopes'].shape[1], 1), jnp.float32
    )
    x = dataset['x_eval']
    rows = jnp.arange(x.shape[0]) < 200
    _, _, slope = model.forward(
      params,
      x,
      rows,
      jnp.int32(model.ACTIVATIONS.index('prelu')),
      rate=0.0,
      celu_alpha=1.0,
      derivative=True,
    )
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    layers = [(p['w_in'], p['b_in'])]
    layers += list(zip(p['w_hidden'], p['b_hidden'], strict=True))
    h, expected = np.asarray(x, np.float64), []
    for (w, b), a in zip(layers, slopes, strict=True):
      z = h @ w + b
      expected.append(np.where(z > 0, 1.0, abs(a))[:200].mean(0))
      h = np.where(z > 0, z, a * z)
    diff = np.abs(np.asarray(slope) - np.stack(expected))
    self.assertLessEqual(diff.max(), 1 / 200 + 1e-5)
    self.assertLess(np.mean(diff > 1e-4), 0.02)
    self.assertGreater(np.asarray(slope)[0].min(), 0.29)  # never 0 or < 0


class ReviveTest(absltest.TestCase):
  def test_dead_units_reset_output_unchanged_moments_zeroed(self):
    dataset, params = _params(-1.0, depth=3, width=64)
    x = dataset['x_eval'][:64]  # dead: never positive on these rows
    rows = jnp.ones(x.shape[0], bool)
    relu = jnp.int32(0)
    logits, top = model.forward(params, x, rows, relu, rate=0.0, celu_alpha=1.0)
    dead = top <= 0
    self.assertGreater(int(dead[1:].sum()), 4)  # bias -1 kills some
    adam = optax.scale_by_adam()
    state = adam.init(params)
    ones = jax.tree.map(jnp.ones_like, params)
    state = state._replace(mu=ones, nu=ones)
    gain = 1.4142135
    new, new_state = model._revive(
      params, state, dead, jax.random.key(7), dataset, gain, -1.0
    )
    # The revived units output nothing downstream yet: the logits on the
    # inputs they were dead on are unchanged.
    after, _ = model.forward(new, x, rows, relu, rate=0.0, celu_alpha=1.0)
    np.testing.assert_allclose(after, logits, rtol=1e-6, atol=1e-6)
    dead = np.asarray(dead)
    kernels = [('w_in', None), ('w_hidden', 0), ('w_hidden', 1)]
    for layer, (name, i) in enumerate(kernels):
      old = np.asarray(params[name] if i is None else params[name][i])
      got = np.asarray(new[name] if i is None else new[name][i])
      mu = np.asarray(
        new_state.mu[name] if i is None else new_state.mu[name][i]
      )
      # Incoming weights of dead units, outgoing weights of those below.
      cols = np.broadcast_to(dead[layer][None, :], got.shape)
      rows = np.zeros(got.shape, bool)
      if layer:
        rows = np.broadcast_to(dead[layer - 1][:, None], got.shape)
      np.testing.assert_array_equal(got[rows], 0.0)
      keep = ~cols & ~rows
      np.testing.assert_array_equal(got[keep], old[keep])
      self.assertTrue(np.all(got[cols & ~rows] != old[cols & ~rows]))
      np.testing.assert_array_equal(mu[cols | rows], 0.0)
      np.testing.assert_array_equal(mu[keep], 1.0)
    # Fresh incoming weights have the init's scale (gain / sqrt(fan_in)):
    # every unit of layer 2 revived.
    every = np.zeros_like(dead)
    every[1] = True
    all_new, _ = model._revive(
      params, state, jnp.asarray(every), jax.random.key(8), dataset, gain, 0.0
    )
    fresh = np.asarray(all_new['w_hidden'][0])  # 64 x 64 draws
    self.assertAlmostEqual(fresh.std() * math.sqrt(64) / gain, 1.0, delta=0.05)
    # Biases back to their init; the read-out's rows of dead units zeroed.
    b = np.asarray(new['b_hidden'])
    np.testing.assert_array_equal(b[dead[1:]], -1.0)
    np.testing.assert_array_equal(np.asarray(new['w_out'])[dead[-1]], 0.0)
    np.testing.assert_array_equal(new['slopes'], params['slopes'])


class NeutralTreatmentTest(absltest.TestCase):
  def test_treated_program_at_baseline_values_matches_untreated(self):
    # The treated group is another compiled program; at the untreated
    # values (no revival, He scale, no shift) it must train the same nets,
    # or treated and untreated cells would not be paired.
    keys = jnp.stack([dying_teacher.teacher_keys(0, 2, 8, 2)])
    cfg = _small_cfg('adam')
    dataset = dying_teacher.teacher_dataset(0)
    run = lambda knobs: model.train_grid(
      keys, knobs, dataset, activation='relu', depth=2, cfg=cfg
    )
    plain = run({'learning_rate': [0.05]})
    neutral = run(
      {
        'learning_rate': [0.05],
        'revive': [0.0],
        'init_scale': [1.0],
        'input_shift': [0.0],
      }
    )
    np.testing.assert_array_equal(neutral['dead_units'], plain['dead_units'])
    for name in ('probe_loss', 'train_acc', 'unit_slope'):
      np.testing.assert_allclose(neutral[name], plain[name], rtol=1e-5)

  def test_input_shift_trains_as_on_shifted_data(self):
    # The shift knob against its definition: the same nets trained on a
    # dataset whose every input feature (training and evaluation rows)
    # was shifted by hand.
    keys = jnp.stack([dying_teacher.teacher_keys(0, 2, 8, 2)])
    cfg = _small_cfg('sgd')
    dataset = dying_teacher.teacher_dataset(0)
    shifted = dict(dataset)
    for name in ('x_train', 'x_eval'):
      shifted[name] = np.asarray(dataset[name], np.float32) + np.float32(2.0)
    run = lambda knobs, ds: model.train_grid(
      keys, knobs, ds, activation='relu', depth=2, cfg=cfg
    )
    knob = run({'learning_rate': [0.3], 'input_shift': [2.0]}, dataset)
    by_hand = run({'learning_rate': [0.3]}, shifted)
    plain = run({'learning_rate': [0.3]}, dataset)
    np.testing.assert_array_equal(knob['dead_units'], by_hand['dead_units'])
    for name in ('probe_loss', 'train_acc', 'unit_slope'):
      np.testing.assert_allclose(knob[name], by_hand[name], rtol=1e-4)
    # And the shift does something: the unshifted run differs.
    self.assertFalse(np.allclose(knob['train_loss'], plain['train_loss']))


class BranchSetTest(absltest.TestCase):
  def test_a_cell_does_not_depend_on_the_runs_other_activations(self):
    # A run's trainer switches between its own activations only
    # (model.branches, which adds a second to a lone one: jax would inline
    # a one-branch switch, and it rounds differently); an activation's
    # numbers must be the same bits alone, beside another, and among all
    # of them, or resuming with other --activations would mix numbers.
    keys = jnp.stack([dying_teacher.teacher_keys(0, 2, 8, 2)])
    dataset = dying_teacher.teacher_dataset(0)
    for act in ('elu', 'rrelu'):
      curves = [
        model.train_grid(
          keys,
          {'learning_rate': [0.1]},
          dataset,
          activation=act,
          depth=2,
          cfg={**_small_cfg('sgd'), 'activations': acts},
        )
        for acts in ([act], ['relu', act], list(model.ACTIVATIONS))
      ]
      for other in curves[1:]:
        for name in ('train_loss', 'probe_loss', 'unit_slope', 'dead_units'):
          np.testing.assert_array_equal(other[name], curves[0][name], name)
    self.assertEqual(model.branches({'activations': ['elu']}), ('relu', 'elu'))
    self.assertEqual(
      model.branches({'activations': ['relu']}), ('relu', 'leaky_relu')
    )
    with self.assertRaisesRegex(ValueError, "'elu' not in cfg"):
      model.branch_index({'activations': ['relu', 'prelu']}, 'elu')


class CellTest(absltest.TestCase):
  def test_a_cell_is_the_same_bits_alone_and_in_any_group(self):
    # A grown sweep reuses its stored cells (the key is unchanged), so a
    # cell's numbers must not depend on the cells computed beside it:
    # neither on their learning rates and biases nor on their treatments
    # (issue 28 item 4: they differed in the last bits when the group was
    # vectorized). Across device counts: test_dying_relu.py.
    settings = dying_settings.part(
      (0.05, 0.5), seed=0, seeds=2, steps=20, batch=16, record_every=10
    )
    base = dict(zip(model.TREATMENTS, _UNTREATED, strict=True))
    cell = {**base, 'learning_rate': 0.5, 'bias_init': 0.0}
    grid = [
      {**base, 'learning_rate': 0.05, 'bias_init': -1.0},
      cell,
      {**base, 'learning_rate': 0.5, 'bias_init': 0.0, 'revive': True},
    ]
    alone = dying_teacher.train_teacher(settings, 'relu', 2, 8, [cell])[0]
    among = dying_teacher.train_teacher(settings, 'relu', 2, 8, grid)
    self.assertEqual(
      json.dumps(among[1], sort_keys=True), json.dumps(alone, sort_keys=True)
    )
    # And the neighbours are other cells (the comparison can fail).
    self.assertNotEqual(among[0]['loss'], alone['loss'])
    self.assertNotEqual(among[2]['loss'], alone['loss'])


class DeadCellTest(absltest.TestCase):
  def test_units_ever_dead_and_recovered_counted_per_layer(self):
    rng = np.random.default_rng(0)
    seeds, records, depth, width = 3, 4, 2, 5
    units = rng.random((1, seeds, records, depth, width)) < 0.4
    slope = rng.random((1, seeds, records, depth, width)) * 2e-3
    loss = np.ones((1, seeds, records))
    loss[0, 2, 3] = np.nan  # seed 2 diverged in the last chunk
    curves = {
      'dead': units.mean(-1),
      'dead_units': units,
      'unit_slope': slope,
      'probe_loss': loss,
      'probe_acc': np.full((1, seeds, records), 0.5),
      'train_acc': np.full((1, seeds, records), 0.6),
      'born_dead': np.zeros((1, seeds, records), bool),
      'slope_shared': np.zeros((1, seeds, records, depth)),
    }
    cell = dying_effects.dead_cell(curves, 0, 'relu')
    for s in range(seeds):
      for layer in range(depth):
        ever = recovered = 0
        for j in range(width):
          died = any(units[0, s, r, layer, j] for r in range(records - 1))
          ever += died and s != 2
          recovered += died and s != 2 and not units[0, s, -1, layer, j]
        self.assertEqual(cell['ever_dead'][s][layer], ever)
        self.assertEqual(cell['recovered'][s][layer], recovered)
    starved = (slope[0] < 1e-3).mean(-1)
    np.testing.assert_allclose(cell['starved_per_layer'], starved, atol=5e-5)
    self.assertEqual(cell['diverged'], 1)


def _cells(per_cell, lrs, biases=(0.0,), act='relu', **treatment):
  """Synthetic stored cells: per_cell(lr, bias) -> (dead, starved, ok),
  each (seeds,) final values over one layer; records 0 and 1."""
  out = {}
  treat = dict(zip(model.TREATMENTS, _UNTREATED, strict=True))
  treat.update(treatment)
  depth = treat.pop('depth', 2)
  for lr in lrs:
    for b in biases:
      dead, starved, ok = per_cell(lr, b)
      key = (act, depth, 8, lr, b, *treat.values())
      out[key] = {
        'finite_seeds': list(ok),
        'dead_per_layer': [[[0.01], [d]] for d in dead],
        'starved_per_layer': [[[0.0], [v]] for v in starved],
        'accuracy': [[0.3, 0.6]] * len(dead),
      }
  return out


def _block(cells, lrs, biases=(0.0,), activations=('relu',)):
  settings = dying_settings.part(
    lrs, biases, activations=activations, depths=(2,), widths=(8,)
  )
  (at,) = dying_effects.DeadCells.each(cells, settings)
  return at


class RegimeTest(absltest.TestCase):
  def test_variant_is_judged_on_starved_units_where_they_die(self):
    lrs = [0.1, 0.5]
    relu = {0.1: [0.0, 0.01, 0.0], 0.5: [0.3, 0.2, 0.4]}
    elu = {0.1: [0.0, 0.0, 0.0], 0.5: [0.05, 0.0, 0.1]}
    ok = [True, True, True]
    cells = _cells(lambda lr, b: (relu[lr], relu[lr], ok), lrs)
    # ELU's never-positive units are many; its starved ones are few.
    cells |= _cells(lambda lr, b: ([0.9] * 3, elu[lr], ok), lrs, act='elu')
    at = _block(cells, lrs, activations=('relu', 'elu'))
    effect = dying_effects.variant_effect(at, 'elu')
    self.assertEqual(effect['kept'], [(0.5, 0.0)])  # lr 0.1: nothing dies
    expected = np.subtract(elu[0.5], relu[0.5])
    np.testing.assert_allclose(effect['changes'], expected, atol=1e-12)
    self.assertAlmostEqual(
      effect['p'], scipy_stats.ttest_1samp(expected, 0).pvalue, places=10
    )

  def test_lower_lr_pairs_neighbours_where_the_pair_dies(self):
    lrs = [0.01, 0.1, 0.5, 0.9]
    dead = {0.01: [0.0] * 3, 0.1: [0.01, 0.0, 0.02], 0.5: [0.1, 0.2, 0.1]}
    dead[0.9] = [0.3, 0.5, 0.4]
    ok = {lr: [True] * 3 for lr in lrs}
    ok[0.9] = [True, False, True]  # seed 1 diverged at 0.9
    cells = _cells(lambda lr, b: (dead[lr], dead[lr], ok[lr]), lrs)
    effect = dying_effects.lower_lr_effect(_block(cells, lrs), 'relu', 0.0)
    # Pair averages: (0.01, 0.1) 0.005, (0.1, 0.5) 0.072, (0.5, 0.9) 0.22.
    self.assertEqual(effect['kept'], [0.5, 0.9])
    lower = np.array([[0.01 - 0.1, 0.1 - 0.3], [0.0 - 0.2, np.nan]])
    lower = np.vstack([lower, [0.02 - 0.1, 0.1 - 0.4]])
    expected = np.nanmean(lower, axis=1)
    np.testing.assert_allclose(effect['changes'], expected, atol=1e-12)

  def test_revival_compares_revived_cells_with_untreated(self):
    lrs = [0.1, 0.5]
    base = {0.1: [0.0] * 3, 0.5: [0.2, 0.3, 0.25]}
    revived = {0.1: [0.0] * 3, 0.5: [0.05, 0.1, 0.0]}
    ok = [True] * 3
    cells = _cells(lambda lr, b: (base[lr], base[lr], ok), lrs)
    cells |= _cells(lambda lr, b: (revived[lr], [0] * 3, ok), lrs, revive=True)
    effect = dying_effects.revival_effect(_block(cells, lrs), 'dead')
    self.assertEqual(effect['kept'], [0.5])
    np.testing.assert_allclose(
      effect['changes'], np.subtract(revived[0.5], base[0.5]), atol=1e-12
    )


class CauseTest(absltest.TestCase):
  def test_depth_trend_is_per_seed_slope_against_log2_depth(self):
    lrs = [0.01, 0.1]
    by_depth = {2: [0.0, 0.01, 0.0], 4: [0.02, 0.01, 0.03], 8: [0.1, 0.3, 0.2]}
    ok = [True] * 3
    cells = {}
    for d, dead in by_depth.items():
      cells |= _cells(lambda lr, b, dead=dead: (dead, dead, ok), lrs, depth=d)
    trend = dying_effects.cause_trend(
      _block(cells, lrs), 'depth', [2, 4, 8], -1
    )
    x = np.log2([2, 4, 8])
    slopes = [
      scipy_stats.linregress(x, [by_depth[d][s] for d in (2, 4, 8)]).slope
      for s in range(3)
    ]
    np.testing.assert_allclose(trend['slopes'], slopes, atol=1e-12)
    self.assertEqual([r['depth'] for r in trend['rows']], [2, 4, 8])

  def test_bad_init_is_paired_against_he_at_the_reference_rate(self):
    lrs = [0.01, 0.1, 0.5]  # the reference rate: 0.1
    he = [0.0, 0.01, 0.02]
    scaled = [0.1, 0.3, 0.2]
    ok = [True] * 3
    cells = _cells(lambda lr, b: (he, he, ok), lrs)
    cells |= _cells(lambda lr, b: (scaled, scaled, ok), [0.1], init_scale=2.0)
    effect = dying_effects.treatment_effect(
      _block(cells, lrs), -1, init_scale=2.0
    )
    self.assertAlmostEqual(effect['mean'], np.mean(np.subtract(scaled, he)))
    self.assertEqual(effect['n'], 3)

  def test_cause_cells_go_where_the_mechanism_shows(self):
    settings = dying_settings.part(
      (0.01, 0.1, 0.5),
      (-1.0, 0.0),
      depths=(4,),
      init_scales=(2.0,),
      input_shifts=(1.0, 3.0),
    )
    base, treated = dying_teacher.teacher_cells(settings, 'relu', 4)
    self.assertLen(base, 6)
    untreated = dict(zip(model.TREATMENTS, _UNTREATED, strict=True))
    self.assertTrue(
      all({k: c[k] for k in untreated} == untreated for c in base)
    )
    # Revival at every rate; init and shift at lr 0.1, all at bias 0.
    self.assertEqual(
      sorted(
        (c['learning_rate'], c['init_scale'], c['input_shift'], c['revive'])
        for c in treated
      ),
      [
        (0.01, 1.0, 0.0, True),
        (0.1, 1.0, 0.0, True),
        (0.1, 1.0, 1.0, False),
        (0.1, 1.0, 3.0, False),
        (0.1, 2.0, 0.0, False),
        (0.5, 1.0, 0.0, True),
      ],
    )
    self.assertTrue(all(c['bias_init'] == 0.0 for c in treated))
    # A cause depth: ReLU with SGD at lr 0.1 and bias 0, nothing else.
    (deep,) = dying_teacher.teacher_cells(settings, 'relu', 8)
    self.assertEqual(
      [(c['learning_rate'], c['bias_init']) for c in deep], [(0.1, 0.0)]
    )
    self.assertEqual(dying_teacher.teacher_cells(settings, 'elu', 8), [])
    self.assertEqual(
      dying_teacher.teacher_cells(
        dying_settings.part((0.01, 0.1, 0.5), (-1.0, 0.0), optimizer='adam'),
        'relu',
        8,
      ),
      [],
    )
    self.assertLen(dying_teacher.teacher_cells(settings, 'elu', 4), 1)


if __name__ == '__main__':
  absltest.main()
