"""born_dead's claims: Lu et al.'s figures, RAI against He, the closed
form; judged on the ReLU networks' rows."""

from __future__ import annotations

from experiments import report as report_lib

# Lu et al. (2020), depth 10, symmetric init: width -> (low, high) bounds of
# the reported born-dead probability.
LU_ET_AL_DEPTH10 = {3: (0.5, 0.7), 5: (0.1, 1.0), 10: (0.0, 0.01)}


def _ci(r: dict) -> str:
  return (
    f'{r["probability"]:.3f} (95% CI {r["ci95_low"]:.3f}-{r["ci95_high"]:.3f})'
  )


def claims(rows: list[dict]) -> dict[str, tuple[bool, str]]:
  """Each claim's verdict (True: supported) and its reason in words.

  Lu et al.'s figures at depth 10 (He, zero bias): consistent when the 95%
  CI overlaps their range. RAI below He: RAI's CI lies wholly below He's
  in every cell where He is born dead at all. The closed form bounds He:
  no He cell's CI lies wholly above it. Only ReLU networks' rows are
  judged (rows of other activations are reported, not judged).
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
  below, overlap = [], []
  for (init, width, depth), r in cell.items():
    he = cell.get(('he_zero_bias', width, depth))
    if init == 'rai' and he is not None and he['born_dead'] > 0:
      where = f'width {width} depth {depth}'
      (below if r['ci95_high'] < he['ci95_low'] else overlap).append(where)
  if below or overlap:
    n = len(below) + len(overlap)
    reason = (
      f"RAI's 95% CI lies below He's (zero bias) in {len(below)} of {n} "
      'cells where He is born dead at all'
    )
    if overlap:
      reason += f'; the CIs overlap in {", ".join(overlap)}'
    out['rai_below_he_where_he_dies'] = (not overlap, reason)
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


def claim_lines(found: dict[str, tuple[bool, str]]) -> list[str]:
  """One line per claim: its name, verdict and reason."""
  return [
    f'- {name}: '
    + report_lib.verdict_text('SUPPORTED' if ok else 'NOT SUPPORTED', why)
    for name, (ok, why) in found.items()
  ]


def report(rows: list[dict]) -> tuple[str, dict, dict]:
  """The Markdown table, the claims' lines; verdicts and their reasons."""
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
  table = [
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
  found = claims(rows)
  text = report_lib.markdown_table(header, table)
  if found:
    text += (
      '\n## Claims\n\nLu et al. (2020): depth 10, He init with zero bias, '
      'against their figures; RAI against He (zero bias) where He is born '
      'dead at all, by non-overlapping 95% CIs; the closed form as an upper '
      'bound of every He (zero bias) cell.\n\n'
      + '\n'.join(claim_lines(found))
      + '\n'
    )
  verdicts = {k: ok for k, (ok, _) in found.items()}
  return text, verdicts, {k: why for k, (_, why) in found.items()}
