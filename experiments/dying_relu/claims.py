"""experiments.dying_relu's claims: the tests, one Holm family, the report.

`report` runs every test of every (optimizer, depth, width) block, corrects
them together (Holm), and writes one numbered verdict line per claim of the
lecture notes, each with its effect size, 95% CI, test, seed spread and
what the run could have detected. A verdict carrying 'held' decides the
binary's exit status; CS231n's bias +0.01 (called unclear there) does not.
"""

from __future__ import annotations

import math

from experiments import stats
from experiments.dying_relu import effects, teacher
from experiments.dying_relu.settings import Settings
from experiments.report import number, verdict_text

# Paired one-sample tests: (name, its stats function's output) -> line.
_KEYS = ('n', 'mean', 'ci', 'p', 'wilcoxon_p', 'detectable')


def report(cells: dict[tuple, dict], settings: Settings) -> tuple[str, dict]:
  """Markdown report: each claim with its numbers, and plain verdicts.

  Args:
    cells: stored cells by (optimizer, activation, depth, width, lr, bias,
      *model.TREATMENTS).
    settings: the checked flags.

  Claims on the dead fraction after training use every seed that stayed
  finite (seeds paired by construction, `teacher.teacher_keys`); every test
  of the run is one Holm family (untestable ones, p NaN, left out).
  """
  # (DeadCells, its optimizer's settings, tag), optimizers outermost.
  blocks = []
  for opt in settings.optimizers:
    mine = {k[1:]: c for k, c in cells.items() if k[0] == opt}
    part = settings.for_optimizer(opt)
    for at in effects.DeadCells.each(mine, part):
      blocks.append((at, part, f'depth {at.depth}, width {at.width}, {opt}'))
  # Keyed (block tag, test name); the run-wide tests by name alone.
  tests = {
    (tag, name): test
    for at, part, tag in blocks
    for name, test in _block_tests(at, part).items()
  }
  chance = teacher.teacher_majority_rate(settings.seed, 'train')
  tests['half'] = effects.dead_accuracy(cells, 'relu', chance)
  tests['threshold'] = tests['half']['threshold']
  # Untestable claims (p NaN) and descriptive tests are left out.
  ps = {
    t: v['p']
    for t, v in tests.items()
    if math.isfinite(v['p']) and not v.get('descriptive')
  }
  holm = stats.holm(ps)
  for t, v in tests.items():
    holm.setdefault(t, math.nan)
    # What the run could detect at the level its test was held to.
    v['detectable'] = stats.detectable_mean(
      v['se'], v['n'], 0.05 / max(len(ps), 1)
    )
  lines = [
    f'Holm family: the {len(ps)} tests below with a p-value (claims and '
    'their companions; descriptive ones are marked "not corrected").\n'
  ]
  verdicts = {}
  for at, part, tag in blocks:
    names = [k for k in tests if isinstance(k, tuple) and k[0] == tag]
    block = _Block(
      {k[1]: tests[k] for k in names}, {k[1]: holm[k] for k in names}
    )
    lines.append(f'## {tag}\n')
    if diverged := at.diverged():
      lines.append(
        'Diverged (non-finite loss in some seed; the claims use the seeds '
        'that stayed finite): '
        + ', '.join(f'{a} lr {lr:g} bias {b:g}' for a, lr, b in diverged)
        + '.\n'
      )
    _block_lines(block, at, part)
    lines += [*block.lines, '']
    verdicts.update({f'{tag}: {k}': v for k, v in block.verdicts.items()})
  line, verdicts['more than 50% dead cannot fit'] = half_dead_claim(
    tests['half'], holm['half'], holm['threshold']
  )
  lines.append(line)
  return '\n'.join(lines) + '\n', verdicts


