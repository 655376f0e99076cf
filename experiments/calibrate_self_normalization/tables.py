"""The calibration's tables and results.md."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from experiments import report, stats
from experiments.calibrate_self_normalization.settings import Settings
from experiments.report import fmt


def selu_test_tables(
  cells: dict[tuple, list[dict]], claims: dict, bias: list[dict]
) -> list[str]:
  """The finite-width bias, the table of verdicts, then the claims."""
  from jaxrelu import self_normalization as sn

  lines = [
    '## Finite-width bias of the correct stacks (second half of the layers)',
    '',
    '| setup | width | statistic | stacks | measured (SE) | model '
    '| model, first order only |',
    '|---|---|---|---|---|---|---|',
  ]
  for b in bias:
    lines.append(
      f'| {b["setup"]} | {b["width"]} | {b["statistic"]} | {b["stacks"]} '
      f'| {b["measured"]:+.5f} ({b["se"]:.5f}) | {b["model"]:+.5f} '
      f'| {b["first_order_model"]:+.5f} |'
    )
  lines += [
    '',
    '## Verdicts',
    '',
    '| setup | width | depth | runs | FAIL | NOT TESTABLE | PASS '
    '| FAIL rate (95% CI) | detectable lambda, weight var (mean) '
    '| t of mean, of std: mean (sd) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (setup, width, depth), rs in cells.items():
    count = {v: sum(r['verdict'] == v for r in rs) for v in sn.VERDICTS}
    rate = stats.clopper_pearson(count[sn.FAIL], len(rs))
    t = np.array([[r['t_mean'], r['t_std']] for r in rs])
    det = [np.mean([r[f'detectable_{p}'] for r in rs]) for p in sn.PARAMETERS]
    lines.append(
      f'| {setup} | {width} | {depth} | {len(rs)} | {count[sn.FAIL]} '
      f'| {count[sn.NOT_TESTABLE]} | {count[sn.PASS]} '
      f'| {rate["rate"]:.3f} ({rate["low"]:.3f}, {rate["high"]:.3f}) '
      f'| {100 * det[0]:.2f}%, {100 * det[1]:.2f}% '
      f'| {fmt(t[:, 0].mean(), ".2f")} ({fmt(t[:, 0].std(), ".2f")}), '
      f'{fmt(t[:, 1].mean(), ".2f")} ({fmt(t[:, 1].std(), ".2f")}) |'
    )
  lines += [
    '',
    '## Claims',
    '',
    'Claims 1-2: the exact one-sided binomial test of a violation, Holm '
    'within each kind; "detectable" is the violating rate the run would '
    'have caught with probability 0.8.',
    '',
    '| claim | k / n | rate (95% CI) | one-sided p (raw, Holm) '
    '| detectable | verdict |',
    '|---|---|---|---|---|---|',
  ]
  for name, v in claims.items():
    lines.append(
      f'| {name} | {v["k"]} / {v["n"]} | {v["rate"]:.3f} ({v["low"]:.3f}, '
      f'{v["high"]:.3f}) | {report.fmt(v.get("p"), ".3g")}, '
      f'{fmt(v.get("p_holm"), ".3g")} | {fmt(v.get("detectable"), ".3f")} '
      f'| {report.verdict_text(v["verdict"], v.get("reason"))} |'
    )
  return lines


def write_results(
  settings: Settings, outcome, text: str, summary: Sequence[str], **results
) -> None:
  """results.json (provenance + `results`), results.md (text, then the
  provenance) and, from results['runs'], results.csv; prints the summary
  (lines of prose) and what it wrote."""
  out = settings.placement.output_dir
  meta = report.provenance(report.flag_values(settings))
  report.write_json(
    f'{out}/results.json',
    {'meta': meta, **results, 'missing_cells': len(outcome.missing)},
  )
  report.write_text(
    f'{out}/results.md', f'{text}\n{report.provenance_markdown(meta)}'
  )
  report.write_csv(f'{out}/results.csv', results['runs'])
  report.echo(
    [
      *report.missing_line(outcome, f'{out}/results.md'),
      *summary,
      f'full table: {out}/results.md',
      f'Wrote {out}/results.json, results.csv, results.md',
    ]
  )
