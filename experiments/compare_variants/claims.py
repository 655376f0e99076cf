"""experiments.compare_variants' claims: choices, tests, Holm, verdicts.

`Results` turns the stored cells into per-(split, seed) metrics and makes
the validation choices of the SELU protocol; `claims` runs every test of
the run, corrects the claims' tests together and the companions' apart
(Holm), and writes one verdict line per claim with its effect, 95% CI,
split spread, permutation and t p-values, Holm p-value and the smallest
effect the run could have detected.

The unit of replication is the split: per split, the differences are
averaged over its seeds and depths (they share its test set), and a claim
pools its datasets as strata with `stats.stratified_test`, which weighs
each dataset the same and flips signs only within one.
"""

from __future__ import annotations

import math

import numpy as np

from experiments import model, report, stats
from experiments.compare_variants.settings import Settings

# Claim 3 is about small data: training sets under this many examples.
SMALL_TRAIN = 1000
# The depth trend of PReLU slopes is read from networks this deep or more.
SLOPE_DEPTH = 4
# He et al.'s learned slopes span 0.05-0.7 after full training: slopes
# that moved less than this from their init, on average, have not learned
# enough for their depth trend to mean anything (NOT TESTABLE).
MIN_SLOPE_MOVE = 0.05
LEVEL = 0.05
# The SELU protocol's arms: name -> the activations whose cells it may
# choose from on validation (and every learning rate of the block).
SELU_VALIDATED = 'selu_validated'
SELU_ALWAYS = 'selu_dropout_always'
SELU_ARMS = {
  SELU_VALIDATED: ('selu_no_dropout', 'selu'),
  # Companions: SELU with one dropout rate, only the learning rate chosen
  # (as every other activation).
  'selu_no_dropout': ('selu_no_dropout',),
  SELU_ALWAYS: ('selu',),
}