def _block_tests(at: effects.DeadCells, settings: Settings) -> dict:
  """Every test of one (optimizer, depth, width) block, by name."""
  b0, lr0 = effects.reference_bias(at.biases), effects.reference_lr(at.lrs)
  out = {'lr': effects.lr_trend(at, 'relu', b0)}
  if settings.grid.optimizer == 'sgd':
    # SGD's grid starts a decade below where units start dying; Adam's
    # starts inside its rising part, so "lowest vs next" there would
    # measure the high-rate effect, not a too-low one.
    out['low lr'] = effects.low_lr_effect(at, 'relu', b0)
  if len(at.biases) >= 3:  # a dose-response needs 3 doses
    for record in (0, -1):
      out['bias', record] = effects.bias_trend(at, 'relu', lr0, record)
  # Scaling every weight by c > 0 leaves each pre-activation's sign as it
  # is (ReLU is positively homogeneous), so at bias 0 a bad scale changes
  # nothing at init: it is tested after training.
  # The other causes run with SGD only (teacher.teacher_cells).
  shifts = [0.0, *settings.input_shifts]
  depths = sorted({*settings.depths, *settings.cause_depths})
  for scale in settings.init_scales if settings.grid.optimizer == 'sgd' else ():
    out['init', scale] = effects.treatment_effect(at, -1, init_scale=scale)
  for record in (0, -1) if settings.grid.optimizer == 'sgd' else ():
    if len(shifts) >= 3:  # a dose-response needs 3 doses
      out['shift', record] = effects.cause_trend(
        at, 'input_shift', shifts, record
      )
    # Once per (optimizer, width): in the block of the first depth.
    if len(depths) >= 3 and at.depth == settings.depths[0]:
      out['depth', record] = effects.cause_trend(at, 'depth', depths, record)
  out['lower lr'] = effects.lower_lr_effect(at, 'relu', b0)
  if {0.0, 0.01} <= set(at.biases):
    out['bias 0.01'] = effects.remedy_effect(at, 'relu', 0.01, 0.0)
  for act in at.activations:
    if act not in ('relu', 'relu6') and 'relu' in at.activations:
      out['variant', act] = effects.variant_effect(at, act)
  for metric in ('dead', 'accuracy'):
    out['revival', metric] = effects.revival_effect(at, metric)
  # "Not recoverable" is decided by counts (any recovery contradicts it);
  # the per-seed fractions are descriptive, outside the Holm family.
  recovered = effects.recovery(at)
  for part in ('first', 'deeper', 'contrast'):
    out['recovery', part] = {**recovered[part], 'descriptive': True}
  out['recovery', 'first']['all'] = recovered
  return {k: v for k, v in out.items() if v is not None}


class _Block:
  """One block's tests and Holm p-values; the lines and verdicts made."""

  def __init__(self, tests: dict, holm: dict):
    self.tests, self.holm, self.lines, self.verdicts = tests, holm, [], {}

  def text(self, key, unit: str = '') -> str:
    """A test's effect, CI, seeds and p-values, as one phrase."""
    t, p = self.tests[key], self.holm[key]
    if t['n'] < 2:
      return f'untestable ({t["n"]} seeds with a value)'
    lo, hi = t['ci']
    if not math.isfinite(t['p']):
      return (
        f'{t["mean"]:+.3f}{unit} in each of {t["n"]} paired seeds alike '
        '(no spread: no t-test)'
      )
    holm = 'not corrected' if t.get('descriptive') else f'Holm {p:.2g}'
    wilcoxon = number(t['wilcoxon_p'], '.2g', 'none (every value 0)')
    return (
      f'{t["mean"]:+.3f}{unit} (95% CI {lo:+.3f} to {hi:+.3f}; {t["n"]} '
      f'paired seeds, std {_std(t):.3f}), t-test p = {t["p"]:.2g} ({holm}), '
      f'Wilcoxon p = {wilcoxon}'
    )

  def verdict(
    self, name: str, key, sign: int, too_few: str, missed: str, held=True
  ) -> str:
    """A paired claim's verdict (`paired_verdict`) and its reason, stored
    under name; with held, it decides the exit status. Returns the verdict
    with its reason, for the report's line."""
    t, p = self.tests[key], self.holm[key]
    v = stats.paired_verdict(t, p, sign, too_few, missed)
    out = {'verdict': v, **{k: t[k] for k in _KEYS if k in t}, 'p_holm': p}
    out['reason'] = stats.paired_reason(t, p, sign, 'seeds')
    if held:
      out['held'] = v == 'SUPPORTED'
    self.verdicts[name] = out
    return verdict_text(v, out['reason'])


