"""dying_relu's `Settings` for one optimizer's part of a run, as the
tests build them (the binary builds them from its flags)."""

from experiments.dying_relu.settings import Grid, Settings


def part(
  learning_rates,
  bias_inits=(0.0,),
  *,
  optimizer='sgd',
  activations=('relu',),
  **fields,
) -> Settings:
  """Settings whose `grid` is one optimizer's: its learning rates and bias
  inits (the variants' too); `fields` set the rest (depths, widths, ...)."""
  grid = Grid(
    optimizer, tuple(learning_rates), tuple(bias_inits), tuple(bias_inits)
  )
  fields = {
    k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()
  }
  return Settings(
    activations=tuple(activations), grids=(grid,), grid=grid, **fields
  )
