"""experiments/compare_variants.py and its helpers (uci, plain_mlp, stats)."""

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
from absl.testing import absltest, parameterized

from experiments import data, model, stats

# What a cell computes; then which cells (two datasets: one compiled
# program trains both).
_CONFIG = (
  '--width=16',
  '--steps=60',
  '--record_every=20',
  '--seeds=3',
  '--learning_rate=0.01',
)
_SMALL = (
  *_CONFIG,
  '--datasets=iris,wine',
  '--activations=relu,elu',
  '--depths=2',
)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _reference_activation(name, z, slopes, celu_alpha):
  """Float64 NumPy formulas, written from the papers' definitions."""
  leaky = lambda a: np.where(z > 0, z, a * z)
  return {
    'relu': lambda: np.maximum(z, 0.0),
    'leaky_relu': lambda: leaky(0.01),
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


class PairedTestTest(absltest.TestCase):
  def test_wilcoxon_p_matches_exhaustive_sign_flips(self):
    # Distinct magnitudes, no ties: the exact null distribution of W (the
    # rank sum of the positive differences) is every sign assignment.
    rng = np.random.default_rng(0)
    for _ in range(5):
      d = rng.permutation(np.arange(1, 10)) * rng.choice([-1, 1], 9)
      mags = np.abs(d)
      ranks = np.argsort(np.argsort(mags)) + 1
      w = ranks[d > 0].sum()
      null = np.array(
        [
          ranks[np.array(signs) > 0].sum()
          for signs in itertools.product([-1, 1], repeat=d.size)
        ]
      )
      p = min(1.0, 2 * min(np.mean(null <= w), np.mean(null >= w)))
      out = stats.paired_test(d, np.zeros_like(d))
      self.assertAlmostEqual(out['p'], p, places=10)
      self.assertEqual(out['wins'], int((d > 0).sum()))
      self.assertEqual(out['losses'], int((d < 0).sum()))
      self.assertEqual(out['direction'], int(np.sign(2 * w - 45)))

  def test_mean_and_t_interval(self):
    a = np.array([0.91, 0.95, 0.88, 0.97, 0.93, 0.90, 0.96, 0.94])
    b = np.array([0.90, 0.91, 0.89, 0.93, 0.90, 0.88, 0.92, 0.93])
    d = a - b
    out = stats.paired_test(a, b)
    # t_{0.975, 7} = 2.364624 (standard tables).
    half = 2.364624 * d.std(ddof=1) / math.sqrt(8)
    self.assertAlmostEqual(out['mean'], d.mean(), places=12)
    np.testing.assert_allclose(
      out['ci'], [d.mean() - half, d.mean() + half], rtol=1e-5
    )
    self.assertEqual((out['wins'], out['losses'], out['ties']), (7, 1, 0))
    self.assertEqual(out['direction'], 1)

  def test_all_ties_and_non_finite_pairs(self):
    out = stats.paired_test([0.5, 0.5, math.nan], [0.5, 0.5, 0.2])
    self.assertEqual(out['n'], 2)  # the NaN pair is left out
    self.assertEqual(out['ties'], 2)
    self.assertEqual(out['p'], 1.0)
    self.assertEqual(out['direction'], 0)


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
      'b_in': rng.normal(size=width),
      'w_hidden': rng.normal(size=(depth - 1, width, width)) / 2,
      'b_hidden': rng.normal(size=(depth - 1, width)),
      'w_out': rng.normal(size=(width, 3)),
      'b_out': rng.normal(size=3),
      'slopes': rng.uniform(0.05, 0.5, size=(depth, width)),
    }
    x = 2 * rng.normal(size=(n, features))
    rows = np.arange(n) < 5
    logits, top = model.forward(
      jax.tree.map(jnp.float32, params),
      jnp.float32(x),
      rows,
      model.ACTIVATIONS.index(activation),
      rate=0.1,
      celu_alpha=0.7,
    )
    h, tops = x, []
    layers = [
      (params['w_in'], params['b_in']),
      *zip(params['w_hidden'], params['b_hidden'], strict=True),
    ]
    for i, (w, b) in enumerate(layers):
      z = h @ w + b
      tops.append(z[rows].max(0))
      h = _reference_activation(activation, z, params['slopes'][i], 0.7)
    np.testing.assert_allclose(
      logits, h @ params['w_out'] + params['b_out'], rtol=2e-5, atol=2e-5
    )
    np.testing.assert_allclose(top, np.stack(tops), rtol=2e-5, atol=2e-5)

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