def _std(test: dict) -> float:
  """The seed spread (std) behind a one-sample test: se * sqrt(n)."""
  return test['se'] * math.sqrt(test['n']) if test['n'] >= 2 else math.nan


def _diverged(test: dict) -> str:
  """A regime_change's seeds diverged per kept pair, as a phrase."""
  rows = [(k, d) for k, d in test['diverged'].items() if any(d)]
  if not rows:
    return 'no seed diverged there'
  fmt = lambda k: f'{k:g}' if isinstance(k, float) else str(k)
  return 'seeds diverged (base, treated): ' + ', '.join(
    f'{fmt(k)}: {d[0]}, {d[1]}' for k, d in rows
  )


def _doses(trend: dict, key: str) -> str:
  def dose(r):
    if not math.isfinite(r['dead_mean']):
      return f'{r[key]:g}: every seed diverged'
    return f'{r[key]:g}: {r["dead_mean"]:.3f} +- {r["dead_std"]:.3f}' + (
      f' ({r["diverged"]}/{r["seeds"]} diverged)' if r['diverged'] else ''
    )

  return '; '.join(map(dose, trend['rows']))


def _block_lines(b: _Block, at: effects.DeadCells, settings: Settings) -> None:
  """The block's claims in order: causes, remedies, recovery."""
  t = b.tests
  finite = 'fewer than 2 seeds finite in both cells'
  trend_few = 'fewer than 2 seeds with 3 or more finite values'
  change = 'effect; a change of {:.3f}'
  # 1. Causes.
  v = b.verdict(
    'high lr raises ReLU dead fraction',
    'lr',
    +1,
    'fewer than 2 seeds stayed finite at 3 or more learning rates',
    'trend; a slope of {:.3f} per decade',
  )
  b.lines.append(
    f'1. **High learning rate.** ReLU, bias {t["lr"]["bias"]:g}, final '
    'dead fraction (mean +- std over the seeds that stayed finite) by '
    f'learning rate: {_doses(t["lr"], "lr")}. Trend (per-seed slope per '
    f'decade of learning rate): {b.text("lr")}'
    + (
      f'; a slope of {t["lr"]["detectable"]:.3f} would have been detected '
      "with probability 0.8 at the Bonferroni level (Holm's strictest)"
      if math.isfinite(t['lr']['detectable'])
      else ''
    )
    + f'. **{v}.**'
  )
  if 'low lr' in t:
    v = b.verdict(
      'too low lr', 'low lr', +1, finite, 'effect; a difference of {:.3f}'
    )
    pair = ' vs '.join(f'{lr:g}' for lr in t['low lr']['lrs'])
    b.lines.append(
      f'   - **Too low a learning rate** (ReLU, lr {pair}, paired): final '
      f'dead fraction difference {b.text("low lr")}. **{v}.**'
    )
  if ('bias', 0) in t:
    unit = 'trend; a slope of {:.3f} per unit of bias'
    v = b.verdict(
      'negative bias kills ReLU units', ('bias', 0), -1, trend_few, unit
    )
    after = b.verdict(
      'negative bias, after training',
      ('bias', -1),
      -1,
      trend_few,
      unit,
      held=False,
    )
    b.lines.append(
      '   - **Negative bias (dose-response).** ReLU dead fraction by bias '
      f'init, at initialisation: {_doses(t["bias", 0], "bias")}; slope per '
      f'unit of bias {b.text(("bias", 0))}. **{v}.** After training at lr '
      f'{t["bias", -1]["lr"]:g}: {_doses(t["bias", -1], "bias")}; slope '
      f'{b.text(("bias", -1))}: {after}.'
    )
  lr0, b0 = effects.reference_lr(at.lrs), effects.reference_bias(at.biases)
  for key in [k for k in t if k[0] == 'init']:
    scale = key[1]
    v = b.verdict(
      f'init scale {scale:g} kills ReLU units', key, +1, finite, change
    )
    b.lines.append(
      f'   - **Bad init: weights {scale:g} x He** (LeCun/Glorot for ReLU '
      'is 0.707 x), against He, ReLU at lr '
      f'{lr0:g}, bias {b0:g}: change in the final dead fraction '
      f'{b.text(key)}. (At init the dead fraction is the same by '
      f'construction: a positive scale keeps every sign.) **{v}.**'
    )
  if ('shift', -1) in t:
    shift = t['shift', -1]
    unit = 'trend; a slope of {:.3f} per unit of shift'
    v = b.verdict(
      'shifted inputs kill ReLU units', ('shift', -1), +1, trend_few, unit
    )
    v0 = b.verdict(
      'shifted inputs, at init',
      ('shift', 0),
      +1,
      trend_few,
      unit,
      held=False,
    )
    b.lines.append(
      '   - **Shifted data** (every input feature + shift, in input '
      f'standard deviations; ReLU at lr {lr0:g}, bias {b0:g}). Dead '
      f'fraction at init: {_doses(t["shift", 0], "input_shift")}; slope '
      f'{b.text(("shift", 0))}: {v0}. After training: '
      f'{_doses(shift, "input_shift")}; slope {b.text(("shift", -1))}. '
      f'**{v}.**'
    )
  if ('depth', -1) in t:
    unit = 'trend; a slope of {:.3f} per doubling of depth'
    v = b.verdict('depth kills ReLU units', ('depth', -1), +1, trend_few, unit)
    v0 = b.verdict(
      'depth, at init', ('depth', 0), +1, trend_few, unit, held=False
    )
    b.lines.append(
      f'   - **Depth** (width {at.width}, ReLU at lr {lr0:g}, bias '
      f'{b0:g}; seed s is a replicate across depths, whose networks '
      f'differ). Dead fraction at init: {_doses(t["depth", 0], "depth")}; '
      f'slope per doubling {b.text(("depth", 0))}: {v0}. After training: '
      f'{_doses(t["depth", -1], "depth")}; slope '
      f'{b.text(("depth", -1))}. **{v}.**'
    )
  # 2. Remedies, where units die.
  regime = lambda key: ', '.join(f'{k:g}' for k in t[key]['kept']) or 'none'

  def remedy(key) -> str:  # why a remedy has too few seeds
    return finite if t[key]['kept'] else 'no cell where units die'

  v = b.verdict('lower lr', 'lower lr', -1, remedy('lower lr'), change)
  b.lines.append(
    '2. **Lower learning rate** (ReLU, each rate against the next lower '
    'one, where the pair ends >= 5% dead on average; higher rates: '
    f'{regime("lower lr")}): change in the final dead fraction '
    f'{b.text("lower lr")}; {_diverged(t["lower lr"])}. **{v}.**'
  )
  if 'bias 0.01' in t:
    v = b.verdict(
      'bias 0.01 effect',
      'bias 0.01',
      -1,
      remedy('bias 0.01'),
      change,
      held=False,
    )
    b.lines.append(
      '   - **Bias +0.01 vs 0** (learning rates where ReLU ends >= 5% '
      f'dead, both arms averaged: {regime("bias 0.01")}): change in the '
      f'final dead fraction {b.text("bias 0.01")}; '
      f'{_diverged(t["bias 0.01"])}. **{v}** (CS231n calls '
      'the benefit unclear; this decides no exit status).'
    )
  variant_biases = ', '.join(
    f'{v:g}' for v in sorted(at.settings.grid.variant_bias_inits)
  )
  for act in at.activations:
    if ('variant', act) not in t:
      continue
    key = ('variant', act)
    v = b.verdict(
      f'{act} passes gradient where ReLU dies', key, -1, remedy(key), change
    )
    # Leaky ReLU's and RReLU's |f'| never fall below their slope (0.01;
    # RReLU's evaluation slope is about 0.23): for them the result is
    # structural. ELU, CELU and SELU units can starve (z below about -7 on
    # every input); a learned PReLU slope can approach 0.
    fixed = act in ('leaky_relu', 'rrelu')
    b.lines.append(
      f'   - **{act} instead of ReLU**, judged on the gradient: change in '
      f"the final gradient-starved fraction (units whose mean |f'| on the "
      f'training set is below {effects.STARVED:g}; for ReLU, the dead ones'
      + ('; structural here: this slope never falls below 0.01' * fixed)
      + f'), over the {len(t[key]["kept"])} (lr, bias) cells where the '
      f'pair is >= 5% starved on average (the variants run at bias '
      f'{variant_biases}): {b.text(key)}; '
      f'{_diverged(t[key])}. **{v}.**'
    )
  key = ('revival', 'dead')
  v = b.verdict(
    'revival lowers the dead fraction', key, -1, remedy(key), change
  )
  key = ('revival', 'accuracy')
  acc = b.verdict('revival, accuracy', key, +1, remedy(key), change, held=False)
  b.lines.append(
    '   - **Revival** (ReDo, `jaxrelu.diagnostics.recycle_units` at every '
    f'record; ReLU, bias {b0:g}, learning rates where the pair ends >= '
    f'5% dead: {regime(("revival", "dead"))}): change in the final dead '
    f'fraction {b.text(("revival", "dead"))}; '
    f'{_diverged(t["revival", "dead"])}. **{v}.** Change in probe '
    f'accuracy {b.text(("revival", "accuracy"))}: {acc}. (With Adam the '
    "revived entries' moments restart while its step count does not, as in "
    'ReDo: their first steps are larger than a fresh init would take.)'
  )
  _recovery_lines(b, at, settings.grid.optimizer)


