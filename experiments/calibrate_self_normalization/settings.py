"""The calibration's settings: its flags, checked, in one typed value."""

from __future__ import annotations

import dataclasses

from experiments import sweep


@dataclasses.dataclass(frozen=True)
class Settings:
  """calibrate_self_normalization's checked flags (main.check_flags).

  Attributes:
    widths: the stacks' widths.
    power_widths: the widths the wrong-SELU (power) setups run at.
    runs: runs of the correct setups, one count per width.
    depths: the depths the test is read at (the deepest is simulated).
    dropout_rates: alpha dropout rates of the correct setups (0: none).
    error: the wrong SELUs' relative error in lambda and weight variance.
    level: the test's level (its nominal false-alarm rate).
    detectable: the relative error the test is to detect.
    batch: samples per stack.
    seeds_per_run: stacks per run, simulated at once.
    power_runs: runs of each wrong setup per power width.
    seed: the base PRNG seed.
    placement: the store, the report's directory and this task.
  """

  widths: tuple[int, ...]
  power_widths: tuple[int, ...]
  runs: tuple[int, ...]
  depths: tuple[int, ...]
  dropout_rates: tuple[float, ...]
  error: float
  level: float
  detectable: float
  batch: int
  seeds_per_run: int
  power_runs: int
  seed: int
  placement: sweep.Placement | None = None
