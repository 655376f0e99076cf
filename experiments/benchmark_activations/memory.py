"""Backward-pass memory: bytes that reverse mode saves per input element.

Reads `jax.ad_checkpoint.print_saved_residuals`, the public view of what
`jax.vjp` keeps between the forward and the backward pass, so that tests and
the benchmark measure the same thing the same way.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import print_saved_residuals

from experiments import dense_mlp

# 'f32[1024,8] from the argument x' -> dtype 'f32', shape '1024,8'.
_AVAL = re.compile(r'^(?P<dtype>[a-z]+\d*)\[(?P<shape>[\d,]*)\]')
_SHORT_DTYPES = {
  'bool': 1,
  'u8': 1,
  'i8': 1,
  'f16': 2,
  'bf16': 2,
  'i16': 2,
  'u16': 2,
  'f32': 4,
  'i32': 4,
  'u32': 4,
  'f64': 8,
  'i64': 8,
  'u64': 8,
  'key': 8,
}


def saved_residuals(fn: Callable[..., jax.Array], *args) -> list[str]:
  """Lines of `print_saved_residuals` for `lambda *a: sum(fn(*a))`."""
  buf = io.StringIO()
  with contextlib.redirect_stdout(buf):
    print_saved_residuals(lambda *a: jnp.sum(fn(*a)), *args)
  return buf.getvalue().splitlines()


def residual_bytes(lines: list[str]) -> int:
  """Total bytes of the residuals that `saved_residuals` lists."""
  total = 0
  for line in lines:
    m = _AVAL.match(line)
    if m is None or m['dtype'] not in _SHORT_DTYPES:
      raise ValueError(f'cannot parse residual {line!r}')
    dims = [int(d) for d in m['shape'].split(',') if d]
    total += _SHORT_DTYPES[m['dtype']] * math.prod(dims)
  return total


def residual_bytes_per_element(
  fn: Callable[[jax.Array], jax.Array], x: jax.Array
) -> float:
  """Bytes saved for the backward pass of `sum(fn(x))`, per element of x."""
  return residual_bytes(saved_residuals(fn, x)) / np.size(x)


def mlp_temp_bytes(
  act: Callable[[jax.Array], jax.Array],
  layers: int,
  width: int,
  batch: int,
  dtype,
) -> int:
  """Compiled temporary memory of one jitted SGD step of an MLP.

  `dense_mlp`: `layers` hidden Dense(width) + act layers and a linear head
  to 10 outputs; squared loss. Lowered from shapes alone, so nothing is
  allocated.
  """

  def step(params, x, y):
    grads = jax.grad(dense_mlp.loss, argnums=1)(act, params, x, y)
    return jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)

  sds = lambda *shape: jax.ShapeDtypeStruct(shape, dtype)
  params = [(sds(width, width), sds(width)) for _ in range(layers)]
  params.append((sds(width, 10), sds(10)))
  compiled = jax.jit(step).lower(params, sds(batch, width), sds(batch, 10))
  return int(compiled.compile().memory_analysis().temp_size_in_bytes)
