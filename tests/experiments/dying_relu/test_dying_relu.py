"""experiments.dying_relu: small sweeps, resume after interruption, flags.

One small sweep (two activations, a grid of eight cells each, so the
eight-device run spreads one cell per device) is run whole, and again
stopped and resumed, once for the class; the tests read it.
"""

import json
import os
import re
import shutil
import tempfile
import warnings

import binaries
import dying_settings
import numpy as np
import report_check
from absl.testing import absltest, parameterized

from experiments import plots
from experiments.dying_relu import effects as dying_effects
from experiments.dying_relu import teacher as dying_teacher
from experiments.dying_relu.settings import Grid, Settings

_SMALL = (
  '--optimizers=sgd',
  '--learning_rates=0.01,0.5',
  '--bias_inits=-1,0,0.01,0.1',  # with 2 learning rates: 8 cells a group
  '--depths=4',
  '--widths=16',
  '--steps=40',
  '--record_every=20',
  '--seeds=2',
  '--batch=32',
  # One treated ReLU group (revival at both rates, one init scale, two
  # shifts); the depth cause is tested on its own (compiles cost time).
  '--init_scales=2',
  '--input_shifts=1,3',
  '--cause_depths=',
)
_ACTIVATIONS = '--activations=relu,prelu'
# One device, as the eight-device run is compared with (on CPU; the binary
# would otherwise make one per core).
_ENV = dict(
  os.environ,
  JAX_PLATFORMS='cpu',
  XLA_FLAGS='--xla_force_host_platform_device_count=1',
)


# A stored cell's key ends with its treatments; these are a baseline's.
_UNTREATED = (1.0, 0.0, False)


def _claim_cell(dead, finite: bool) -> dict:
  """A stored dying_relu cell of three seeds, as the claims read it: one
  hidden layer per value of `dead`, all seeds finite or all diverged."""
  per_layer = [[[0.0], [d]] for d in dead]
  return {
    'finite_seeds': [finite] * 3,
    'dead_per_layer': per_layer,
    'starved_per_layer': per_layer,
    'ever_dead': [[1]] * 3,
    'recovered': [[0]] * 3,
    'accuracy': [[0.3, 0.7]] * 3,
    'train_accuracy': [[0.3, 0.7]] * 3,
    'diverged': 0 if finite else 3,
  }


def _treated(cell: dict) -> tuple[str, ...]:
  """The treatments a stored cell has (empty: a baseline cell)."""
  return tuple(
    name
    for name, base in (
      ('init_scale', 1.0),
      ('input_shift', 0.0),
      ('revive', False),
    )
    if cell[name] != base
  )


