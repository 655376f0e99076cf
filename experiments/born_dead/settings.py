"""born_dead's settings: its flags, checked, in one typed value."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from experiments import sweep


@dataclasses.dataclass(frozen=True)
class Settings:
  """born_dead's checked flags (main.check_flags builds it).

  Attributes:
    activations: the hidden activations (built-in names or users' labels).
    depths: the depths read off every network (sorted).
    widths: the widths (sorted).
    inits: the initialisations.
    trials: networks per (init, width).
    grid_points: inputs on the 1-D grid.
    input_range: the grid spans [-input_range, input_range].
    seed: the PRNG seed (the same trial keys in every cell).
    placement: the store, the report's directory and this task.
    functions: each activation's function and what its cells' keys add
      (its name; for a user's, its module, source hash and
      hyperparameters). Not a flag: left out of the provenance.
  """

  activations: tuple[str, ...]
  depths: tuple[int, ...]
  widths: tuple[int, ...]
  inits: tuple[str, ...]
  trials: int
  grid_points: int
  input_range: float
  seed: int
  placement: sweep.Placement
  functions: Mapping[str, tuple[Callable, dict]] = dataclasses.field(
    default_factory=dict
  )

  def cell(self) -> dict:
    """What every cell's computation depends on, as its key holds it."""
    return {
      'trials': self.trials,
      'grid_points': self.grid_points,
      'input_range': self.input_range,
      'seed': self.seed,
      'max_depth': max(self.depths),
    }
