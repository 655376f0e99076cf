"""dying_relu's settings: its flags, checked, in one typed value."""

from __future__ import annotations

import dataclasses

from experiments import sweep


@dataclasses.dataclass(frozen=True)
class Grid:
  """One optimizer's grid of learning rates and bias inits.

  Attributes:
    optimizer: 'sgd' (plain) or 'adam'.
    learning_rates: its learning rates (--learning_rates for SGD,
      --adam_learning_rates for Adam).
    bias_inits: ReLU's hidden-bias inits (--bias_inits, --adam_bias_inits).
    variant_bias_inits: the other activations' bias inits, some of
      bias_inits (SGD: --variant_bias_inits; Adam: all of them).
  """

  optimizer: str
  learning_rates: tuple[float, ...]
  bias_inits: tuple[float, ...]
  variant_bias_inits: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Settings:
  """dying_relu's checked flags (main.check_flags builds them).

  Attributes:
    activations: the activations trained (built-in names or user ones).
    grids: one `Grid` per optimizer of --optimizers, in order.
    depths: hidden layers of the main cells.
    cause_depths: the depth cause's other depths (ReLU, SGD).
    init_scales: the bad-init treatment's weight scales (x He).
    input_shifts: the shifted-data treatment's shifts.
    widths: units per hidden layer.
    steps: training steps.
    batch: minibatch size.
    record_every: steps per record.
    seed: the base PRNG seed (the teacher task and every cell's keys).
    full: --full (the larger grid for the flags not given).
    seeds: seeds per cell, paired across cells.
    placement: the store, the report's directory and this task (None
      outside a run, e.g. in a test).
    grid: the optimizer a part of the code works on (`for_optimizer`);
      None for the whole run.
  """

  activations: tuple[str, ...]
  grids: tuple[Grid, ...]
  depths: tuple[int, ...] = (4,)
  cause_depths: tuple[int, ...] = (2, 8)
  init_scales: tuple[float, ...] = (0.7071, 2.0)
  input_shifts: tuple[float, ...] = (1.0, 3.0)
  widths: tuple[int, ...] = (128,)
  steps: int = 300
  batch: int = 128
  record_every: int = 50
  seed: int = 0
  full: bool = False
  seeds: int = 5
  placement: sweep.Placement | None = None
  grid: Grid | None = None

  @property
  def optimizers(self) -> tuple[str, ...]:
    return tuple(g.optimizer for g in self.grids)

  def for_optimizer(self, optimizer: str) -> Settings:
    """These settings as one optimizer's part of the run sees them."""
    (grid,) = (g for g in self.grids if g.optimizer == optimizer)
    return dataclasses.replace(self, grid=grid)
