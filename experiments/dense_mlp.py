"""The benchmarks' MLP: Dense + activation layers, a linear head, squared
loss (benchmark_activations' memory table, benchmark_unit_stats' step)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def loss(act, params, x: jax.Array, y: jax.Array) -> jax.Array:
  """The MLP's loss: hidden Dense(width) + act layers, a linear head to 10
  outputs, squared loss."""
  h = x
  for w, b in params[:-1]:
    h = act(h @ w + b)
  w, b = params[-1]
  return jnp.mean((h @ w + b - y) ** 2)


def init(key: jax.Array, layers: int, width: int):
  """`loss`'s parameters: He-normal weights, zero biases."""
  keys = jax.random.split(key, layers + 1)
  scale = jnp.sqrt(2.0 / width)
  params = [
    (jax.random.normal(k, (width, width)) * scale, jnp.zeros(width))
    for k in keys[:-1]
  ]
  params.append(
    (jax.random.normal(keys[-1], (width, 10)) * scale, jnp.zeros(10))
  )
  return params


def temp_bytes(fn, *args) -> int:
  """Compiled temporary memory of the jitted fn at args."""
  compiled = fn.lower(*args).compile()
  return int(compiled.memory_analysis().temp_size_in_bytes)