class DyingReluTest(parameterized.TestCase):
  def test_flag_fuzz(self):
    self.assertGreater(binaries.fuzz_flags(self, self.binary), 100)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.out = tempfile.mkdtemp()
    cls.addClassCleanup(shutil.rmtree, cls.out)
    # Every figure its runs write is checked (plots.FIGURE_LOG_ENV).
    cls.figure_log = os.path.join(cls.out, 'figures.jsonl')
    cls.binary = binaries.Binary(
      'experiments.dying_relu',
      env={**_ENV, plots.FIGURE_LOG_ENV: cls.figure_log},
    )
    cls.addClassCleanup(cls.binary.close)
    cls.sweep = binaries.whole_and_resumed(
      cls.binary.run, (_ACTIVATIONS, *_SMALL), cls.out
    )

  def test_interrupted_and_resumed_equals_uninterrupted(self):
    a, b = binaries.assert_resumed_equals_whole(self, self.sweep)
    # ReLU's lr x bias cells, its treated cells, then PReLU's (at the
    # default --variant_bias_inits: -1 and 0 of --bias_inits).
    self.assertLen(self.sweep['before_resume'], 2 * 4)
    self.assertLen(a, 2 * 4 + 2 + 1 + 2 + 2 * 2)
    prelu = {
      (c['learning_rate'], c['bias_init'])
      for c in a.values()
      if c['activation'] == 'prelu'
    }
    self.assertEqual(prelu, {(lr, b) for lr in (0.01, 0.5) for b in (-1, 0)})
    for key in a:
      self.assertEqual(a[key]['dead_per_layer'], b[key]['dead_per_layer'])
      self.assertEqual(a[key]['loss'], b[key]['loss'])
    # Outputs of the finished sweep.
    parts = self.sweep['parts_dir']
    for name in ('cells.csv', 'report.md', 'summary.json'):
      self.assertTrue(os.path.exists(f'{parts}/{name}'), name)
    for png in (
      'dead_vs_accuracy.png',
      'dead_heatmaps_sgd.png',
      'dead_vs_step_sgd.png',
      'dead_vs_lr_sgd.png',
      'recovery_sgd.png',
    ):
      with open(f'{parts}/{png}', 'rb') as f:
        self.assertEqual(f.read(4), b'\x89PNG')
    with open(f'{parts}/report.md') as f:
      report = f.read()
    for claim in (
      '1. **High learning rate',
      '   - **Too low a learning rate** (ReLU, lr 0.01 vs 0.5, paired)',
      '   - **Negative bias (dose-response)',
      '   - **Bad init: weights 2 x He**',
      '   - **Shifted data**',
      '2. **Lower learning rate**',
      '   - **Bias +0.01',
      '   - **prelu instead of ReLU**, judged on the gradient',
      '   - **Revival**',
      '3. **"A dead unit is not recoverable"**',
      '4. **More than 50% dead',
    ):
      self.assertIn(claim, report)

  def test_figures_tell_series_apart_and_none_is_empty(self):
    whole = binaries.figures_written(
      self, self.figure_log, self.sweep['whole_dir']
    )
    self.assertEqual(
      whole,
      {
        'dead_vs_accuracy.png': True,
        'dead_heatmaps_sgd.png': True,
        'dead_vs_step_sgd.png': True,
        'dead_vs_lr_sgd.png': True,
        'recovery_sgd.png': True,
      },
    )

  def test_stdout_and_report_say_why(self):
    # Issue 28 item 7: stdout is a summary of at most 100 columns, each
    # deciding claim with its reason; report.md has every claim with its
    # numbers and ends with the provenance; no NaN in a sentence.
    whole = self.sweep['whole']
    with open(f'{self.sweep["whole_dir"]}/report.md') as f:
      text = f.read()
    flags = ('activations', 'grids', 'widths', 'steps', 'seeds')
    report_check.assert_report(self, whole.stdout, text, flags)
    self.assertIn('\n- cells computed on devices: 1\n', text)
    self.assertIn(
      f'full table: {self.sweep["whole_dir"]}/report.md', whole.stdout
    )
    self.assertNotIn('1. **High learning rate.**', whole.stdout)
    self.assertRegex(
      re.sub(r'\n +', ' ', whole.stdout),  # the wrapped lines joined
      r'(?m)^- depth 4, width 16, sgd: dead units not recoverable, layer 1: '
      r'(SUPPORTED|CONTRADICTED) \(\d+ of \d+ dead units came back',
    )

  def test_learning_rate_1_reports_no_nan_and_no_warning(self):
    # Was 'a slope of nan would have been detected' in report.md and on
    # stdout (a trend over one learning rate has no seed with a value).
    # No treated cells: the learning-rate trend is what had no value.
    flags = [
      f
      for f in _SMALL
      if not f.startswith(('--learning_rates', '--init_scales', '--input_'))
    ]
    out = f'{self.out}/lr1'
    result = self.binary.run(
      '--activations=relu',
      '--learning_rates=1.0',
      '--init_scales=',
      '--input_shifts=',
      *flags,
      f'--output_dir={out}',
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
    self.assertNotIn('Warning', result.stderr)
    with open(f'{out}/report.md') as f:
      text = f.read()
    report_check.assert_report(self, result.stdout, text, ('seeds',))
    self.assertIn(
      'Trend (per-seed slope per decade of learning rate): untestable (0 '
      'seeds with a value). **NOT TESTABLE (fewer than 2 seeds',
      text,
    )

  def test_bias_minus_one_kills_units_at_initialisation(self):
    cells = {
      (c['activation'], c['learning_rate'], c['bias_init']): c
      for c in binaries.read_cells(self.sweep['whole_dir'])
      if not _treated(c)
    }
    # At init (record 0), bias -1 kills more ReLU units than bias 0.
    self.assertGreater(
      cells[('relu', 0.01, -1.0)]['initial_dead_mean'],
      cells[('relu', 0.01, 0.0)]['initial_dead_mean'],
    )
    # PReLU slopes are learned and recorded, one per hidden layer.
    self.assertLen(cells[('prelu', 0.01, 0.0)]['final_slopes'][0], 4)

  def test_adam_has_its_own_grid_and_report(self):
    out = f'{self.out}/adam'
    result = self.binary.run(
      '--optimizers=adam',
      '--activations=relu',
      '--adam_learning_rates=0.01,0.1',
      '--adam_bias_inits=0',
      '--depths=2',
      '--widths=8',
      '--steps=20',
      '--record_every=10',
      '--seeds=2',
      '--batch=16',
      f'--output_dir={out}',
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-2000:])
    cells = binaries.read_cells(out)
    # Adam runs no cause depth, init scale or shift: revival only.
    self.assertEqual(
      sorted(
        (c['optimizer'], c['learning_rate'], c['bias_init'], c['revive'])
        for c in cells
      ),
      [
        ('adam', 0.01, 0.0, False),
        ('adam', 0.01, 0.0, True),
        ('adam', 0.1, 0.0, False),
        ('adam', 0.1, 0.0, True),
      ],
    )
    with open(f'{out}/report.md') as f:
      self.assertIn('## depth 2, width 8, adam', f.read())
    with open(f'{out}/dead_vs_lr_adam.png', 'rb') as f:
      self.assertEqual(f.read(4), b'\x89PNG')

  def test_seeds_pair_across_learning_rates_and_biases(self):
    # Seed s starts from the same weights and trains on the same minibatch
    # order in every cell: the step-0 record of a bias is bit-identical
    # across learning rates, and the weights are across bias inits.
    cells = {
      (c['activation'], c['learning_rate'], c['bias_init'], _treated(c)): c
      for c in binaries.read_cells(self.sweep['whole_dir'])
    }
    biases = {'relu': (-1.0, 0.0, 0.01, 0.1), 'prelu': (-1.0, 0.0)}
    for act in ('relu', 'prelu'):
      for bias in biases[act]:
        first = [s[0] for s in cells[act, 0.01, bias, ()]['dead_per_layer']]
        again = [s[0] for s in cells[act, 0.5, bias, ()]['dead_per_layer']]
        self.assertEqual(first, again, (act, bias))
    # Revival and a weight scale change nothing before training either;
    # a shift of the inputs does, and kills more units at init.
    base = cells['relu', 0.01, 0.0, ()]['dead_per_layer']
    for lr in (0.01, 0.5):
      revived = cells['relu', lr, 0.0, ('revive',)]['dead_per_layer']
      self.assertEqual([s[0] for s in revived], [s[0] for s in base])
    (scaled,) = [c for k, c in cells.items() if k[3] == ('init_scale',)]
    self.assertEqual(
      [s[0] for s in scaled['dead_per_layer']], [s[0] for s in base]
    )
    # From the list of cells: the dict above keeps one of the two shifts
    # (1 and 3) per rate, whichever cell file sorts last.
    shifted = [
      c
      for c in binaries.read_cells(self.sweep['whole_dir'])
      if _treated(c) == ('input_shift',) and c['input_shift'] == 3.0
    ]
    self.assertNotEmpty(shifted)
    for cell in shifted:
      self.assertGreater(
        np.mean([s[0] for s in cell['dead_per_layer']]),
        np.mean([s[0] for s in base]),
      )

  def test_cells_spread_over_eight_devices_match_one_device(self):
    # The one-device reference: the whole sweep's relu cells, reported
    # alone (nothing is computed) to compare the claims too.
    one = f'{self.out}/one'
    shutil.copytree(self.sweep['whole_dir'], one)
    flags = ('--activations=relu', *_SMALL)
    reported = self.binary.run(*flags, '--report_only', f'--output_dir={one}')
    env = dict(_ENV, XLA_FLAGS='--xla_force_host_platform_device_count=8')
    eight = binaries.run(
      'experiments.dying_relu',
      *flags,
      f'--output_dir={self.out}/eight',
      env=env,
    )
    self.assertIn(reported.returncode, (0, 1), reported.stderr[-2000:])
    self.assertEqual(
      eight.returncode, reported.returncode, eight.stderr[-2000:]
    )
    summaries = {}
    for name, devices in (('one', 1), ('eight', 8)):
      with open(f'{self.out}/{name}/summary.json') as f:
        summaries[name] = json.load(f)
      self.assertEqual(
        summaries[name]['meta']['cells_computed_on_devices'], [devices]
      )
    self.assertEqual(
      summaries['eight']['verdicts'], summaries['one']['verdicts']
    )
    a = {c['key']: c for c in binaries.read_cells(self.sweep['whole_dir'])}
    b = {c['key']: c for c in binaries.read_cells(f'{self.out}/eight')}
    self.assertEqual({k for k in a if a[k]['activation'] == 'relu'}, set(b))
    for key in b:
      # The same bits (model.by_cell: one cell per device, the same
      # per-device program whatever the device count; issue 28 item 4).
      self.assertEqual(a[key], b[key])

  def test_a_users_activation_runs_beside_the_built_ins(self):
    # Issue 30 item 2: --activations takes package.module:function, with
    # options; its cells carry its source's hash.
    out = f'{self.out}/user'
    result = self.binary.run(
      '--activations=relu,tests.user_activations:swish[label=swish;beta=1.5]',
      '--optimizers=sgd',
      '--learning_rates=0.5',
      '--bias_inits=-1,0',
      '--depths=2',
      '--widths=8',
      '--steps=40',
      '--record_every=20',
      '--seeds=2',
      '--batch=32',
      '--init_scales=',
      '--input_shifts=',
      '--cause_depths=',
      f'--output_dir={out}',
    )
    self.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
    with open(f'{out}/report.md') as f:
      self.assertIn('**swish instead of ReLU**', f.read())
    swish = [c for c in binaries.read_cells(out) if c['activation'] == 'swish']
    self.assertLen(swish, 2)
    for cell in swish:
      self.assertEqual(cell['activation_path'], 'tests.user_activations')
      self.assertLen(cell['activation_source'], 16)
      self.assertEqual(cell['activation_hyperparameters'], {'beta': 1.5})
    for bad, message in (
      ('no_such_module:f', "cannot import 'no_such_module'"),
      ('tests.user_activations:nothing', "has no function 'nothing'"),
      ('tests.user_activations:swish[beta]', "'beta' is not key=value"),
      (
        'tests.user_activations:swish[label=relu]',
        "label 'relu' is a built-in",
      ),
    ):
      binaries.assert_one_line_error(
        self,
        self.binary.run(f'--activations=relu,{bad}', f'--output_dir={out}2'),
        message,
        never=f'{out}2',
      )

  def test_full_takes_the_larger_grid_for_flags_not_given(self):
    out = f'{self.out}/full'
    result = self.binary.run(
      '--full',
      '--learning_rates=0.01,0.5',
      '--report_only',
      f'--output_dir={out}',
    )
    # Nothing stored: the report is written, exit 3 (no evidence).
    self.assertEqual(result.returncode, 3, result.stderr[-2000:])
    self.assertNotIn('Traceback', result.stderr)
    with open(f'{out}/summary.json') as f:
      flags = json.load(f)['meta']['flags']
    sgd, adam = flags['grids']
    self.assertEqual(flags['seeds'], 20)
    self.assertEqual(sgd['learning_rates'], [0.01, 0.5])  # given
    self.assertLen(adam['learning_rates'], 7)
    self.assertEqual(flags['cause_depths'], [2, 8, 16])
    # Every bias init for the variants too, and CELU (ELU at alpha 1 here)
    # only when asked for.
    self.assertEqual(sgd['variant_bias_inits'], sgd['bias_inits'])
    self.assertNotIn('celu', flags['activations'])

  def test_variant_bias_inits_default_and_given(self):
    for given, expected in (
      ((), [-1.0, 0.0]),  # the default: those of -1 and 0 in --bias_inits
      (('--bias_inits=0.5,0.7',), [0.5, 0.7]),  # neither: all of them
      (('--variant_bias_inits=-0.3',), [-0.3]),
      (('--variant_bias_inits=',), [-1.0, -0.3, 0.0, 0.01]),  # empty: all
    ):
      out = f'{self.out}/variant_biases'
      result = self.binary.run(*given, '--report_only', f'--output_dir={out}')
      self.assertEqual(result.returncode, 3, result.stderr[-2000:])
      self.assertNotIn('Traceback', result.stderr)
      with open(f'{out}/summary.json') as f:
        flags = json.load(f)['meta']['flags']
      sgd = flags['grids'][0]
      self.assertEqual(sgd['optimizer'], 'sgd')
      self.assertEqual(sgd['variant_bias_inits'], expected, given)
      shutil.rmtree(out)

  @parameterized.parameters(
    ('--activations=relu,swish', 'unknown swish'),
    ('--activations=', '--activations must not be empty'),
    ('--learning_rates=0', '--learning_rates: 0 is not a finite number > 0'),
    ('--learning_rates=nan', '--learning_rates: nan is not a finite'),
    ('--learning_rates=inf', '--learning_rates: inf is not a finite'),
    ('--learning_rates=0.1,0.1', '--learning_rates repeats 0.1'),
    ('--bias_inits=-inf', '--bias_inits: -inf is not a finite number'),
    ('--optimizers=sgd,rmsprop', '--optimizers: unknown rmsprop'),
    ('--adam_learning_rates=0', '--adam_learning_rates: 0 is not'),
    ('--steps=30', '--steps: 30 is not a positive multiple'),
    ('--depths=0', '--depths: 0 is not an integer >= 1'),
    ('--cause_depths=0', '--cause_depths: 0 is not an integer >= 1'),
    ('--init_scales=1', '--init_scales: 1 is He, the baseline'),
    ('--init_scales=-2', '--init_scales: -2 is not a finite number > 0'),
    ('--input_shifts=0,3', '--input_shifts: 0 is the baseline'),
    ('--variant_bias_inits=0.5', '--variant_bias_inits: 0.5 not in --bias'),
  )
  def test_bad_flags(self, flag, message):
    result = self.binary.run(flag, f'--output_dir={self.out}/never')
    binaries.assert_one_line_error(self, result, message, f'{self.out}/never')