def _recovery_lines(b: _Block, at: effects.DeadCells, optimizer: str) -> None:
  """Claim 3: "a dead unit is not recoverable", per layer.

  Decided by counts: CONTRADICTED as soon as one unit dead on the whole
  training set at some record is alive at the last; SUPPORTED when none
  is, of at least one; NOT TESTABLE when no unit died.
  """
  rec = b.tests['recovery', 'first']['all']
  revived = effects.recovery(at, revive=True)

  def layers(r):
    return '; '.join(
      f'layer {x["layer"]}: {x["k"]}/{x["n"]}' for x in r['layers']
    )

  for part, name in (('first', 'layer 1'), ('deeper', 'layers 2 and up')):
    units = rec['layers'][:1] if part == 'first' else rec['layers'][1:]
    n, k = sum(x['n'] for x in units), sum(x['k'] for x in units)
    seeds = b.tests['recovery', part]['n']
    if n == 0:
      v = 'NOT TESTABLE (no unit died)'
    elif k == 0:
      v = f'SUPPORTED (0 of {n} dead units came back; {seeds} seeds)'
    else:
      v = f'CONTRADICTED ({k} of {n} dead units came back; {seeds} seeds)'
    b.verdicts[f'dead units not recoverable, {name}'] = {
      'verdict': v,
      'reason': None,
      'held': v.startswith('SUPPORTED'),
      'recovered': k,
      'ever_dead': n,
    }
    rec[name] = v
  why = (
    'with plain SGD a unit dead on every training input gets no gradient, '
    'so in layer 1, whose inputs never change, it cannot move'
    if optimizer == 'sgd'
    else "Adam's moments keep moving a unit for a while after its gradient "
    'stops, even in layer 1'
  )
  b.lines.append(
    '3. **"A dead unit is not recoverable"** (ReLU, every learning rate and '
    'bias, finite seeds; dead: never positive on the whole training set at '
    f'some record before the last; recovered: alive at the last; {why}). '
    f'Recovered of ever dead, per layer: {layers(rec)}. Layer 1: '
    f'**{rec["layer 1"]}**; per-seed recovered fraction '
    f'{b.text(("recovery", "first"))}. Layers 2 and up (the layers below '
    f'them change): **{rec["layers 2 and up"]}**; '
    f'{b.text(("recovery", "deeper"))}. Deeper minus layer 1, per seed '
    f'(descriptive): {b.text(("recovery", "contrast"))}. With revival '
    f'(revived units count as recovered): {layers(revived)}.'
  )


