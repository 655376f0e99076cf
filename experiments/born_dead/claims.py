"""born_dead's claims, judged on the ReLU networks.

Declared before compute and judged trial by trial (`declare`, `judge`:
the shared five verdicts of `experiments.claims`): RAI and bias 0.01
against He, and D11's shape. Reported beside them, deciding nothing: Lu
et al.'s figures at depth 10 and the closed form 1-(1-2^-N)^L
(`literature`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments import claims as verdicts_lib
from experiments import report as report_lib

# Lu et al. (2020), depth 10, symmetric init: width -> (low, high) bounds of
# the reported born-dead probability.
LU_ET_AL_DEPTH10 = {3: (0.5, 0.7), 5: (0.1, 1.0), 10: (0.0, 0.01)}


def _ci(r: dict) -> str:
  return (
    f'{r["probability"]:.3f} (95% CI {r["ci95_low"]:.3f}-{r["ci95_high"]:.3f})'
  )


def literature(rows: list[dict]) -> dict[str, tuple[bool, str]]:
  """The literature's figures beside the run, deciding nothing: whether
  each matches (True) and how, in words.

  Lu et al.'s figures at depth 10 (He, zero bias): consistent when the 95%
  CI overlaps their range (a loose check: at width 5 their range is 0.1 to
  1). The closed form 1-(1-2^-N)^L against every He (zero bias) cell: no
  cell's CI lies wholly above it. ReLU networks' rows only.
  """
  rows = [r for r in rows if r.get('activation', 'relu') == 'relu']
  cell = {(r['init'], r['width'], r['depth']): r for r in rows}
  out = {}
  for width, (lo, hi) in LU_ET_AL_DEPTH10.items():
    r = cell.get(('he_zero_bias', width, 10))
    if r is None:
      continue
    ok = r['ci95_high'] >= lo and r['ci95_low'] <= hi
    out[f'lu_et_al_width_{width}'] = (
      ok,
      f'width {width}, depth 10: measured {_ci(r)} '
      + ('overlaps' if ok else 'lies outside')
      + f" Lu et al.'s {lo:.2f}-{hi:.2f}",
    )
  he = [r for r in rows if r['init'] == 'he_zero_bias']
  if he:
    above = [r for r in he if r['ci95_low'] > r['closed_form'] + 1e-12]
    if above:
      reason = 'the 95% CI lies above 1-(1-2^-N)^L in ' + ', '.join(
        f'width {r["width"]} depth {r["depth"]} ({r["ci95_low"]:.3f} > '
        f'{r["closed_form"]:.3f})'
        for r in above
      )
    else:
      reason = (
        f'no He (zero bias) cell of {len(he)} has its 95% CI above 1-(1-2^-N)^L'
      )
    out['closed_form_bounds_he'] = (not above, reason)
  return out


def literature_lines(found: dict[str, tuple[bool, str]]) -> list[str]:
  """One line per literature check: its name, whether it matched, how."""
  return [
    f'- {name}: ' + ('matches' if ok else 'does not match') + f': {why}'
    for name, (ok, why) in found.items()
  ]


def table(rows: list[dict]) -> str:
  """The Markdown table of every (activation,) init, width and depth."""
  header = (
    'init',
    'width',
    'depth',
    'born dead',
    '95% CI',
    '1-(1-2^-N)^L',
    'flat (old criterion)',
  )
  # The activation column only where the run had more than ReLU.
  named = any('activation' in r for r in rows)
  header = ('activation', *header) if named else header
  cells = [
    (
      *((r['activation'],) if named else ()),
      r['init'],
      r['width'],
      r['depth'],
      f'{r["probability"]:.4f}',
      f'[{r["ci95_low"]:.4f}, {r["ci95_high"]:.4f}]',
      f'{r["closed_form"]:.4f}',
      f'{r["flat_probability"]:.4f}',
    )
    for r in rows
  ]
  return report_lib.markdown_table(header, cells)


# ---------------------------------------------------------------------------
# The claims declared before compute, judged trial by trial (issue 31).

# Two percentage points of born-dead probability: smaller differences do
# not matter to anyone choosing an initialisation.
MARGIN = 0.02
_OUTCOME = (
  'born dead (some layer passes no gradient on every grid input), per '
  'trial, the same trial keys in every cell'
)
_REMEDIES = {
  'rai': (
    'D11.rai',
    'Randomized asymmetric initialization (RAI) makes a deep, narrow ReLU '
    'network less likely to be born dead than He init (Lu et al. 2020).',
  ),
  'bias_0.01': (
    'D10b.born_dead',
    'A positive bias, 0.01, "experimentally proven": fewer networks born '
    'dead than with a zero bias.',
  ),
}


@dataclasses.dataclass(frozen=True)
class Contrast:
  """What a claim compares: born dead in the treated (init, width, depth)
  minus in the reference one, trial by trial."""

  treated: tuple[str, int, int]
  reference: tuple[str, int, int]


def declare(settings) -> dict[str, tuple[verdicts_lib.Claim, Contrast]]:
  """born_dead's claims and their contrasts, from its settings alone
  (before compute): each remedy against He with zero bias at every (width,
  depth), and D11's shape (more born dead with depth, fewer with width);
  ReLU networks only."""
  out = {}
  if 'relu' not in settings.activations or 'he_zero_bias' not in settings.inits:
    return out

  def add(claim, contrast):
    out[claim.id] = (claim, contrast)

  for init, (cid, sentence) in _REMEDIES.items():
    if init not in settings.inits:
      continue
    for width in settings.widths:
      for depth in settings.depths:
        add(
          verdicts_lib.Claim(
            f'{cid}.w{width}.d{depth}',
            sentence,
            f'{_OUTCOME}: {init} minus he_zero_bias',
            f'width {width}, depth {depth}, where he_zero_bias is born dead '
            f'in at least {MARGIN:g} of the trials (else no effect as large '
            'as the margin can show)',
            direction=-1,
            margin=MARGIN,
            family=cid,
            replicates='trials',
          ),
          Contrast((init, width, depth), ('he_zero_bias', width, depth)),
        )
  shallow, deep = min(settings.depths), max(settings.depths)
  for width in settings.widths if deep > shallow else ():
    add(
      verdicts_lib.Claim(
        f'D11.depth.w{width}',
        'A deep, narrow ReLU network can be born dead; the probability '
        'grows with depth.',
        f'{_OUTCOME}: he_zero_bias, depth {deep} minus depth {shallow} '
        '(the same networks)',
        f'width {width}',
        direction=1,
        margin=MARGIN,
        family='D11.shape',
        replicates='trials',
      ),
      Contrast(('he_zero_bias', width, deep), ('he_zero_bias', width, shallow)),
    )
  narrow, wide = min(settings.widths), max(settings.widths)
  for depth in settings.depths if wide > narrow else ():
    add(
      verdicts_lib.Claim(
        f'D11.width.d{depth}',
        'The probability of being born dead falls with width.',
        f'{_OUTCOME}: he_zero_bias, width {wide} minus width {narrow}',
        f'depth {depth}',
        direction=-1,
        margin=MARGIN,
        family='D11.shape',
        replicates='trials',
      ),
      Contrast(('he_zero_bias', wide, depth), ('he_zero_bias', narrow, depth)),
    )
  return out


def differences(declared: dict, cells) -> dict[str, np.ndarray | None]:
  """Each declared claim's per-trial differences from the stored cells
  (`sweep.Outcome.results()`, ReLU's); None where a cell is missing."""
  first = {
    (c['init'], c['width']): np.asarray(c['first_dead'])
    for c in cells
    if c.get('activation', 'relu') == 'relu' and 'first_dead' in c
  }

  def dead(init, width, depth):
    f = first.get((init, width))
    return None if f is None else ((f > 0) & (f <= depth)).astype(float)

  out = {}
  for cid, (claim, contrast) in declared.items():
    a, b = dead(*contrast.treated), dead(*contrast.reference)
    out[cid] = None if a is None or b is None else a - b
    # A remedy's regime, declared with it: He born dead often enough for
    # an effect as large as the margin to show.
    remedy = contrast.reference[0] == 'he_zero_bias' != contrast.treated[0]
    if remedy and b is not None and b.mean() < claim.margin:
      out[cid] = None
  return out


def judge(settings, cells) -> dict[str, verdicts_lib.Judged]:
  """Every declared claim's verdict (`experiments.claims.judge`)."""
  declared = declare(settings)
  return verdicts_lib.judge(
    [claim for claim, _ in declared.values()], differences(declared, cells)
  )


def exit_verdicts(judged: dict) -> dict[str, bool | None]:
  """What each claim says for the exit status: True for SUPPORTED, False
  for CONTRADICTED or NO EFFECT, None (decides nothing) otherwise."""
  return {
    cid: (j.verdict == verdicts_lib.SUPPORTED) if j.decides else None
    for cid, j in judged.items()
  }


def judged_lines(judged: dict) -> list[str]:
  """The report's section: the declared claims, then one line per verdict."""
  if not judged:
    return []
  lines = [
    '## Claims (declared before compute)',
    '',
    verdicts_lib.table([j.claim for j in judged.values()]),
    '## Verdicts',
    '',
  ]
  lines += [
    f'- {cid}: ' + report_lib.verdict_text(j.verdict, j.reason)
    for cid, j in judged.items()
  ]
  return [*lines, '']


def summary_lines(judged: dict) -> list[str]:
  """stdout's lines: each family's verdict counts, then every deciding
  claim that was not supported, with its reason."""
  families: dict[str, dict[str, int]] = {}
  for j in judged.values():
    counts = families.setdefault(j.claim.family, {})
    counts[j.verdict] = counts.get(j.verdict, 0) + 1
  lines = [
    f'- {family}, {sum(counts.values())} claims: '
    + ', '.join(f'{verdict} ({n})' for verdict, n in sorted(counts.items()))
    for family, counts in families.items()
  ]
  lines += [
    f'- {cid}: ' + report_lib.verdict_text(j.verdict, j.reason)
    for cid, j in judged.items()
    if j.decides and j.verdict != verdicts_lib.SUPPORTED
  ]
  return lines