class PairedInitTest(absltest.TestCase):
  def test_step_zero_parameters_are_bit_identical_across_cells(self):
    import jax
    import jax.numpy as jnp

    from experiments import model

    dataset = jax.tree.map(jnp.asarray, dying_teacher.teacher_dataset(0))
    keys = dying_teacher.teacher_keys(0, 4, 16, 3)
    # A learning rate never enters the init; a bias init sets the hidden
    # biases alone. The key is what train_seed splits for its init.
    params = {
      b: jax.vmap(
        lambda k, b=b: model.init_params(
          jax.random.split(k)[0], dataset, 1.4142135, b, depth=4, width=16
        )
      )(keys)
      for b in (-1.0, -0.3, 0.0, 0.01)
    }
    for b, p in params.items():
      for name in ('w_in', 'w_hidden', 'w_out', 'slopes', 'b_out'):
        np.testing.assert_array_equal(p[name], params[0.0][name], name)
      np.testing.assert_array_equal(
        p['b_hidden'], np.full((3, 3, 16), b, np.float32)
      )
    # Other widths or depths get other keys; seeds differ from each other.
    self.assertFalse(
      np.array_equal(
        jax.random.key_data(keys),
        jax.random.key_data(dying_teacher.teacher_keys(0, 4, 32, 3)),
      )
    )
    self.assertFalse(
      np.array_equal(params[0.0]['w_in'][0], params[0.0]['w_in'][1])
    )


