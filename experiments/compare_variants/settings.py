"""compare_variants' settings: its flags, checked, in one typed value."""

from __future__ import annotations

import dataclasses

from experiments import model, sweep
from experiments.compare_variants import datasets as datasets_lib


@dataclasses.dataclass(frozen=True)
class Settings:
  """compare_variants' checked flags (main.check_flags builds them).

  The defaults are the flags' defaults (main.py defines its flags from
  them). The fields are in the order the
  report's provenance lists them.

  Attributes:
    datasets: the datasets, each split `splits` times.
    activations: the activations (and controls) compared.
    depths: the main block's depths.
    sgd_learning_rates: the SELU protocol's plain-SGD learning rates to
      choose from on validation (empty: no SELU block).
    width: units per hidden layer.
    batch: minibatch size.
    full: --full (the larger protocol for the flags not given).
    splits: repeated stratified splits per dataset.
    seeds: seeds per split (vectorized).
    steps: training steps.
    record_every: steps per record.
    learning_rate: the main block's learning rate.
    optimizer: the main block's optimizer.
    target_loss: the training loss that counts as converged.
    alpha_dropout_rate: SELU's alpha dropout rate.
    celu_alpha: CELU's alpha.
    split_seed: the seed of the first split.
    seed: the base PRNG seed of training.
    sgd_depth: the SELU protocol's depth.
    placement: the store, the report's directory and this task (None
      outside a run, e.g. in a test).
  """

  datasets: tuple[str, ...] = datasets_lib.DATASETS
  # CELU is off by default: at alpha 1 it is ELU.
  activations: tuple[str, ...] = tuple(
    a for a in model.ACTIVATIONS if a != 'celu'
  )
  depths: tuple[int, ...] = (2, 16)
  sgd_learning_rates: tuple[float, ...] = (0.01, 0.1, 1.0)
  width: int = 32
  batch: int = 64
  full: bool = False
  splits: int = 5
  seeds: int = 1
  steps: int = 400
  record_every: int = 20
  learning_rate: float = 0.001
  optimizer: str = 'adam'
  target_loss: float = 0.1
  alpha_dropout_rate: float = 0.05
  celu_alpha: float = 1.0
  split_seed: int = 0
  seed: int = 0
  sgd_depth: int = 16
  placement: sweep.Placement | None = None

  def config(self) -> dict:
    """What shapes every cell's numbers beside its own dataset, activation,
    depth, optimizer and learning rate, as its key holds it."""
    return {
      'width': self.width,
      'seeds': self.seeds,
      'splits': self.splits,
      'steps': self.steps,
      'batch': self.batch,
      'record_every': self.record_every,
      'alpha_dropout_rate': self.alpha_dropout_rate,
      'celu_alpha': self.celu_alpha,
      'split_seed': self.split_seed,
      'seed': self.seed,
    }
