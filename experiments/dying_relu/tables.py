"""dying_relu's tables: cells.csv and summary.json."""

from __future__ import annotations

from experiments import report
from experiments.dying_relu.settings import Settings

DYING_FIELDS = (
  'activation',
  'depth',
  'width',
  'optimizer',
  'learning_rate',
  'bias_init',
  'init_scale',
  'input_shift',
  'revive',
  'seeds',
  'final_dead_mean',
  'final_dead_std',
  'initial_dead_mean',
  'initial_full_layer_dead',
  'final_accuracy_mean',
  'final_loss_mean',
  'diverged',
)


def write_dying(
  outcome, cells: dict, settings: Settings, text: str, verdicts: dict
):
  """report.md, cells.csv and summary.json of dying_relu.

  Args:
    outcome: the sweep's `sweep.Outcome`.
    cells: its stored cells, by (optimizer, activation, depth, width, lr,
      bias).
    settings: the binary's checked flags.
    text: the report (without its title).
    verdicts: the claims' verdicts.
  """
  out = settings.placement.output_dir
  counts = sorted(
    {len(c['provenance']['devices']) for c in outcome.cells.values()}
  )
  machines = sorted(
    {
      f'{c["provenance"]["backend"]} on {c["provenance"]["host"]}'
      for c in outcome.cells.values()
    }
  )
  if len(machines) > 1:
    text = (
      f'Cells computed on {len(machines)} machines ({", ".join(machines)}):'
      ' other hardware can round chaotic cells differently in the last'
      ' bits.\n\n' + text
    )
  meta = report.provenance(report.flag_values(settings, 'grid'))
  # How many devices there were where each stored cell was computed
  # (model.by_cell: a cell's numbers do not depend on it).
  meta['cells_computed_on_devices'] = counts
  report.write_text(
    f'{out}/report.md',
    f'# Dying ReLU\n\n{text}\n{report.provenance_markdown(meta)}',
  )
  report.write_csv(f'{out}/cells.csv', list(cells.values()), DYING_FIELDS)
  report.write_json(
    f'{out}/summary.json',
    {'meta': meta, 'missing_cells': len(outcome.missing), 'verdicts': verdicts},
  )