class LearningRateTrendTest(absltest.TestCase):
  def test_trend_is_per_seed_slope_over_finite_rates(self):
    from scipy import stats as scipy_stats

    lrs = [0.01, 0.1, 1.0, 10.0]
    # Seed x lr final dead fractions (one layer); seed 2 diverges at lr 10.
    dead = np.array(
      [[0.0, 0.1, 0.2, 0.4], [0.0, 0.0, 0.3, 0.3], [0.1, 0.1, 0.4, 0.0]]
    )
    finite = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]], bool)
    cells = {
      ('relu', 2, 8, lr, 0.0, *_UNTREATED): {
        'finite_seeds': finite[:, j].tolist(),
        # (seeds, records + 1, depth): the last record is what counts.
        'dead_per_layer': np.stack([np.zeros(3), dead[:, j]], axis=1)[
          ..., None
        ].tolist(),
      }
      for j, lr in enumerate(lrs)
    }
    settings = dying_settings.part(lrs, [0.0], depths=(2,), widths=(8,))
    (at,) = dying_effects.DeadCells.each(cells, settings)
    trend = dying_effects.lr_trend(at, 'relu', 0.0)
    x = np.log10(lrs)
    expected = [
      np.polyfit(x, dead[0], 1)[0],
      np.polyfit(x, dead[1], 1)[0],
      np.polyfit(x[:3], dead[2, :3], 1)[0],  # the diverged rate left out
    ]
    np.testing.assert_allclose(trend['slopes'], expected, rtol=1e-12)
    self.assertAlmostEqual(trend['mean'], np.mean(expected), places=12)
    self.assertAlmostEqual(
      trend['p'], scipy_stats.ttest_1samp(expected, 0.0).pvalue, places=12
    )
    self.assertEqual([r['diverged'] for r in trend['rows']], [0, 0, 0, 1])
    self.assertAlmostEqual(trend['rows'][3]['dead_mean'], 0.35)

  def test_bias_dose_response_at_init_keeps_diverged_seeds(self):

    biases = [-1.0, -0.3, 0.0]
    init = np.array([[0.5, 0.2, 0.0], [0.4, 0.1, 0.1]])  # (seeds, biases)
    cells = {
      ('relu', 2, 8, 0.1, b, *_UNTREATED): {
        # Seed 1 diverged later: its record 0 (before training) still counts.
        'finite_seeds': [True, False],
        'dead_per_layer': np.stack([init[:, j], np.ones(2)], 1)[
          ..., None
        ].tolist(),
      }
      for j, b in enumerate(biases)
    }
    settings = dying_settings.part([0.1], biases, depths=(2,), widths=(8,))
    (at,) = dying_effects.DeadCells.each(cells, settings)
    trend = dying_effects.bias_trend(at, 'relu', 0.1, 0)
    expected = [np.polyfit(biases, row, 1)[0] for row in init]
    np.testing.assert_allclose(trend['slopes'], expected, rtol=1e-12)
    # After training only seed 0 is finite: one slope, no test.
    self.assertEqual(dying_effects.bias_trend(at, 'relu', 0.1, -1)['n'], 1)

  def test_detectable_mean_has_power_0_8_and_flat_values_are_untestable(self):
    from scipy import stats as scipy_stats

    from experiments import stats

    se, n, alpha = 0.01, 5, 0.05 / 3
    d = stats.detectable_mean(se, n, alpha)
    t_crit = scipy_stats.t.ppf(1 - alpha / 2, n - 1)
    nct = scipy_stats.nct(n - 1, d / se)
    self.assertAlmostEqual(nct.sf(t_crit) + nct.cdf(-t_crit), 0.8, places=6)
    # Identical values (dead fractions come in steps): no variance, no test.
    flat = stats.one_sample([1 / 512] * 3)
    self.assertTrue(np.isnan(flat['p']))

  def test_remedy_is_tested_where_units_die(self):
    from scipy import stats as scipy_stats

    lrs = [0.01, 0.5, 0.9]
    # Final dead fraction (seeds, lrs) at bias 0 and 0.01; nothing dies at
    # lr 0.01 in either arm, so the regime is {0.5, 0.9}; seed 2 diverged
    # at 0.9 with bias 0.01.
    base = np.array([[0.0, 0.2, 0.4], [0.01, 0.1, 0.3], [0.0, 0.3, 0.5]])
    treated = np.array([[0.0, 0.1, 0.3], [0.0, 0.1, 0.2], [0.0, 0.2, 0.9]])
    finite = {0.0: np.ones((3, 3), bool), 0.01: np.ones((3, 3), bool)}
    finite[0.01][2, 2] = False
    cells = {}
    for bias, dead in ((0.0, base), (0.01, treated)):
      for j, lr in enumerate(lrs):
        cells[('relu', 2, 8, lr, bias, *_UNTREATED)] = {
          'finite_seeds': finite[bias][:, j].tolist(),
          'dead_per_layer': np.stack([np.zeros(3), dead[:, j]], 1)[
            ..., None
          ].tolist(),
        }
    settings = dying_settings.part(lrs, [0.0, 0.01], depths=(2,), widths=(8,))
    (at,) = dying_effects.DeadCells.each(cells, settings)
    effect = dying_effects.remedy_effect(at, 'relu', 0.01, 0.0)
    self.assertEqual(effect['lrs'], [0.5, 0.9])
    expected = [-0.1, (0.0 - 0.1) / 2, -0.1]  # seed 2: lr 0.5 only
    np.testing.assert_allclose(effect['changes'], expected, atol=1e-12)
    self.assertAlmostEqual(
      effect['p'], scipy_stats.ttest_1samp(expected, 0.0).pvalue, places=10
    )


