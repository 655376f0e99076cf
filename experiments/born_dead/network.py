"""born_dead's networks and their rates: how often a deep, narrow ReLU
network is dead at initialisation, measured and in closed form."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from experiments import cli
from jaxrelu import initializers


def _born_dead_layer(key, fan_in: int, fan_out: int, init: str):
  """Weight (fan_in, fan_out) and bias (fan_out,) for one Dense layer."""
  if init == 'rai':
    return initializers.rai(key, fan_in, fan_out)
  k_w, k_b = jax.random.split(key)
  std = math.sqrt(2.0 / fan_in)
  w = std * jax.random.normal(k_w, (fan_in, fan_out))
  if init == 'he_zero_bias':
    b = jnp.zeros(fan_out)
  elif init == 'he_random_bias':
    b = std * jax.random.normal(k_b, (fan_out,))
  else:  # bias_0.01
    b = jnp.full(fan_out, 0.01)
  return w, b


def dead_by_depth(
  key: jax.Array,
  grid: jax.Array,
  width: int,
  depth: int,
  init: str,
  activation=jax.nn.relu,
) -> jax.Array:
  """Bool (depth, 2): for the network of the first l = i + 1 hidden layers,
  whether it is born dead, and whether its last layer is flat.

  Born dead: some layer up to l is dead, every unit passing no gradient
  (the activation's derivative 0) on every input of the grid; for ReLU,
  every unit exactly 0 everywhere. No gradient then reaches the layers
  below it, and the output is constant. Flat: layer l's every unit is
  constant over the grid, the criterion before issue 31; it also counts
  layers that float32 has merely flattened (values too close to tell
  apart), not dead.
  """

  def layer(z):
    h, slope = jax.jvp(activation, (z,), (jnp.ones_like(z),))
    return h, jnp.all(slope == 0), jnp.all(jnp.max(h, 0) == jnp.min(h, 0))

  k_first, k_rest = jax.random.split(key)
  w, b = _born_dead_layer(k_first, 1, width, init)
  h, dead, flat = layer(grid[:, None] @ w + b)

  def step(carry, k):
    h, dead_below = carry
    w, b = _born_dead_layer(k, width, width, init)
    h, dead, flat = layer(h @ w + b)
    dead = dead | dead_below
    return (h, dead), jnp.stack([dead, flat])

  first = jnp.stack([dead, flat])
  _, rest = jax.lax.scan(step, (h, dead), jax.random.split(k_rest, depth - 1))
  return jnp.concatenate([first[None], rest])


def run_cell(
  init: str, width: int, settings: dict, activation=jax.nn.relu
) -> list[dict]:
  """Born-dead counts at every depth up to max_depth for one (init, width)
  and activation.

  Args:
    init: the initialisation.
    width: the network's width.
    settings: `Settings.cell`: the trials, grid and seed, and max_depth.
    activation: the hidden layers' activation (ReLU by default).
  """
  grid = jnp.linspace(
    -settings['input_range'], settings['input_range'], settings['grid_points']
  )
  # The same trial keys for every cell: inits and widths are paired.
  key = jax.random.key(settings['seed'])
  # Compiled, and its memory checked, before the keys exist.
  keys = jax.ShapeDtypeStruct((settings['trials'],), key.dtype)
  fn = jax.jit(
    jax.vmap(
      lambda k: dead_by_depth(
        k, grid, width, settings['max_depth'], init, activation
      )
    )
  ).lower(keys)
  fn = cli.compile_within_memory(
    fn,
    jax.local_devices()[:1],
    f'{settings["trials"]} networks of width {width}',
    '--trials, --grid_points or --widths',
  )
  start = time.perf_counter()
  out = np.asarray(fn(jax.random.split(key, settings['trials'])))
  dead, flat = out[..., 0], out[..., 1]
  # Per trial, the depth it is first born dead at (0: not by max_depth):
  # trials are paired across cells, so claims can compare them trial by
  # trial.
  first = np.where(dead.any(1), dead.argmax(1) + 1, 0)
  return [
    {
      'dead_counts': dead.sum(0).astype(int).tolist(),
      'flat_counts': flat.sum(0).astype(int).tolist(),
      'first_dead': first.astype(int).tolist(),
      'seconds': time.perf_counter() - start,
    }
  ]


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
  """95% Wilson score interval for a binomial proportion."""
  p = successes / n
  denom = 1 + z * z / n
  center = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return max(0.0, center - half), min(1.0, center + half)


def born_dead_bound(width: int, depth: int) -> float:
  """1 - (1 - 2^-N)^L: some layer of N units dead, each with chance 1/2."""
  return 1.0 - (1.0 - 2.0**-width) ** depth


def born_dead_rows(cells: Sequence[dict], depths: Sequence[int]) -> list[dict]:
  """One row per stored (activation, init, width) cell and depth: how many
  networks were born dead (`dead_by_depth`), with a Wilson CI, and how
  many had a flat last layer (the old criterion, for comparison).

  Args:
    cells: `sweep.Outcome.results()` of `experiments.born_dead`.
    depths: the depths to report.
  """
  rows = []
  for cell in cells:
    trials = cell['trials']
    for depth in depths:
      count = cell['dead_counts'][depth - 1]
      flat = cell['flat_counts'][depth - 1]
      low, high = wilson(count, trials)
      rows.append(
        {
          'activation': cell.get('activation', 'relu'),
          'init': cell['init'],
          'width': cell['width'],
          'depth': depth,
          'trials': trials,
          'born_dead': count,
          'probability': count / trials,
          'ci95_low': low,
          'ci95_high': high,
          'closed_form': born_dead_bound(cell['width'], depth),
          'flat': flat,
          'flat_probability': flat / trials,
          'seconds_for_all_depths': cell['seconds'],
        }
      )
  return rows
