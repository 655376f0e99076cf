"""experiments/plots.py: every figure tells its series apart, marks where a
curve leaves the axes, and none is written empty.

`plots.figure_problems` is the check; the figure builders run here on
small inputs in the shapes the binaries store (each figure is checked as
`save_figure` writes it, through the JAXRELU_FIGURE_LOG hook). The
binaries' own figures are checked end to end by their tests
(test_born_dead, test_compare_variants, test_dying_relu,
test_selu_deep_stack), whose runs write the same log.
"""

import os
import shutil
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest

from experiments import plots, sweep
from experiments.born_dead import figures as born_dead_figures
from experiments.compare_variants import claims
from experiments.compare_variants import figures as variants_figures
from experiments.compare_variants import settings as variants_settings
from experiments.dying_relu import figures as dying_figures
from experiments.dying_relu import settings as dying_settings
from experiments.selu_deep_stack import stack

# selu_deep_stack's configurations (`selu_deep_stack.scenarios` with
# --activations=selu,relu): name, role. Controls include the activations
# the run did not ask for.
_SELU_CONFIGS = (
  ('selu (lecun_normal)', 'main'),
  ('relu (he_normal)', 'main'),
  ('selu, weight var 1.1/n', 'control'),
  ('selu, weight var 0.95/n', 'control'),
  ('selu, torch gain 3/4', 'control'),
  ('selu, he_normal', 'control'),
  ('selu, input var 0.25', 'recovery'),
  ('selu, input var 3', 'recovery'),
  ('selu, input var 16', 'recovery'),
  ('selu, input mean 1', 'recovery'),
  ('selu, alpha dropout', 'dropout'),
  ('selu, standard dropout', 'dropout'),
  ('elu (he_normal)', 'control'),
  ('tanh (glorot_normal)', 'control'),
)
_MODEL = {'sd_layer_mean': 0.01, 'sd_layer_std': 0.012}


def _selu_result(name: str, role: str, depth: int = 40) -> dict:
  """A row of `stack.evaluate` (the fields the figures read)."""
  layer = np.arange(1, depth + 1)
  k = sum(map(ord, name)) % 7
  mean = 0.02 * np.sin(layer + k)
  std = 1 + 0.01 * np.cos(layer * (k + 1))
  predicted_mean, predicted_std = np.zeros(depth), np.ones(depth)
  grad = 1.0716 ** (depth - layer)
  if name == 'selu, he_normal':
    # Drifts off the mean axes (ylim +-1.5); the theory overflows.
    mean = predicted_mean = 0.1 * layer
    std = predicted_std = 1.2**layer
    predicted_std = np.where(layer > 30, np.nan, predicted_std)
  if name == 'selu, input var 16':
    mean, std = 2.0 * 0.7**layer, 1 + 3 * 0.8**layer
  if name == 'selu, alpha dropout':  # vanishes
    grad = 1e-17 ** ((depth - layer) / (depth - 1))
  if name == 'selu, standard dropout':  # explodes
    grad = 1e7 ** ((depth - layer) / (depth - 1))
  return {
    'name': name,
    'role': role,
    'per_layer': {
      'mean': mean.tolist(),
      'std': std.tolist(),
      'predicted_mean': predicted_mean.tolist(),
      'predicted_std': predicted_std.tolist(),
      'grad_sq_norm': grad.tolist(),
    },
  }


def _variant_cell(act: str, depth: int, diverged: str = 'none') -> dict:
  """A stored compare_variants cell: curves of (splits, seeds, records + 1).

  diverged: 'none', 'one' (a seed from record 2 on) or 'all' (every seed).
  """
  splits, seeds, records = 2, 2, 4
  shape = (splits, seeds, records + 1)
  rng = np.random.default_rng(depth + len(act))
  t = np.arange(records + 1)
  loss = np.exp(-0.4 * t) * (1 + rng.uniform(0, 0.1, shape))
  if diverged == 'one':
    loss[0, 0, 2:] = np.nan
  elif diverged == 'all':
    loss[..., 3:] = np.inf
  acc = np.clip(0.5 + 0.1 * t + rng.uniform(0, 0.05, shape), 0, 1)
  cell = {
    'val_loss': loss + 0.1,
    'train_loss': loss,
    'test_acc': acc,
    'train_acc': acc,
    'dead': np.zeros((*shape, depth)),
    'act_mean': np.full((*shape, depth), 0.1),
    'config': {'record_every': 20, 'steps': 80},
  }
  if act.startswith('prelu'):
    cell['slope_mean'] = 0.25 + 0.01 * rng.standard_normal((*shape, depth))
  return {
    k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in cell.items()
  }