def half_dead_claim(
  test: dict, p_holm: float, p_threshold: float
) -> tuple[str, dict]:
  """The ">50% dead means the network cannot fit" claim.

  SUPPORTED when runs more than half dead are within 0.05 of a constant
  predictor's training accuracy (the CI's upper end below 0.05);
  CONTRADICTED when they are significantly above it (Holm; the CI's lower
  end above 0); else NOT TESTABLE. The drop across 50% (runs in (0.25,
  0.5] against (0.5, 0.75], per seed) is reported beside it, with its own
  verdict: does a threshold near 50% show?
  """
  lo, hi = test['ci']
  reason = None
  above = (
    f'runs more than half dead are {test["mean"]:+.3f} above a constant '
    f'predictor (95% CI {lo:+.3f} to {hi:+.3f}; {test["n"]} seeds)'
  )
  if test['n'] < 2:
    verdict = (
      f'NOT TESTABLE ({test["over_half"]} run(s) more than half dead, from '
      f'{test["n"]} seed(s): 2 needed)'
    )
  elif hi < 0.05:
    verdict, reason = 'SUPPORTED', f'{above}: within 0.05 of it'
  elif p_holm <= 0.05 and lo > 0:
    verdict = 'CONTRADICTED'
    reason = f'{above}, Holm p = {p_holm:.2g}: they fit'
  else:
    verdict = (
      f'NOT TESTABLE (between chance and fitting: {test["mean"]:+.3f} above '
      f'a constant predictor, 95% CI {lo:+.3f} to {hi:+.3f})'
    )
  drop = test['threshold']
  threshold = stats.paired_verdict(
    drop,
    p_threshold,
    +1,
    'fewer than 2 seeds with runs on both sides of 50%',
    'drop; {:.3f}',
  )
  threshold_reason = stats.paired_reason(drop, p_threshold, +1, 'seeds')
  bins = '; '.join(
    f'{b["dead"]}: {b["accuracy_mean"]:.3f} +- {b["accuracy_std"]:.3f} '
    f'({b["runs"]} runs)'
    if b['runs']
    else f'{b["dead"]}: no runs'
    for b in test['bins']
  )
  if test['n'] < 2:
    measured = f'are {test["n"]} seed(s) with such runs: too few to test'
  else:
    measured = (
      f'are above it by {test["mean"]:+.3f} (95% CI {lo:+.3f} to '
      f'{hi:+.3f}; per seed, {test["n"]} seeds), t-test p = '
      + number(test['p'], '.2g', 'none (no spread)')
      + f' (Holm {number(p_holm, ".2g", "none")})'
    )
  if drop['n'] < 2:
    dropped = f'{drop["n"]} seed(s) with runs on both sides: too few to test'
  else:
    dlo, dhi = drop['ci']
    dropped = (
      f'{drop["mean"]:+.3f} (95% CI {dlo:+.3f} to {dhi:+.3f}; {drop["n"]} '
      'seeds), t-test p = '
      + number(drop['p'], '.2g', 'none (no spread)')
      + f' (Holm {number(p_threshold, ".2g", "none")})'
    )
  line = (
    '4. **More than 50% dead: the network cannot fit** (ReLU, every cell, '
    'treated ones included, and optimizer; finite seeds). Training '
    f'accuracy by final dead fraction: {bins}. Constant predictor: '
    f'{test["chance"]:.3f}. Runs more than half dead ({test["over_half"]}) '
    f'{measured}. **{verdict_text(verdict, reason)}**. A threshold near '
    '50%: accuracy of runs (0.25, 0.5] dead minus (0.5, 0.75] dead, per '
    f'seed: {dropped}: {verdict_text(threshold, threshold_reason)}.'
  )
  keys = ('n', 'mean', 'ci', 'p', 'chance', 'over_half', 'bins', 'runs')
  return line, {
    'verdict': verdict,
    'reason': reason,
    'held': verdict == 'SUPPORTED',
    **{k: test[k] for k in keys},
    'p_holm': p_holm,
    'threshold': {
      'verdict': threshold,
      'reason': threshold_reason,
      **{k: drop[k] for k in _KEYS},
      'p_holm': p_threshold,
    },
  }