class HalfDeadTest(absltest.TestCase):
  def test_runs_over_half_dead_against_a_constant_predictor(self):
    from scipy import stats as scipy_stats

    # Two cells, 3 seeds; seed 2 diverged in the second.
    cells = {
      ('sgd', 'relu', 2, 8, 0.1, 0.0, *_UNTREATED): {
        'finite_seeds': [True, True, True],
        'dead_per_layer': [[[0.0], [0.6]], [[0.0], [0.2]], [[0.0], [0.8]]],
        'train_accuracy': [[0.3, 0.5], [0.3, 0.7], [0.3, 0.4]],
      },
      ('adam', 'relu', 2, 8, 0.01, 0.0, *_UNTREATED): {
        'finite_seeds': [True, True, False],
        'dead_per_layer': [[[0.0], [0.9]], [[0.0], [0.55]], [[0.0], [1.0]]],
        'train_accuracy': [[0.3, 0.35], [0.3, 0.45], [0.3, 0.0]],
      },
      (
        'sgd',
        'elu',
        2,
        8,
        0.1,
        0.0,
        *_UNTREATED,
      ): {  # another activation: ignored
        'finite_seeds': [True, True, True],
        'dead_per_layer': [[[0.0], [0.9]]] * 3,
        'train_accuracy': [[0.3, 0.9]] * 3,
      },
    }
    test = dying_effects.dead_accuracy(cells, 'relu', 0.25)
    # Over half dead: seed 0 (0.5, 0.35), seed 1 (0.45), seed 2 (0.4).
    expected = [(0.25 + 0.10) / 2, 0.20, 0.15]
    self.assertEqual(test['n'], 3)
    self.assertAlmostEqual(test['mean'], np.mean(expected), places=12)
    self.assertEqual(test['over_half'], 4)
    counts = {b['dead']: b['runs'] for b in test['bins']}
    self.assertEqual(counts['[0.1, 0.3)'], 1)
    self.assertEqual(counts['[0.7, 1]'], 2)
    # No seed has runs on both sides of 50% here: no threshold test.
    self.assertEqual(test['threshold']['n'], 0)
    # Two cells just below and just above 50% dead: the drop per seed.
    near = {}
    for i, (dead, acc) in enumerate(
      (
        ([0.4, 0.3, 0.45], [0.7, 0.6, 0.65]),
        ([0.6, 0.7, 0.55], [0.5, 0.55, 0.4]),
      )
    ):
      near[('sgd', 'relu', 2, 8, 0.1 * (i + 1), 0.0, *_UNTREATED)] = {
        'finite_seeds': [True] * 3,
        'dead_per_layer': [[[0.0], [d]] for d in dead],
        'train_accuracy': [[0.3, a] for a in acc],
      }
    drop = dying_effects.dead_accuracy(near, 'relu', 0.25)['threshold']
    np.testing.assert_allclose(drop['mean'], np.mean([0.2, 0.05, 0.25]))
    self.assertAlmostEqual(
      drop['p'],
      scipy_stats.ttest_1samp([0.2, 0.05, 0.25], 0).pvalue,
      places=10,
    )
    # The probe's majority class: a constant predictor.
    d = dying_teacher.teacher_dataset(0)
    for part, labels in (('probe', d['y_eval'][:512]), ('train', d['y_train'])):
      self.assertAlmostEqual(
        dying_teacher.teacher_majority_rate(0, part),
        max(np.mean(labels == c) for c in range(4)),
      )


