"""selu_deep_stack's settings: its flags, checked, in one typed value."""

from __future__ import annotations

import dataclasses

from experiments import sweep


@dataclasses.dataclass(frozen=True)
class Settings:
  """selu_deep_stack's checked flags (main.check_flags builds them).

  Attributes:
    activations: the activations of the main configurations.
    depth: layers of every stack.
    width: units per layer.
    batch: samples per stack.
    seeds: independent stacks per configuration.
    init: the weight init ('auto': each activation's usual one).
    weight_var_scale: the weight variance as a multiple of the init's.
    input_mean: the input's mean.
    input_var: the input's variance.
    dropout: the main configurations' dropout.
    dropout_rate: its rate (and the dropout scenarios').
    dtype: the stacks' dtype.
    level: the self-normalization test's level.
    detectable: the relative error the test is to detect.
    scenarios: whether the controls and scenarios run too.
    seed: the base PRNG seed.
    distributed: whether the run spans processes (jax.distributed).
    placement: the store, the report's directory and this task.
  """

  activations: tuple[str, ...]
  depth: int
  width: int
  batch: int
  seeds: int
  init: str
  weight_var_scale: float
  input_mean: float
  input_var: float
  dropout: str
  dropout_rate: float
  dtype: str
  level: float
  detectable: float
  scenarios: bool
  seed: int
  distributed: bool
  placement: sweep.Placement | None = None

  def criterion(self) -> dict:
    """What the self-normalization criterion depends on."""
    return {
      'width': self.width,
      'batch': self.batch,
      'level': self.level,
      'detectable': self.detectable,
    }