def _dying_cell(seeds_diverged: int, dead: float, seeds: int = 2) -> dict:
  """A stored dying_relu cell (the fields the figures read)."""
  records, depth = 3, 4
  grow = np.linspace(0, dead, records + 1)
  per_layer = np.repeat(grow[None, :, None], seeds, 0) * np.ones(depth)
  loss = np.ones((seeds, records))
  loss[:seeds_diverged, 1:] = np.nan
  ok = np.isfinite(loss).all(-1)
  final = per_layer[ok, -1].mean(-1) if ok.any() else np.full(1, np.nan)
  return {
    'dead_per_layer': per_layer.tolist(),
    'loss': loss.tolist(),
    'record_every': 10,
    'finite_seeds': ok.tolist(),
    'final_dead_mean': float(final.mean()),
    'final_dead_std': float(final.std()),
    'diverged': int((~ok).sum()),
  }


class FigureProblemsTest(absltest.TestCase):
  """The check itself, on hand-made figures."""

  def setUp(self):
    super().setUp()
    self.plt = plots.pyplot()
    self.fig, self.ax = self.plt.subplots()
    self.addCleanup(self.plt.close, self.fig)

  def test_distinct_series_pass(self):
    self.ax.plot([0, 1], [0, 1], color='C0', ls='-', marker='o', label='a')
    self.ax.plot([0, 1], [1, 0], color='C0', ls='--', marker='o', label='b')
    self.ax.axhline(0.5, gid=plots.REFERENCE)  # not a series
    self.ax.legend()
    self.assertEqual(plots.figure_problems(self.fig), [])

  def test_two_series_in_one_style_are_a_problem(self):
    self.ax.plot([0, 1], [0, 1], color='C0', ls='-.', label='alpha dropout')
    self.ax.plot([0, 1], [1, 0], color='C0', ls='-.', label='std dropout')
    (problem,) = plots.figure_problems(self.fig)
    self.assertIn("'alpha dropout' and 'std dropout' share colour", problem)

  def test_dash_patterns_are_told_apart_from_dashes(self):
    self.ax.plot([0, 1], [0, 1], color='C1', ls='--')
    self.ax.plot([0, 1], [1, 0], color='C1', ls=(0, (5, 1, 1, 1)))
    self.assertEqual(plots.figure_problems(self.fig), [])
    self.ax.plot([0, 1], [1, 1], color='C1', ls=(0, (5, 1, 1, 1)))
    self.assertLen(plots.figure_problems(self.fig), 1)

  def test_a_legend_entry_twice_is_a_problem(self):
    self.ax.plot([0, 1], [0, 1], color='C0', label='relu')
    self.ax.plot([0, 1], [1, 0], color='C1', label='relu')
    self.ax.legend()
    problems = plots.figure_problems(self.fig)
    self.assertIn("a legend lists ['relu'] more than once", problems)

  def test_a_label_in_two_panels_keeps_one_style(self):
    fig, (a, b) = self.plt.subplots(1, 2)
    self.addCleanup(self.plt.close, fig)
    a.plot([0, 1], [0, 1], color='C0', label='relu')
    b.plot([0, 1], [0, 1], color='C1', label='relu')
    self.assertEqual(
      plots.figure_problems(fig), ["'relu' is drawn in 2 styles"]
    )

  def test_a_curve_off_the_axes_or_ending_needs_a_mark(self):
    self.ax.plot([0, 1, 2, 3], [0, 1, 5, np.nan], color='C0')
    self.ax.plot([0, 1, 2, 3], [0.5, 0.2, np.nan, np.nan], color='C1')
    self.ax.set_ylim(-1, 2)
    problems = plots.figure_problems(self.fig)
    self.assertLen(problems, 2)
    self.assertIn('leaves the axes or ends at x=2', problems[0])
    self.assertIn('leaves the axes or ends at x=1', problems[1])
    plots.mark_exits(self.ax)
    self.assertEqual(plots.figure_problems(self.fig), [])
    self.assertEqual(self.ax.get_ylim(), (-1, 2))
    marks = [ln for ln in self.ax.get_lines() if ln.get_gid() == plots.MARK]
    self.assertEqual([m.get_marker() for m in marks], ['^', 'x'])

  def test_exits_mark_each_run_off_the_axes_once(self):
    x = np.arange(7)
    y = np.array([5, 0, 5, 5, -5, 0, 0])  # starts above, leaves twice
    self.assertEqual(
      plots.exits(x, y, (-1, 1), log=False),
      [(0, 1, '^'), (2, 1, '^'), (4, -1, 'v')],
    )
    # On a log axis, 0 and below lie under the axes.
    self.assertEqual(
      plots.exits(x[:3], [1, 0, 1], (0.1, 10), log=True), [(1, 0.1, 'v')]
    )

  def test_an_empty_panel_and_an_empty_figure(self):
    fig, (a, b) = self.plt.subplots(1, 2)
    self.addCleanup(self.plt.close, fig)
    self.assertEqual(plots.figure_problems(fig), [plots.EMPTY])
    a.plot([0, 1], [np.nan, np.nan])  # nothing drawn
    self.assertEqual(plots.figure_problems(fig), [plots.EMPTY])
    a.imshow(np.full((2, 2), np.nan))
    self.assertEqual(plots.figure_problems(fig), [plots.EMPTY])
    b.imshow([[0.1, np.nan]])  # a heatmap with a finite cell is data
    self.assertEqual(plots.figure_problems(fig), ['panel 0: no data'])

  def test_an_empty_figure_is_not_written_and_says_why(self):
    out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, out)
    path = os.path.join(out, 'prelu_slopes.png')
    with open(path, 'w') as f:
      f.write('a figure of an earlier run')
    with self.assertLogs('absl', 'INFO') as logs:
      written = plots.save_figure(
        self.fig, path, why_empty='no PReLU in this run'
      )
    self.assertIsNone(written)
    self.assertEqual(os.listdir(out), [])  # the stale one removed too
    (line,) = logs.output
    self.assertIn(
      'prelu_slopes.png not written: no PReLU in this run (the one of an '
      'earlier run removed)',
      line,
    )

  def test_distinct_styles_shade_and_mark_variants_of_one_colour(self):
    names = ['selu, input var 0.25', 'selu, input var 3', 'selu, input mean 1']
    styles = plots.distinct_styles(names, linestyle='-')
    keys = {(s['color'], s['linestyle'], s['marker']) for s in styles}
    self.assertLen(keys, 3)
    self.assertLen({s['color'] for s in styles}, 3)
    self.assertEqual(styles[0], {**plots.style(names[0]), 'linestyle': '-'})