class CompareVariantsBinaryTest(parameterized.TestCase):
  """One small sweep, whole and stopped then resumed, read by the tests."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.binary = binaries.Binary('experiments.compare_variants')
    cls.addClassCleanup(cls.binary.close)
    sweep = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, sweep)
    cls.sweep = binaries.whole_and_resumed(cls.binary.run, _SMALL, sweep)

  def setUp(self):
    super().setUp()
    self.out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.out)

  def test_small_run_interrupted_and_resumed_equals_uninterrupted(self):
    a, b = binaries.assert_resumed_equals_whole(self, self.sweep)
    # One (activation, depth) group: both datasets.
    self.assertLen(self.sweep['before_resume'], 2)
    self.assertLen(a, 2 * 2)
    for key in a:
      for curve in ('train_loss', 'test_acc', 'dead'):
        self.assertEqual(a[key][curve], b[key][curve])
    # Training works: both datasets are far above chance (1/3) at depth 2.
    by_cell = {
      (c['dataset'], c['activation'], c['depth']): c for c in a.values()
    }
    for ds in ('iris', 'wine'):
      for act in ('relu', 'elu'):
        acc = np.asarray(by_cell[(ds, act, 2)]['test_acc'])[:, -1]
        self.assertGreater(acc.mean(), 0.8, (ds, act))
    # Outputs.
    parts = self.sweep['parts_dir']
    for png in ('accuracy_vs_depth.png', 'loss_curves.png', 'prelu_slopes.png'):
      with open(f'{parts}/{png}', 'rb') as f:
        self.assertEqual(f.read(4), b'\x89PNG')
    with open(f'{parts}/results.csv') as f:
      self.assertLen(f.read().strip().splitlines(), 1 + 4)
    with open(f'{parts}/summary.json') as f:
      summary = json.load(f)
    for claim in ('elu_converges_faster', 'elu_generalizes_better'):
      verdict = summary['verdicts'][claim]
      self.assertIn(
        verdict['verdict'],
        (
          'SUPPORTED',
          'CONTRADICTED',
          'NOT SUPPORTED (no significant difference)',
        ),
      )
      self.assertEqual(verdict['n'], 2 * 3)  # datasets x seeds, paired
    with open(f'{parts}/report.md') as f:
      report = f.read()
    for text in (
      '### 1. ELU vs ReLU',
      'Wilcoxon p =',
      '### 2. PReLU',
      '### 4. SELU',
      'Needs selu or selu_no_dropout',
    ):
      self.assertIn(text, report)

  def test_metrics_from_stored_curves(self):
    # One stored cell of the sweep, its curves replaced by hand-made ones
    # (3 seeds, records at steps 0, 20, 40, 60); a report-only run
    # computes nothing, so every number below is known in advance.
    (cell,) = [
      c
      for c in binaries.read_cells(self.sweep['whole_dir'])
      if (c['dataset'], c['activation']) == ('iris', 'relu')
    ]
    path = f'{self.out}/cells/{cell["key"]}.json'
    os.makedirs(f'{self.out}/cells')
    shutil.copy(f'{self.sweep["whole_dir"]}/cells/{cell["key"]}.json', path)
    with open(path) as f:
      record = json.load(f)
    nan = math.nan
    record['result'].update(
      {
        # Seed 0 trains; seed 1 diverges after its second record; seed 2
        # never reaches the target loss.
        'train_loss': [
          [1.0, 0.05, 0.02, 0.01],
          [1.0, 0.5, nan, nan],
          [1.0, 0.6, 0.4, 0.3],
        ],
        'val_loss': [
          [1.0, 0.3, 0.5, 0.6],
          [1.0, 0.4, nan, nan],
          [1.0, 0.8, 0.7, 0.75],
        ],
        'train_acc': [
          [0.3, 1.0, 1.0, 1.0],
          [0.3, 0.8, 0.33, 0.33],
          [0.3, 0.6, 0.7, 0.75],
        ],
        'test_acc': [
          [0.3, 0.9, 0.8, 0.8],
          [0.3, 0.7, 0.33, 0.33],
          [0.3, 0.5, 0.6, 0.55],
        ],
        'dead': [
          [[0, 0], [0.25, 0.25], [0.5, 0.5], [0.5, 0.5]],
          [[0, 0], [0, 0], [1, 1], [1, 1]],
          [[0, 0], [0, 0], [0, 0], [0.25, 0.25]],
        ],
      }
    )
    with open(path, 'w') as f:
      f.write(json.dumps(record) + '\n')
    result = self.binary.run(
      *_CONFIG,
      '--datasets=iris',
      '--activations=relu',
      '--depths=2',
      '--report_only',
      f'--output_dir={self.out}',
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
    self.assertEqual(binaries.cell_files(self.out), [path])  # none computed
    with open(f'{self.out}/summary.json') as f:
      (row,) = json.load(f)['groups']
    # Early stopping at the least validation loss: records 1, 1 and 2.
    self.assertAlmostEqual(row['test_acc_mean'], (0.9 + 0.7 + 0.6) / 3)
    # End-of-training values leave the diverged seed out.
    self.assertEqual(row['diverged'], 1)
    self.assertAlmostEqual(row['final_test_acc_mean'], (0.8 + 0.55) / 2)
    self.assertAlmostEqual(row['gap_mean'], ((1.0 - 0.8) + (0.75 - 0.55)) / 2)
    self.assertAlmostEqual(row['final_dead_mean'], (0.5 + 0.25) / 2)
    # Loss 0.1 reached at step 20 by seed 0 only; the others are censored
    # one record past the budget, at 60 + 20.
    self.assertEqual(row['reached'], 1)
    self.assertEqual(row['steps_to_target_median'], 80)
    with open(f'{self.out}/report.md') as f:
      report = f.read()
    self.assertIn('| iris | 2 | 20 (1/3) |', report)  # median of those reaching
    self.assertIn(
      'Non-finite training loss in: iris relu depth 2 (1/3)', report
    )

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
    ('--depths=0', '--depths: 0 is not an integer >= 1'),
    ('--depths=2,2', '--depths repeats 2'),
    ('--learning_rate=-1', '--learning_rate: -1 is not a finite number > 0'),
    ('--optimizer=rmsprop', '--optimizer: unknown rmsprop'),
    ('--steps=30', '--steps: 30 is not a positive multiple'),
    ('--alpha_dropout_rate=1', '--alpha_dropout_rate: 1 is not in [0, 1)'),
    ('--celu_alpha=0', '--celu_alpha: 0 is not a finite number > 0'),
    ('--target_loss=nan', '--target_loss: nan is not a finite number > 0'),
  )
  def test_bad_flags(self, flag, message):
    result = self.binary.run(flag, f'--output_dir={self.out}/never')
    binaries.assert_one_line_error(self, result, message, f'{self.out}/never')


if __name__ == '__main__':
  absltest.main()