class ReportTest(absltest.TestCase):
  def test_every_seed_diverged_reads_in_words_without_a_warning(self):
    # Issue 28 item 7: a learning rate where every seed diverged was NaN
    # in prose ('1: nan +- nan') and np.nanmean of an all-NaN slice (a
    # RuntimeWarning) in dying_effects.regime_change.
    from experiments.dying_relu import claims as dying_claims

    def cell(dead, finite):
      return _claim_cell(dead, finite)

    cells = {}
    for lr in (0.01, 0.1, 1.0):
      for bias in (-1.0, 0.0, 0.01):
        dead = np.array([0.1, 0.2, 0.3]) - 0.05 * bias
        key = ('sgd', 'relu', 2, 8, lr, bias, *_UNTREATED)
        cells[key] = cell(dead, finite=lr < 1)
    biases = (-1.0, 0.0, 0.01)
    settings = Settings(
      activations=('relu',),
      grids=(Grid('sgd', (0.01, 0.1, 1.0), biases, biases),),
      depths=(2,),
      widths=(8,),
      cause_depths=(),
      init_scales=(),
      input_shifts=(),
    )
    with warnings.catch_warnings():
      warnings.simplefilter('error')
      text, verdicts = dying_claims.report(cells, settings)
      # Both arms of a pair diverged in every seed: not a pair where units
      # die, and no warning.
      every = cells['sgd', 'relu', 2, 8, 1.0, 0.0, *_UNTREATED]
      self.assertEqual(
        dying_effects.regime_change({1.0: (every, every)})['kept'], []
      )
    report_check.assert_finite_prose(self, text)
    self.assertIn('1: every seed diverged', text)
    self.assertGreater(report_check.assert_verdicts_have_reasons(self, text), 5)
    for name, v in verdicts.items():
      if v['verdict'] in ('SUPPORTED', 'CONTRADICTED') and 'held' in v:
        self.assertIn(' paired seeds), Holm p = ', v['reason'], name)

  def test_optimizers_never_mix_and_exit_needs_every_claim(self):
    from experiments.dying_relu import claims as dying_claims

    def cell(dead, finite=True):
      return {
        **_claim_cell(dead, finite),
        'final_dead_mean': float(np.mean(dead)),
      }

    cells = {}
    sgd_lrs, adam_lrs = [0.01, 0.1, 1.0], [0.001, 0.01]
    for j, lr in enumerate(sgd_lrs):  # rises with lr: a clear trend
      for bias in (-1.0, 0.0, 0.01):
        dead = np.array([0.1, 0.12, 0.14]) * (j + 1) - 0.05 * bias
        cells[('sgd', 'relu', 2, 8, lr, bias, *_UNTREATED)] = cell(dead)
    for lr in adam_lrs:  # Adam's cells carry a marker value
      key = ('adam', 'relu', 2, 8, lr, 0.0, *_UNTREATED)
      cells[key] = cell(np.full(3, 0.777))
    biases = (-1.0, 0.0, 0.01)
    settings = Settings(
      activations=('relu',),
      grids=(
        Grid('sgd', tuple(sgd_lrs), biases, biases),
        Grid('adam', tuple(adam_lrs), (0.0,), (0.0,)),
      ),
      depths=(2,),
      widths=(8,),
      cause_depths=(),
      init_scales=(),
      input_shifts=(),
    )
    text, verdicts = dying_claims.report(cells, settings)
    sgd, adam = text.split('## depth 2, width 8, adam')
    self.assertNotIn('0.777', sgd)
    # Adam's rates only, in order: none of SGD's.
    self.assertIn(
      'by learning rate: 0.001: 0.777 +- 0.000; 0.01: 0.777 +- 0.000.', adam
    )
    self.assertEqual(
      verdicts['depth 2, width 8, sgd: high lr raises ReLU dead fraction'][
        'verdict'
      ],
      'SUPPORTED',
    )
    # Adam has two rates: no trend (fewer than 3), so not every claim held.
    adam_lr = verdicts[
      'depth 2, width 8, adam: high lr raises ReLU dead fraction'
    ]
    self.assertIn('NOT TESTABLE', adam_lr['verdict'])
    self.assertFalse(adam_lr['held'])
    # Every unit that died stayed dead: "not recoverable" held, 0 of 27
    # (9 cells x 3 seeds); one unit back contradicts it.
    layer1 = verdicts[
      'depth 2, width 8, sgd: dead units not recoverable, layer 1'
    ]
    self.assertTrue(layer1['held'])
    self.assertEqual((layer1['recovered'], layer1['ever_dead']), (0, 27))
    self.assertEqual(
      layer1['verdict'], 'SUPPORTED (0 of 27 dead units came back; 3 seeds)'
    )
    back = next(c for k, c in cells.items() if k[0] == 'sgd')
    back['recovered'] = [[1], [0], [0]]
    _, verdicts = dying_claims.report(cells, settings)
    layer1 = verdicts[
      'depth 2, width 8, sgd: dead units not recoverable, layer 1'
    ]
    self.assertFalse(layer1['held'])
    self.assertTrue(layer1['verdict'].startswith('CONTRADICTED (1 of 27'))
    # Bias +0.01 decides nothing; a claim that did not hold does.
    self.assertNotIn(
      'held', verdicts['depth 2, width 8, sgd: bias 0.01 effect']
    )


if __name__ == '__main__':
  absltest.main()