class BuildersTest(absltest.TestCase):
  """Each builder on small inputs: every figure passes figure_problems."""

  def setUp(self):
    super().setUp()
    self.out = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.out)
    self.log = os.path.join(self.out, 'figures.jsonl')
    env = mock.patch.dict(os.environ, {plots.FIGURE_LOG_ENV: self.log})
    env.start()
    self.addCleanup(env.stop)
    # The figures as save_figure got them (it closes each).
    self.figures = {}
    real = plots.save_figure

    def save(fig, path, *args, **kwargs):
      self.figures[os.path.basename(path)] = fig
      return real(fig, path, *args, **kwargs)

    patch = mock.patch.object(plots, 'save_figure', side_effect=save)
    patch.start()
    self.addCleanup(patch.stop)

  def assert_figures(self, written, skipped=()):
    """The log: these PNGs written without a problem, those not written."""
    entries = {
      os.path.basename(e['path']): e for e in plots.read_figure_log(self.log)
    }
    self.assertEqual(
      {n: e['problems'] for n, e in entries.items() if e['problems']}, {}
    )
    self.assertEqual(
      sorted(n for n, e in entries.items() if e['written']), sorted(written)
    )
    self.assertEqual(
      sorted(n for n, e in entries.items() if not e['written']),
      sorted(skipped),
    )
    self.assertEqual(
      sorted(n for n in os.listdir(self.out) if n.endswith('.png')),
      sorted(written),
    )

  def _series(self, name: str, panel: int = 0) -> list:
    return plots.series(plots.data_axes(self.figures[name])[panel])

  def test_selu_stack_every_configuration_in_its_own_style(self):
    results = [_selu_result(*c) for c in _SELU_CONFIGS]
    paths = stack.plot(results, self.out, _MODEL)
    names = (
      'stats_main.png',
      'stats_controls.png',
      'stats_recovery_dropout.png',
      'gradients.png',
    )
    self.assertEqual([os.path.basename(p) for p in paths], list(names))
    self.assert_figures(names)
    # Measured and theory of every configuration, in both panels.
    roles = {'stats_controls.png': ('control',)}
    roles['stats_recovery_dropout.png'] = ('recovery', 'dropout')
    for name, role in roles.items():
      n = sum(r in role for _, r in _SELU_CONFIGS)
      for panel in (0, 1):
        self.assertLen(self._series(name, panel), 2 * n)
    # The drifting control leaves the mean axes, its theory overflows:
    # marked ('^' on the top edge, 'x' where the theory stops).
    ax = plots.data_axes(self.figures['stats_controls.png'])[0]
    marks = {ln.get_marker() for ln in ax.get_lines() if ln.get_gid() == 'mark'}
    self.assertEqual(marks, {'^'})
    ax = plots.data_axes(self.figures['stats_controls.png'])[1]
    marks = {ln.get_marker() for ln in ax.get_lines() if ln.get_gid() == 'mark'}
    self.assertEqual(marks, {'x'})
    # Alpha and standard dropout: one vanishes, one explodes; each its own.
    by_label = {ln.get_label(): ln for ln in self._series('gradients.png')}
    self.assertLen(by_label, 4)
    self.assertNotEqual(
      plots.line_style(by_label['selu, alpha dropout']),
      plots.line_style(by_label['selu, standard dropout']),
    )

  def _variant_table(self, acts, diverged=None, datasets=('iris', 'wine')):
    settings = variants_settings.Settings(
      activations=tuple(acts),
      datasets=tuple(datasets),
      depths=(2, 4) if len(datasets) > 1 else (2,),
      learning_rate=0.01,
      target_loss=0.5,
      placement=sweep.Placement(sweep.Task(), self.out, self.out),
    )
    cells = {
      (ds, a, d, 'adam', 0.01): _variant_cell(
        a, d, (diverged or {}).get((ds, a, d), 'none')
      )
      for ds in settings.datasets
      for a in acts
      for d in settings.depths
    }
    return claims.Results(cells, settings)

  def test_variant_figures(self):
    acts = (
      'relu',
      'leaky_relu',
      'leaky_relu_0.25',
      'prelu',
      'prelu_channel',
      'elu',
      'celu',
      'selu',
      'selu_no_dropout',
    )
    diverged = {('iris', 'relu', 4): 'one', ('wine', 'selu', 4): 'all'}
    variants_figures.variant_figures(self._variant_table(acts, diverged))
    self.assert_figures(
      ('accuracy_vs_depth.png', 'loss_curves.png', 'prelu_slopes.png')
    )
    self.assertLen(self._series('loss_curves.png'), len(acts))
    self.assertLen(self._series('prelu_slopes.png'), 4)  # 2 x 2 depths

  def test_variant_figures_without_prelu_write_no_slopes(self):
    with self.assertLogs('absl', 'INFO') as logs:
      variants_figures.variant_figures(
        self._variant_table(('relu',), datasets=('iris',))
      )
    self.assert_figures(
      ('accuracy_vs_depth.png', 'loss_curves.png'), ('prelu_slopes.png',)
    )
    self.assertIn(
      'prelu_slopes.png not written: no PReLU in this run',
      '\n'.join(logs.output),
    )

  def _dying_settings(self, lrs, biases, optimizer, activations):
    grid = dying_settings.Grid(optimizer, lrs, biases, biases)
    return dying_settings.Settings(
      activations=activations,
      grids=(grid,),
      grid=grid,
      depths=(4,),
      widths=(16,),
      placement=sweep.Placement(sweep.Task(), self.out, self.out),
    )

  def test_dying_figures_tell_not_run_from_diverged(self):
    lrs, biases = (0.01, 0.1, 0.5), (-1.0, 0.0, 0.1)
    settings = self._dying_settings(
      lrs, biases, 'sgd', ('relu', 'prelu', 'elu')
    )
    cells = {}
    for lr in lrs:
      for b in biases:
        gone = 2 if lr == 0.5 and b == 0.0 else 1 if lr == 0.5 else 0
        cells['relu', 4, 16, lr, b] = _dying_cell(gone, 0.2 - b / 10)
        if b <= 0 and lr < 0.5:  # PReLU at some cells; ELU at none
          cells['prelu', 4, 16, lr, b] = _dying_cell(0, 0.05)
    del cells['relu', 4, 16, 0.1, -1.0]  # not run
    dying_figures.dead_fraction_figures(cells, settings)
    self.assert_figures(
      ('dead_heatmaps_sgd.png', 'dead_vs_step_sgd.png', 'dead_vs_lr_sgd.png')
    )
    heat = self.figures['dead_heatmaps_sgd.png']
    self.assertEqual(
      [ax.get_title() for ax in plots.data_axes(heat)], ['relu', 'prelu']
    )
    relu = plots.data_axes(heat)[0]
    hatched = [p for p in relu.patches if p.get_gid() == plots.DIVERGED_CELL]
    self.assertLen(hatched, 1)
    self.assertEqual(hatched[0].get_xy(), (2 - 0.5, 1 - 0.5))
    (legend,) = heat.legends
    self.assertEqual(
      [t.get_text() for t in legend.get_texts()],
      ['not run', 'every seed diverged'],
    )
    # A line per ReLU cell (8 of 9), a cross per diverged seed.
    self.assertLen(self._series('dead_vs_step_sgd.png'), 8)
    # The cell where every seed diverged has no dead fraction: the curve
    # against the learning rate ends there, with a mark.
    dead_vs_lr = plots.data_axes(self.figures['dead_vs_lr_sgd.png'])[0]
    self.assertIn('x', [ln.get_marker() for ln in dead_vs_lr.get_lines()])

  def test_a_heatmap_of_nothing_is_not_written(self):
    settings = self._dying_settings((0.1,), (0.0,), 'adam', ('relu',))
    dying_figures.dead_fraction_figures({}, settings)
    self.assert_figures(
      (),
      (
        'dead_heatmaps_adam.png',
        'dead_vs_step_adam.png',
        'dead_vs_lr_adam.png',
      ),
    )

  def test_born_dead_and_dead_accuracy(self):
    rows = [
      {
        'init': init,
        'width': width,
        'depth': depth,
        'probability': p,
        'ci95_low': max(0.0, p - 0.05),
        'ci95_high': min(1.0, p + 0.05),
        'closed_form': p,
      }
      for init in ('he_zero_bias', 'rai')
      for width in (3, 10)
      for depth in (2, 10, 30)
      if (p := 1 - (1 - 2.0**-width) ** depth) is not None
    ]
    inits = ('he_zero_bias', 'he_random_bias', 'rai')
    path = born_dead_figures.born_dead_figure(
      rows, inits, f'{self.out}/born_dead.png'
    )
    self.assertEqual(path, f'{self.out}/born_dead.png')
    self.assertLen(self._series('born_dead.png'), 4)  # measured + closed
    runs = [(0.2, 0.9, 'sgd'), (0.7, 0.5, 'sgd'), (0.6, 0.6, 'adam')]
    test = {'runs': runs, 'chance': 0.5}
    dying_figures.dead_accuracy_figure(test, f'{self.out}/dead_vs_accuracy.png')
    dying_figures.dead_accuracy_figure(
      {'runs': [], 'chance': 0.5}, f'{self.out}/empty.png'
    )
    self.assert_figures(
      ('born_dead.png', 'dead_vs_accuracy.png'), ('empty.png',)
    )


if __name__ == '__main__':
  absltest.main()