def split_metrics(cell: dict, target_loss: float) -> dict[str, np.ndarray]:
  """One cell's per-network scalars, each of shape (splits, seeds).

  `curve_metrics` (early-stopped test accuracy, steps to the target
  loss, ...), plus: best_val (least validation loss over the records; the
  validation choices use it), act_mean (the units' mean |mean activation|
  on the training set over the layer's RMS, `model.forward`'s means,
  averaged over layers and the records after init), and for PReLU
  at depth >= SLOPE_DEPTH the final mean slope of the deeper and the
  shallower half of the layers and how far the slopes moved from init.
  """
  loss = np.asarray(cell['val_loss'], np.float64)
  splits, seeds = loss.shape[:2]
  flat = lambda k: np.asarray(cell[k], np.float64).reshape(
    splits * seeds, *np.shape(cell[k])[2:]
  )
  names = ('val_loss', 'train_loss', 'test_acc', 'train_acc', 'dead')
  m = curve_metrics(
    {**{k: flat(k) for k in names}, 'config': cell['config']}, target_loss
  )
  m['best_val'] = np.where(
    np.isfinite(flat('val_loss')), flat('val_loss'), np.inf
  ).min(1)
  m['act_mean'] = flat('act_mean')[:, 1:].mean((1, 2))
  if 'slope_mean' in cell:
    s = flat('slope_mean')[:, -1]  # (networks, depth)
    depth = s.shape[1]
    m['final_slopes'] = s
    if depth >= SLOPE_DEPTH:
      m['slope_deeper'] = s[:, depth // 2 :].mean(1)
      m['slope_shallower'] = s[:, : depth // 2].mean(1)
      m['slope_moved'] = np.abs(s - model.PRELU_INIT).mean(1)
  return {k: v.reshape(splits, seeds, *v.shape[1:]) for k, v in m.items()}


class Results:
  """Per-network metrics of a run, by (dataset, activation, depth) for the
  main block and with the SELU protocol's validation choices.

  Args:
    cells: `sweep.Outcome.by('dataset', 'activation', 'depth',
      'optimizer', 'learning_rate')` of compare_variants.
    settings: its settings.
    train_sizes: the training rows of each dataset (None: not needed, as
      in a test of the figures).
  """

  def __init__(
    self, cells: dict, settings: Settings, train_sizes: dict | None = None
  ):
    self.settings = settings
    self.train_sizes = train_sizes
    self.all = {
      k: split_metrics(c, settings.target_loss) for k, c in cells.items()
    }
    opt, lr = settings.optimizer, settings.learning_rate
    ours = [k for k in cells if k[3:] == (opt, lr) and k[2] in settings.depths]
    main = {k[:3]: cells[k] for k in ours}
    self.split_metrics = {k[:3]: self.all[k] for k in ours}
    # The report's tables and figures read one value per network.
    flatten = lambda a: np.reshape(a, (-1, *np.shape(a)[2:]))
    self.metrics = {
      k: {n: flatten(v) for n, v in m.items()}
      for k, m in self.split_metrics.items()
    }
    self.cells = {
      k: {
        n: flatten(v) if isinstance(v, list) and n != 'config' else v
        for n, v in c.items()
      }
      for k, c in main.items()
    }
    self.datasets = [
      d for d in settings.datasets if any(k[0] == d for k in main)
    ]
    self.depths = sorted({k[2] for k in main})

  def get(self, dataset, act, depth):
    """Per-network metrics (flattened) of the main block, or None."""
    return self.metrics.get((dataset, act, depth))

  def final_slopes(self, dataset, act, depth):
    """Per-layer final PReLU slope, mean over finite networks, or None."""
    m = self.metrics.get((dataset, act, depth))
    if m is None or 'final_slopes' not in m:
      return None
    return stats.nanmean(m['final_slopes'], axis=0)

  def smaller_than(self, train_size: int) -> list[str]:
    sizes = self.train_sizes
    return [d for d in self.datasets if sizes[d] < train_size]

  def chosen(self, dataset: str, arm: str) -> dict | None:
    """The SELU protocol's metrics of one arm on one dataset, per split:
    the cell (activation of the arm, learning rate) of least validation
    loss (mean over the split's seeds of each network's best), chosen
    split by split; None unless every candidate cell is stored.

    An arm is an activation (its learning rate chosen) or one of
    SELU_ARMS (the dropout rate chosen too). 'choice' holds the pick.
    """
    f = self.settings
    acts = SELU_ARMS.get(arm, (arm,))
    keys = [
      (dataset, a, f.sgd_depth, 'sgd', lr)
      for a in acts
      for lr in f.sgd_learning_rates
    ]
    if any(k not in self.all for k in keys):
      return None
    score = np.stack([self.all[k]['best_val'].mean(1) for k in keys])
    pick = np.argmin(score, 0)  # (splits,): ties go to the first
    out = {
      n: np.stack([self.all[keys[c]][n][i] for i, c in enumerate(pick)])
      for n in ('test_acc', 'best_val')
    }
    out['choice'] = [keys[c][1::3] for c in pick]  # (activation, lr)
    return out


def differences(a: dict, b: dict, metric: str) -> np.ndarray:
  """Per split: a - b of metric, averaged over the seeds finite in both
  (NaN where none is). For steps_to_target, a pair where neither reached
  the target says nothing about speed: left out like a non-finite one."""
  d = np.asarray(a[metric], np.float64) - np.asarray(b[metric], np.float64)
  if metric == 'steps_to_target':
    d = np.where(a['reached'] | b['reached'], d, np.nan)
  return stats.nanmean(np.where(np.isfinite(d), d, np.nan), axis=1)


def _stratum_ci(d: np.ndarray) -> str:
  """A stratum's mean difference over its splits with a t 95% CI."""
  from scipy import stats as scipy_stats

  d = d[np.isfinite(d)]
  if d.size < 2:
    return '-' if not d.size else f'{d.mean():+.3f}'
  half = (
    scipy_stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
  )
  return f'{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]'


def _by_dataset(cells: dict) -> dict:
  """Per dataset, per split: the mean over its depths of the per-split
  differences. The depths of a split share its partition and test set,
  so the split, not the (split, depth), is the replicate: the pooled test
  takes datasets as strata and these values as replicates (with every
  depth present, each (dataset, depth) still weighs the same)."""
  by = {}
  for (ds, _), d in cells.items():
    by.setdefault(ds, []).append(d)
  # Non-finite differences are NaN already (`differences`).
  return {ds: stats.nanmean(np.stack(v), axis=0) for ds, v in by.items()}


class _Tests:
  """The run's tests in order: name -> item (cells: per (dataset, depth)
  per-split differences; test; sign; held; text; why)."""

  def __init__(self):
    self.items = {}

  def add(self, name, cells: dict, sign: int, text: str, held=True, why=None):
    """cells: (dataset, depth or None) -> per-split differences."""
    test = stats.stratified_test(list(_by_dataset(cells).values()))
    tied = [
      c
      for c, d in cells.items()
      if np.isfinite(d).any() and np.all(d[np.isfinite(d)] == 0)
    ]
    self.items[name] = dict(
      cells=cells,
      test=test,
      sign=sign,
      text=text,
      held=held,
      why=why,
      tied=tied,
    )

  def pair(
    self,
    r,
    name,
    a,
    b,
    metric,
    sign,
    text,
    datasets=None,
    held=True,
  ):
    """a - b of metric per (dataset, depth); no test unless both ran."""
    cells = {}
    for ds in datasets if datasets is not None else r.datasets:
      for depth in r.depths:
        ma = r.split_metrics.get((ds, a, depth))
        mb = r.split_metrics.get((ds, b, depth))
        if ma is not None and mb is not None:
          cells[ds, depth] = differences(ma, mb, metric)
    if cells:
      self.add(name, cells, sign, text, held)


def _main_tests(r: Results, t: _Tests) -> None:
  """The main block's tests, claims 1-3, in the report's order."""
  small = r.smaller_than(SMALL_TRAIN)
  mean_act = (
    "Hidden units' mean |mean activation| on the training set over the "
    "layer's RMS activation (0: centred on zero; mean over layers and the "
    'records after init), '
  )
  fixed = 'the same network and init, slope fixed'
  t.pair(
    r,
    'ELU converges faster than ReLU',
    'elu',
    'relu',
    'steps_to_target',
    -1,
    f'Steps to training loss {r.settings.target_loss:g}, ELU - ReLU '
    '(never reached: one record past the budget, so a difference against '
    'a miss is a bound; pairs where neither reached it left out)',
  )
  t.pair(
    r,
    'ELU: higher test accuracy than ReLU (generalizes better)',
    'elu',
    'relu',
    'test_acc',
    +1,
    'Early-stopped test accuracy, ELU - ReLU',
  )
  t.pair(
    r,
    'ELU activations closer to zero mean than ReLU',
    'elu',
    'relu',
    'act_mean',
    -1,
    mean_act + 'ELU - ReLU',
  )
  t.pair(
    r,
    'Leaky ReLU activations closer to zero mean than ReLU',
    'leaky_relu',
    'relu',
    'act_mean',
    -1,
    mean_act + 'leaky_relu (0.01) - ReLU',
  )
  for v in ('prelu', 'prelu_channel'):
    t.pair(
      r,
      f'{v} beats a fixed slope (its init, 0.25)',
      v,
      'leaky_relu_0.25',
      'test_acc',
      +1,
      f'Early-stopped test accuracy, {v} (slopes learned from 0.25) - '
      f'leaky_relu_0.25 ({fixed})',
    )
    t.pair(
      r,
      f'{v} vs leaky_relu (0.01)',
      v,
      'leaky_relu',
      'test_acc',
      +1,
      f'Early-stopped test accuracy, {v} - leaky_relu (0.01): the old, '
      'confounded control (slope size and learning together)',
      held=False,
    )
    _slope_test(r, t, v)
  if not small:
    return
  on = f'on {", ".join(small)}'
  t.pair(
    r,
    'RReLU: smaller train-test gap on small data',
    'rrelu',
    'leaky_relu_0.229',
    'gap',
    -1,
    f'Final train - test accuracy gap, rrelu - leaky_relu_0.229 (its '
    f'evaluation slope, fixed), {on}',
    datasets=small,
  )
  t.pair(
    r,
    'RReLU: better test accuracy on small data',
    'rrelu',
    'leaky_relu_0.229',
    'final_test_acc',
    +1,
    f'Final test accuracy, rrelu - leaky_relu_0.229, {on}',
    datasets=small,
  )
  for other in ('leaky_relu_0.182', 'leaky_relu'):
    t.pair(
      r,
      f'RReLU vs {other} on small data',
      'rrelu',
      other,
      'final_test_acc',
      +1,
      f'Final test accuracy, rrelu - {other}, {on}',
      datasets=small,
      held=False,
    )


def _slope_test(r: Results, t: _Tests, v: str) -> None:
  """PReLU's slopes shrink with depth: deeper half - shallower half of the
  layers, per network of depth >= SLOPE_DEPTH; NOT TESTABLE when the
  slopes moved less than MIN_SLOPE_MOVE from their init on average."""
  strata, moved = {}, []
  for ds in r.datasets:
    for depth in [d for d in r.depths if d >= SLOPE_DEPTH]:
      m = r.split_metrics.get((ds, v, depth))
      if m is not None:
        strata[ds, depth] = differences(
          {'s': m['slope_deeper']}, {'s': m['slope_shallower']}, 's'
        )
        moved.append(m['slope_moved'].ravel())
  if not strata:
    return
  moved = np.concatenate(moved)
  moved = moved[np.isfinite(moved)]
  why = None
  if moved.size and moved.mean() < MIN_SLOPE_MOVE:
    why = (
      f'NOT TESTABLE (the slopes did not move: a mean {moved.mean():.3f}, '
      f'at most {moved.max():.3f}, from 0.25; under {MIN_SLOPE_MOVE}, no '
      'learned depth trend can show)'
    )
  t.add(
    f'{v} slopes shrink with depth',
    strata,
    -1,
    f'Final learned {v} slope, deeper half - shallower half of the layers '
    f'(depth >= {SLOPE_DEPTH})',
    why=why,
  )


def selu_others(settings: Settings) -> list[str]:
  """The activations SELU's arms are compared with: all but SELU's own,
  and CELU where it is ELU (alpha 1, ELU in the run): counted once."""
  out = [
    a for a in settings.activations if a not in ('selu', 'selu_no_dropout')
  ]
  if settings.celu_alpha == 1.0 and 'elu' in out and 'celu' in out:
    out.remove('celu')
  return out


def _selu_tests(r: Results, t: _Tests) -> None:
  f = r.settings
  if not f.sgd_learning_rates:
    return
  for arm in SELU_ARMS:
    for other in selu_others(f):
      strata = {}
      for ds in r.datasets:
        a, b = r.chosen(ds, arm), r.chosen(ds, other)
        if a is not None and b is not None:
          strata[ds, f.sgd_depth] = differences(a, b, 'test_acc')
      if strata:
        held = arm == SELU_VALIDATED
        t.add((arm, other), strata, +1, f'{arm} - {other}', held=held)


def _verdict(item: dict, p_holm: float, family: int) -> str:
  """SUPPORTED / CONTRADICTED at Holm p <= LEVEL by the sign of the
  effect; else NOT TESTABLE with the reason (`stats.paired_verdict`'s rule, with
  ties, unmoved slopes and an unreachable exact p named)."""
  test = item['test']
  if item['why']:
    if p_holm <= LEVEL:  # what the run did show, beside why it decides nothing
      side = 'higher' if test['mean'] > 0 else 'lower'
      return (
        f'{item["why"][:-1]}; the deeper half did end {side}, Holm p '
        f'{p_holm:.2g}, a trend of the first steps)'
      )
    return item['why']
  if test['n'] < 2:
    return 'NOT TESTABLE (fewer than 2 paired splits)'
  if test['ties'] == test['n']:
    return 'NOT TESTABLE (every paired split tied: a ceiling)'
  if test['exact'] and 2.0 ** (1 - test['n']) > LEVEL / family:
    return (
      f'NOT TESTABLE ({test["n"]} paired splits: the permutation p cannot '
      f'reach {LEVEL:g}/{family})'
    )
  return stats.paired_verdict(
    test,
    p_holm,
    item['sign'],
    'fewer than 2 paired splits',
    'effect; a difference of {:.3f}',
  )


def _phrase(item: dict, p_holm: float) -> str:
  t = item['test']
  if t['n'] < 2:
    return f'{t["n"]} paired splits'
  lo, hi = t['ci']
  no_spread = 'none (the splits do not vary)'
  pos, neg, zero = t['strata_signs']
  tied = ''
  if item['tied']:
    cells = ', '.join(f'{ds} depth {d}' for ds, d in item['tied'])
    tied = f'; every split tied in {cells}'
  if not math.isfinite(lo):
    ci = 'no 95% CI: the splits do not vary'
  else:
    ci = f'95% CI {lo:+.3f} to {hi:+.3f}'
  return (
    f'{t["mean"]:+.3f} ({ci}; {t["strata"]} datasets, {t["n"]} paired '
    f'splits, split spread (std) {report.number(t["spread"], ".3f", "none")}'
    f'; datasets +/-/0: {pos}/{neg}/{zero}{tied}), permutation p = '
    f'{report.number(t["p"], ".2g", no_spread)} (Holm '
    f'{report.number(p_holm, ".2g", "none")}), t-test p = '
    f'{report.number(t["t_p"], ".2g", no_spread)}, detectable '
    f'{report.number(t["detectable"], ".3f", "none (no spread)")}'
  )


def _selu_verdict(arm: str, items: dict, holm: dict, others: list) -> dict:
  """SUPPORTED if the arm significantly (Holm) beats relu and nothing
  significantly beats it; CONTRADICTED if anything does; else NOT
  TESTABLE. The activations it does not beat are named ('ties')."""
  sig = lambda o: holm[(arm, o)] <= LEVEL
  mean = lambda o: items[(arm, o)]['test']['mean']
  beats = [o for o in others if sig(o) and mean(o) > 0]
  beaten = [o for o in others if sig(o) and mean(o) < 0]
  ties = [o for o in others if not sig(o)]
  reason = None
  if beaten:
    v = 'CONTRADICTED'
    reason = 'beaten by ' + ', '.join(
      f'{o} ({mean(o):+.3f}, Holm p = {holm[(arm, o)]:.2g})' for o in beaten
    )
  elif 'relu' in beats:
    v = 'SUPPORTED'
    reason = (
      f'beats relu by {mean("relu"):+.3f} (Holm p = '
      f'{holm[(arm, "relu")]:.2g}) and nothing beats it'
    )
  elif 'relu' not in others:
    v = 'NOT TESTABLE (needs relu in the SELU protocol)'
  else:
    det = items[(arm, 'relu')]['test']['detectable']
    v = 'NOT TESTABLE (not significantly better than relu' + (
      f'; a difference of {det:.3f} would have been detected with '
      'probability 0.8)'
      if math.isfinite(det)
      else ': its splits do not vary, no detectable size)'
    )
  return {
    'verdict': v,
    'reason': reason,
    'beats': beats,
    'beaten_by': beaten,
    'ties': ties,
  }


def _families(items: dict) -> dict:
  """Holm p of every test: the claims (held) form one family, the
  companions (old controls, SELU's other arms) another, so that rows
  which decide nothing cost the claims no power."""
  out = {}
  for held in (True, False):
    ps = {
      k: v['test']['p']
      for k, v in items.items()
      if v['held'] == held and math.isfinite(v['test']['p'])
    }
    size = max(len(ps), 1)
    for k, p in stats.holm(ps).items():
      out[k] = (p, size)
  return out


def claims(r: Results) -> tuple[list[str], dict, list[str]]:
  """The claims' Markdown lines, their verdicts, and the per-(dataset,
  depth) table.

  Two Holm families (`_families`); 'detectable' is at the Bonferroni
  level of the test's family (Holm's strictest).
  """
  t = _Tests()
  _main_tests(r, t)
  _selu_tests(r, t)
  items = t.items
  fam = _families(items)
  holm = {k: fam.get(k, (math.nan, 1))[0] for k in items}
  size = {k: fam.get(k, (math.nan, 1))[1] for k in items}
  for k, v in items.items():
    v['test']['detectable'] = stats.detectable_stratified(
      v['test'], LEVEL / size[k]
    )
  n_claims = sum(1 for v in items.values() if v['held'])
  lines = [
    f'Two Holm families: the {n_claims} tests of the claims, and the '
    f"{len(items) - n_claims} companions (old controls, SELU's other "
    'arms), each corrected on its own. Each test pools datasets as strata: '
    'per split, the paired differences are averaged over the seeds and the '
    "depths (which share the split's test set), and a stratified "
    'sign-flip permutation test on these per-split values weighs every '
    "dataset the same. The 95% CI and the t-test use Satterthwaite's "
    'degrees of freedom. "detectable": the effect the t-test detects with '
    'probability 0.8 at the Bonferroni level of its family.\n',
    '### Main block\n',
  ]
  verdicts = {}
  for name, item in items.items():
    if isinstance(name, tuple):
      continue
    v = _verdict(item, holm[name], size[name])
    reason = None
    if v in ('SUPPORTED', 'CONTRADICTED'):
      reason = stats.paired_reason(
        item['test'], holm[name], item['sign'], 'splits'
      )
    tag = '' if item['held'] else ' (companion)'
    lines.append(
      f'- **{name}**{tag}. {item["text"]}: {_phrase(item, holm[name])}. '
      f'**{report.verdict_text(v, reason)}.**'
    )
    keys = ('n', 'strata', 'mean', 'ci', 'p', 't_p', 'spread', 'detectable')
    verdicts[name] = {
      'verdict': v,
      'reason': reason,
      'held': (v == 'SUPPORTED') if item['held'] else None,
      **{k: item['test'][k] for k in keys},
      'p_holm': holm[name],
    }
  f = r.settings
  if f.sgd_learning_rates:
    lines += _selu_lines(r, items, holm, verdicts)
  return lines, verdicts, _strata_table(items)


def _selu_lines(r: Results, items, holm, verdicts) -> list[str]:
  """Claim 4's lines; its verdicts into `verdicts`."""
  f = r.settings
  others = selu_others(f)
  lines = [
    f"\n### SELU in its paper's protocol, reduced (Klambauer et al. "
    f'2017), depth {f.sgd_depth}\n\nPlain SGD, {f.steps} steps, '
    "every activation's learning rate chosen per split on validation loss "
    f'from {", ".join(f"{v:g}" for v in f.sgd_learning_rates)}, and for '
    '**selu_validated** the alpha-dropout rate too (0 or '
    f'{f.alpha_dropout_rate:g}). Depth and width are fixed, not chosen '
    'as in the paper. Companions: **selu_no_dropout** (learning rate '
    'chosen, like every other activation) and **selu_dropout_always** '
    f'(alpha dropout {f.alpha_dropout_rate:g} after every layer, only '
    "the learning rate chosen: a fixed regularizer, not the paper's "
    'setup). Only selu_validated decides the exit status.\n'
  ]
  for arm, acts in SELU_ARMS.items():
    tested = [o for o in others if (arm, o) in items]
    if not tested:
      lines.append(
        f'- **{arm}**: needs {" and ".join(acts)} and another activation '
        'in --activations.'
      )
      continue
    for o in tested:
      lines.append(
        f'- Early-stopped test accuracy, {arm} - {o}: '
        f'{_phrase(items[(arm, o)], holm[(arm, o)])}.'
      )
    out = _selu_verdict(arm, items, holm, tested)
    held = out['verdict'] == 'SUPPORTED'
    out['held'] = held if arm == SELU_VALIDATED else None
    keys = ('n', 'strata', 'mean', 'ci', 'p', 't_p', 'detectable')
    out['tests'] = {
      o: {
        **{k: items[(arm, o)]['test'][k] for k in keys},
        'p_holm': holm[(arm, o)],
      }
      for o in tested
    }
    verdicts[f'{arm} beats relu, and nothing beats it'] = out
    lines.append(
      f'- **{arm}** (supported if it beats relu and nothing beats it, '
      'Holm; contradicted if anything beats it). Beats: '
      f'{", ".join(out["beats"]) or "none"}; not told apart from: '
      f'{", ".join(out["ties"]) or "none"}; beaten by: '
      f'{", ".join(out["beaten_by"]) or "none"}. '
      f'**{report.verdict_text(out["verdict"], out["reason"])}.**\n'
    )
  return lines


def _strata_table(items: dict) -> list[str]:
  """Each test's mean difference and 95% t CI over splits, per (dataset,
  depth): the tables behind the pooled tests."""
  label = lambda k: ' - '.join(k) if isinstance(k, tuple) else k

  def value(row, col, by_label):
    d = items[by_label[col]]['cells'].get(row)
    return None if d is None else _stratum_ci(d)

  lines = []
  for title, selu in (('main block', False), ('SELU protocol', True)):
    by_label = {label(k): k for k in items if isinstance(k, tuple) == selu}
    if not by_label:
      continue
    rows = dict.fromkeys(
      c for k in by_label.values() for c in items[k]['cells']
    )
    lines += report.grid(
      f'Paired differences per dataset and depth, {title} (mean over '
      'splits [95% t CI])',
      list(rows),
      list(by_label),
      ('dataset', 'depth'),
      lambda row, col, by_label=by_label: value(row, col, by_label),
    )
  return lines


def selu_table(r: Results) -> list[str]:
  """The SELU protocol's chosen test accuracy per dataset and arm, and
  what was chosen."""
  f = r.settings
  if not f.sgd_learning_rates:
    return []
  arms = [*SELU_ARMS, *selu_others(f)]
  lines = report.grid(
    f'SELU protocol: early-stopped test accuracy at depth {f.sgd_depth}, '
    'learning rate (and dropout) chosen on validation per split (mean +- '
    'std over splits)',
    [(ds,) for ds in r.datasets],
    arms,
    ('dataset',),
    lambda row, arm: (
      None
      if (c := r.chosen(row[0], arm)) is None
      else stats.mean_std(c['test_acc'].mean(1))
    ),
  )
  for ds in r.datasets:
    if (c := r.chosen(ds, SELU_VALIDATED)) is not None:
      picks = ', '.join(f'{a} lr {lr:g}' for a, lr in c['choice'])
      lines.append(f'- {ds}: selu_validated chose, per split: {picks}.')
  # Divergence: what a learning rate's networks did, chosen or not.
  gone = {}
  for (_, _act, depth, opt, lr), m in r.all.items():
    if opt == 'sgd' and depth == f.sgd_depth:
      n, d = gone.get(lr, (0, 0))
      gone[lr] = (n + m['diverged'].size, d + int(m['diverged'].sum()))
  lines.append(
    '- Networks of the SELU block with a non-finite training loss (early '
    'stopping keeps their best checkpoint from before), by learning rate: '
    + '; '.join(f'{lr:g}: {d} of {n}' for lr, (n, d) in sorted(gone.items()))
    + '.'
  )
  return [*lines, '']


def curve_metrics(cell: dict, target_loss: float) -> dict[str, np.ndarray]:
  """Per-seed scalars of one group (arrays of length seeds)."""
  val_loss = np.asarray(cell['val_loss'], np.float64)
  train_loss = np.asarray(cell['train_loss'], np.float64)
  every = cell['config']['record_every']
  # Early stopping: the checkpoint of least validation loss. A seed that
  # diverged keeps its best checkpoint from before the divergence.
  filled = np.where(np.isfinite(val_loss), val_loss, np.inf)
  best = np.argmin(filled, axis=1)
  rows = np.arange(val_loss.shape[0])
  reached = train_loss <= target_loss
  # Not reached within the budget: censored one record past the end.
  censored = cell['config']['steps'] + every
  steps_to_target = np.where(
    reached.any(1), np.argmax(reached, axis=1) * every, censored
  )
  test_acc = np.asarray(cell['test_acc'])
  diverged = ~np.isfinite(train_loss).all(1)
  train_acc = np.asarray(cell['train_acc'])
  return {
    'test_acc': test_acc[rows, best],
    # End-of-training values mean nothing after a divergence: NaN, which
    # the paired tests and the tables leave out.
    'final_test_acc': np.where(diverged, np.nan, test_acc[:, -1]),
    'final_train_acc': np.where(diverged, np.nan, train_acc[:, -1]),
    'gap': np.where(diverged, np.nan, train_acc[:, -1] - test_acc[:, -1]),
    'final_train_loss': np.where(diverged, np.nan, train_loss[:, -1]),
    'steps_to_target': steps_to_target.astype(np.float64),
    'reached': reached.any(1),
    'final_dead': np.where(
      diverged, np.nan, np.asarray(cell['dead'])[:, -1].mean(-1)
    ),
    'diverged': diverged,
  }
