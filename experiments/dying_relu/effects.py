"""dying_relu's measures: a cell's dead fractions, and each claim's effect
and its test."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from experiments import model, stats
from experiments.dying_relu.settings import Settings

# A unit whose mean derivative on the probe set is below this passes (on
# average) less than 1/1000 of the gradient: gradient-starved. A dead ReLU
# unit passes 0; a leaky one at least its slope, 0.01; an ELU or SELU unit
# only when its pre-activations sit below about -7 on every probe input.
STARVED = 1e-3


def dead_cell(curves: dict, i: int, activation: str) -> dict:
  """One cell of `model.train_grid`'s curves on the teacher task.

  Args:
    curves: `model.train_grid`'s output on the teacher task, each with
      leading axes (cells, seeds).
    i: the cell.
    activation: its activation (PReLU's learned slopes are kept).

  Returns:
    The stored record: curves per seed (accuracy on the probe and on the
    training set), and summaries over the seeds that did not diverge. Per
    seed, record and layer: the dead fraction (never positive on the
    training set), the gradient-starved fraction (mean |derivative| there
    below STARVED) and the mean |derivative| over units. Per seed and layer:
    'ever_dead', the units dead at some record before the last, and
    'recovered', those of them alive at the last (0 where it diverged).
  """
  dead = curves['dead'][i]  # (seeds, records + 1, depth)
  loss = curves['probe_loss'][i][:, 1:]  # after each chunk of training
  # A seed diverged if its loss went non-finite; its dead fraction then
  # measures divergence, not dying units.
  ok = np.isfinite(loss).all(-1)
  final_dead = dead[ok, -1].mean(-1) if ok.any() else np.full(1, np.nan)
  units = curves['dead_units'][i] & ok[:, None, None, None]
  ever = units[:, :-1].any(1)  # (seeds, depth, width)
  slope = np.asarray(curves['unit_slope'][i], np.float64)
  round4 = lambda a: np.round(np.asarray(a, np.float64), 4).tolist()
  return {
    'dead_per_layer': dead.tolist(),
    'starved_per_layer': round4((slope < STARVED).mean(-1)),
    'slope_per_layer': round4(slope.mean(-1)),
    'ever_dead': ever.sum(-1).tolist(),
    'recovered': (ever & ~units[:, -1]).sum(-1).tolist(),
    'accuracy': curves['probe_acc'][i].tolist(),
    'train_accuracy': curves['train_acc'][i].tolist(),
    'loss': loss.tolist(),
    'born_dead': curves['born_dead'][i][:, 0].tolist(),
    # Learned PReLU slope of each hidden layer, per seed.
    'final_slopes': (
      curves['slope_shared'][i][:, -1].tolist() if activation == 'prelu' else []
    ),
    'finite_seeds': ok.tolist(),
    'final_dead_mean': float(final_dead.mean()),
    'final_dead_std': float(final_dead.std()),
    'initial_dead_mean': float(dead[:, 0].mean()),
    'initial_full_layer_dead': float((dead[:, 0] == 1.0).any(-1).mean()),
    'final_accuracy_mean': float(curves['probe_acc'][i][:, -1].mean()),
    'final_loss_mean': float(loss[ok, -1].mean()) if ok.any() else None,
    'diverged': int((~ok).sum()),
  }


def reference_bias(biases: Sequence[float]) -> float:
  """The bias init claims other than the bias's own are made at: 0 when
  the grid has it, else its middle value."""
  biases = sorted(float(b) for b in biases)
  return 0.0 if 0.0 in biases else biases[len(biases) // 2]


def reference_lr(lrs: Sequence[float]) -> float:
  """The learning rate the bias dose-response after training and the
  causes (init, input shift, depth) are tested at: the grid's second
  lowest (SGD's 0.1), a normal rate below the dying regime, where a cause
  shows as a rise from near zero."""
  lrs = sorted(float(v) for v in lrs)
  return lrs[min(1, len(lrs) - 1)]


class DeadCells:
  """dying_relu's stored cells of one optimizer at one (depth, width).

  A cell counts for the claims only if no seed diverged ('stable'):
  otherwise its dead fraction measures divergence, not dying units.
  """

  def __init__(self, cells: dict, settings: Settings, depth: int, width: int):
    self.cells, self.depth, self.width = cells, depth, width
    self.activations = settings.activations
    self.lrs = sorted(float(v) for v in settings.grid.learning_rates)
    self.biases = sorted(float(v) for v in settings.grid.bias_inits)
    self.settings = settings

  @classmethod
  def each(cls, cells: dict, settings: Settings) -> list[DeadCells]:
    """One per (depth, width) of the flags, depths outermost.

    Args:
      cells: stored cells by (activation, depth, width, lr, bias,
        *TREATMENTS).
      settings: the binary's checked flags.
    """
    return [
      cls(cells, settings, int(depth), int(width))
      for depth in settings.depths
      for width in settings.widths
    ]

  def get(
    self, act: str, lr: float, bias: float, *, depth=None, **treatment
  ) -> dict | None:
    """The stored cell, untreated unless `treatment` (TREATMENTS) says."""
    treat = dict(zip(model.TREATMENTS, model.UNTREATED, strict=True))
    treat.update(treatment)
    depth = self.depth if depth is None else depth
    key = (
      act,
      depth,
      self.width,
      lr,
      bias,
      *(treat[t] for t in model.TREATMENTS),
    )
    return self.cells.get(key)

  def stable(self, act: str, lr: float, bias: float) -> dict | None:
    """The cell if it is stored and no seed diverged, else None."""
    cell = self.get(act, lr, bias)
    return cell if cell is not None and cell['diverged'] == 0 else None

  def trained(self, act: str) -> list[dict]:
    """The stable cells of act, learning rates outermost."""
    cells = [self.stable(act, lr, b) for lr in self.lrs for b in self.biases]
    return [c for c in cells if c is not None]

  def diverged(self) -> list[tuple]:
    """(activation, lr, bias) of each stored cell where a seed diverged."""
    return sorted(
      (act, lr, b)
      for act in self.activations
      for lr in self.lrs
      for b in self.biases
      if (c := self.get(act, lr, b)) and c['diverged']
    )


# A final dead fraction from which units count as dying (remedies are
# tested at the learning rates where the untreated net reaches it).
DYING = 0.05


def seed_trend(columns: Sequence[np.ndarray], x: Sequence[float]) -> dict:
  """Per-seed least-squares slopes of values against x, and their test.

  Args:
    columns: per x, the value of every seed; NaN where a seed has none (it
      diverged).
    x: the abscissae.

  Returns:
    'slopes' per seed (NaN where fewer than 3 values), and over the seeds
    with a slope: 'n', 'mean' with its t-based 95% 'ci', the one-sample
    two-sided t-test 'p', Wilcoxon's signed-rank 'wilcoxon_p', and
    'detectable', the mean slope that test detects with probability 0.8.
  """
  x = np.asarray(x, np.float64)
  out = {}
  slopes = []
  values = np.stack(columns, axis=1) if len(columns) else np.zeros((0, 0))
  for row in np.asarray(values, np.float64):
    ok = np.isfinite(row)
    if ok.sum() >= 3 and np.ptp(x[ok]) > 0:
      slopes.append(float(np.polyfit(x[ok], row[ok], 1)[0]))
    else:
      slopes.append(math.nan)
  out.update(stats.one_sample(slopes))
  out['slopes'] = slopes
  return out


def regime_change(
  pairs: Mapping, metric: str = 'dead', select: str = 'dead'
) -> dict:
  """A paired change where units die: treated minus base, per seed.

  Args:
    pairs: label -> (base cell, treated cell); None where not stored.
    metric: what changes: 'dead', 'starved' (fractions, mean over layers)
      or 'accuracy', at the end of training.
    select: what says units die: a pair is kept where its two arms' final
      `select`, averaged over both arms and their finite seeds, is at least
      DYING. Selecting on both arms, not on the base alone, does not bias
      the difference under the null.

  Per seed, the change averaged over the kept pairs where the seed stayed
  finite in both cells; then `one_sample` over the seeds.

  Returns:
    `one_sample`'s test, 'kept' (labels), 'changes' per seed and
    'diverged': per kept label, the seeds diverged in (base, treated).
  """
  kept = [
    label
    for label, (base, treated) in pairs.items()
    if base is not None
    and treated is not None
    # A pair where every seed diverged in both cells is not kept (NaN).
    and stats.nanmean(
      np.concatenate([_at_end(base, select), _at_end(treated, select)])
    )
    >= DYING
  ]
  if not kept:
    return {**stats.one_sample([]), 'kept': [], 'changes': [], 'diverged': {}}
  change = np.stack(
    [_at_end(pairs[k][1], metric) - _at_end(pairs[k][0], metric) for k in kept],
    axis=1,
  )  # (seeds, kept), NaN where a seed diverged in either cell
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    per_seed = np.nanmean(change, axis=1)
  diverged = {
    k: [int(np.sum(~np.asarray(c['finite_seeds']))) for c in pairs[k]]
    for k in kept
  }
  return {
    **stats.one_sample(per_seed),
    'kept': kept,
    'changes': per_seed.tolist(),
    'diverged': diverged,
  }


def remedy_effect(at: DeadCells, act: str, bias: float, base: float) -> dict:
  """A bias init as a remedy, where units die: `regime_change` of the
  final dead fraction from `base` to `bias`, over the learning rates
  ('lrs': those kept)."""
  out = regime_change(
    {lr: (at.get(act, lr, base), at.get(act, lr, bias)) for lr in at.lrs}
  )
  return {**out, 'lrs': out['kept']}


def lower_lr_effect(at: DeadCells, act: str, bias: float) -> dict:
  """The lower-learning-rate remedy: `regime_change` of the final dead
  fraction from each rate of the grid to the next lower one, over the
  pairs of neighbours where units die ('kept': their higher rates)."""
  lrs = at.lrs
  return regime_change(
    {
      hi: (at.get(act, hi, bias), at.get(act, lo, bias))
      for lo, hi in itertools.pairwise(lrs)
    }
  )


def variant_effect(at: DeadCells, variant: str, act: str = 'relu') -> dict:
  """A variant as a remedy, judged on the gradient: `regime_change` of the
  final gradient-starved fraction from `act` to `variant`, over the
  (lr, bias) cells where units are starved (dead, for ReLU)."""
  return regime_change(
    {
      (lr, b): (at.get(act, lr, b), at.get(variant, lr, b))
      for lr in at.lrs
      for b in at.biases
    },
    'starved',
    'starved',
  )


def revival_effect(at: DeadCells, metric: str) -> dict:
  """ReLU with ReDo revival against without, at the reference bias:
  `regime_change` of the final `metric` over the learning rates where
  units die."""
  b0 = reference_bias(at.biases)
  pairs = {
    lr: (at.get('relu', lr, b0), at.get('relu', lr, b0, revive=True))
    for lr in at.lrs
  }
  return regime_change(pairs, metric, 'dead')


def treatment_effect(at: DeadCells, record: int, **treatment) -> dict:
  """A cause as a paired change: ReLU's dead fraction (mean over layers)
  with `treatment` minus without, per seed, at the reference learning
  rate and bias, at `record` (0: at initialisation, -1: after training);
  `one_sample` over the seeds finite in both."""
  lr, b0 = reference_lr(at.lrs), reference_bias(at.biases)
  base, treated = at.get('relu', lr, b0), at.get('relu', lr, b0, **treatment)
  if base is None or treated is None:
    return stats.one_sample([])
  return stats.one_sample(_dead_at(treated, record) - _dead_at(base, record))


def cause_trend(at: DeadCells, knob: str, values, record: int) -> dict:
  """A cause's dose-response: per seed, the slope of ReLU's dead fraction
  at `record` against `values` of `knob` ('input_shift', or 'depth' with
  log2 of the depth as abscissa), at the reference learning rate and
  bias. Seeds are paired across shifts by construction; across depths
  the network (and its keys) differ, so seed s is a replicate there.

  Returns:
    `seed_trend`'s test, 'record', 'knob', and 'rows' per value.
  """
  lr, b0 = reference_lr(at.lrs), reference_bias(at.biases)
  cells = [(v, at.get('relu', lr, b0, **{knob: v})) for v in sorted(values)]
  cells = [(v, c) for v, c in cells if c is not None]
  columns = [_dead_at(c, record) for _, c in cells]
  xs = [v for v, _ in cells]
  out = {'rows': _rows(knob, xs, columns), 'record': record, 'knob': knob}
  x = np.log2(xs) if knob == 'depth' else xs
  return {**out, **seed_trend(columns, x)}


def recovery(at: DeadCells, revive: bool = False) -> dict:
  """ "A dead unit is not recoverable": ReLU's units per layer, over every
  stored cell of the block (with or without revival).

  A unit counts as ever dead if it is dead (never positive on the probe)
  at some record before the last; as recovered if it is alive at the last.
  Seeds that diverged count nothing.

  Returns:
    'layers': per layer, `clopper_pearson` of the pooled counts (k
    recovered of n ever dead; 'rate', 'low', 'high' where n > 0; units of
    one seed are not independent: read the interval as descriptive);
    'first' and 'deeper': `one_sample` of the per-seed recovered fraction
    in layer 1 and in layers 2 and up (pooled over them); 'contrast': per
    seed, deeper minus first.
  """
  # Every ReLU cell of the block: the init-scale and input-shift cells too
  # (they are where first-layer units die).
  cells = [
    c
    for (act, depth, width, *_, revived), c in at.cells.items()
    if (act, depth, width) == ('relu', at.depth, at.width) and revived == revive
  ]
  if not cells:
    empty = stats.one_sample([])
    return {'layers': [], 'first': empty, 'deeper': empty, 'contrast': empty}
  ever = sum(np.asarray(c['ever_dead'], np.float64) for c in cells)
  back = sum(np.asarray(c['recovered'], np.float64) for c in cells)
  layers = []
  for layer in range(ever.shape[1]):
    n, k = int(ever[:, layer].sum()), int(back[:, layer].sum())
    interval = stats.clopper_pearson(k, n) if n else {'k': 0, 'n': 0}
    layers.append({'layer': layer + 1, **interval})
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    first = back[:, 0] / ever[:, 0]
    deeper = back[:, 1:].sum(1) / ever[:, 1:].sum(1)
  return {
    'layers': layers,
    'first': stats.one_sample(first),
    'deeper': stats.one_sample(deeper),
    'contrast': stats.one_sample(deeper - first),
    'first_seeds': first.tolist(),
    'deeper_seeds': deeper.tolist(),
  }


def _at_end(cell: dict, metric: str) -> np.ndarray:
  """Per seed, `metric` ('dead', 'starved': mean over layers; 'accuracy')
  at the end of training; NaN where the seed diverged."""
  if metric == 'accuracy':
    values = np.asarray(cell['accuracy'], np.float64)[:, -1]
  else:
    values = np.asarray(cell[f'{metric}_per_layer'], np.float64)[:, -1]
    values = values.mean(-1)
  return np.where(np.asarray(cell['finite_seeds']), values, np.nan)


def _dead_at(cell: dict, record: int) -> np.ndarray:
  """Per-seed dead fraction (mean over layers) at a record; NaN where the
  seed diverged (for any record but the first, taken before training)."""
  dead = np.asarray(cell['dead_per_layer'], np.float64)[:, record].mean(-1)
  if record == 0:
    return dead
  return np.where(np.asarray(cell['finite_seeds']), dead, np.nan)


def _rows(key: str, xs, columns) -> list[dict]:
  rows = []
  for x, col in zip(xs, columns, strict=True):
    finite = col[np.isfinite(col)]
    rows.append(
      {
        key: x,
        'diverged': int(np.sum(~np.isfinite(col))),
        'seeds': int(col.size),
        'dead_mean': float(finite.mean()) if finite.size else math.nan,
        'dead_std': float(finite.std()) if finite.size else math.nan,
      }
    )
  return rows


def lr_trend(at: DeadCells, act: str, bias: float) -> dict:
  """The learning-rate claim: the trend of the final dead fraction with lr.

  Seeds are paired by construction (`teacher.teacher_keys`), so each seed
  gives a slope (`seed_trend`): of its final dead fraction (mean over
  layers) against log10(learning rate), over the rates where that seed
  stayed finite. Divergence is its own outcome: per learning rate, the
  seeds that diverged and the dead fraction of those that did not.

  Returns:
    `seed_trend`'s test, 'bias', and 'rows': per learning rate (lr,
    diverged, seeds, dead mean, dead std).
  """
  lrs = [lr for lr in at.lrs if at.get(act, lr, bias) is not None]
  columns = [_dead_at(at.get(act, lr, bias), -1) for lr in lrs]
  out = {'rows': _rows('lr', lrs, columns), 'bias': bias}
  return {**out, **seed_trend(columns, np.log10(lrs))}


def low_lr_effect(at: DeadCells, act: str, bias: float) -> dict:
  """The too-low learning rate claim: the lowest rate against the next.

  Per seed (paired), the final dead fraction at the grid's lowest learning
  rate minus that at the next one; `one_sample` over the seeds finite in
  both. Positive: the lower rate leaves more units dead (units dead at
  init have no time to come back as the layers below them move).
  """
  lrs = [lr for lr in at.lrs if at.get(act, lr, bias) is not None]
  if len(lrs) < 2:
    return {**stats.one_sample([]), 'lrs': lrs[:2]}
  low, next_ = (_dead_at(at.get(act, lr, bias), -1) for lr in lrs[:2])
  return {**stats.one_sample(low - next_), 'lrs': lrs[:2]}


def bias_trend(at: DeadCells, act: str, lr: float, record: int) -> dict:
  """The bias claim: the dose-response of the dead fraction to the bias.

  Per seed (paired: the same weights at every bias), the slope of its dead
  fraction at `record` (0: at initialisation, -1: after training at `lr`)
  against the bias init, over every bias of the grid.

  Returns:
    `seed_trend`'s test, 'lr', 'record', and 'rows' per bias.
  """
  biases = [b for b in at.biases if at.get(act, lr, b) is not None]
  columns = [_dead_at(at.get(act, lr, b), record) for b in biases]
  out = {'rows': _rows('bias', biases, columns), 'lr': lr, 'record': record}
  return {**out, **seed_trend(columns, biases)}


# Dead-fraction bins for the ">50% dead" claim's table.
DEAD_BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)


def dead_accuracy(
  cells: dict, act: str, chance: float, accuracy: str = 'train_accuracy'
) -> dict:
  """The ">50% dead cannot fit" claim: accuracy against the dead fraction.

  Args:
    cells: stored cells by (optimizer, activation, depth, width, lr, bias,
      *TREATMENTS): every cell of `act`, treated ones included (they widen
      the range of dead fractions).
    act: the activation (dead is meaningful for relu and relu6).
    chance: the majority-class rate of the part `accuracy` is measured on
      (a constant predictor's accuracy).
    accuracy: the stored curve: 'train_accuracy' (can it fit the data?) or
      'accuracy' (the held-out probe).

  Every seed that stayed finite in a cell of `act` is a run: its final
  dead fraction (mean over layers) and accuracy. Runs of one seed share its
  init, so the tests are over seeds: per seed, the mean accuracy above
  `chance` of its runs more than half dead, then `one_sample`; and, for a
  threshold at 50%, per seed with runs on both sides, the mean accuracy of
  its runs in (0.25, 0.5] minus that of its runs in (0.5, 0.75]
  ('threshold': a drop across 50% shows as a positive difference).

  Returns:
    'runs' (dead, accuracy, optimizer, lr, bias), 'bins' over DEAD_BINS
    (runs, accuracy mean and std), the test over seeds, and 'threshold'.
  """
  runs = []
  for (opt, a, _, _, lr, bias, *_), cell in cells.items():
    if a != act:
      continue
    ok = np.asarray(cell['finite_seeds'])
    dead = np.asarray(cell['dead_per_layer'], np.float64)[:, -1].mean(-1)
    acc = np.asarray(cell[accuracy], np.float64)[:, -1]
    for s in np.flatnonzero(ok):
      runs.append((float(dead[s]), float(acc[s]), opt, lr, bias, int(s)))
  bins = []
  for lo, hi in itertools.pairwise(DEAD_BINS):
    acc = [r[1] for r in runs if lo <= r[0] < hi or (hi == 1.0 and r[0] == 1)]
    bins.append(
      {
        'dead': f'[{lo:g}, {hi:g}{"]" if hi == 1.0 else ")"}',
        'runs': len(acc),
        'accuracy_mean': float(np.mean(acc)) if acc else math.nan,
        'accuracy_std': float(np.std(acc)) if acc else math.nan,
      }
    )

  def seed_mean(s, lo, hi, minus=0.0):
    acc = [r[1] - minus for r in runs if lo < r[0] <= hi and r[5] == s]
    return float(np.mean(acc)) if acc else math.nan

  seeds = sorted({r[5] for r in runs})
  above = [seed_mean(s, 0.5, 1.0, chance) for s in seeds]
  drop = [seed_mean(s, 0.25, 0.5) - seed_mean(s, 0.5, 0.75) for s in seeds]
  out = {**stats.one_sample(above), 'bins': bins, 'chance': chance}
  out['threshold'] = stats.one_sample(drop)
  out['accuracy'] = accuracy
  out['runs'] = [r[:5] for r in runs]
  out['over_half'] = sum(r[0] > 0.5 for r in runs)
  return out
