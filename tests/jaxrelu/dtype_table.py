"""The README's dtype table: how often each function is correctly rounded.

For every input of a narrow dtype (all 2^16 bit patterns of float16 and
bfloat16, all 2^8 of each float8, all 2^4 of float4_e2m1fn), compares the
value and the derivative of jaxrelu's functions and of jax.nn's with the
float64 formula rounded once to that dtype. Prints a Markdown table of the
number of inputs where they differ, as "values / derivatives" (NaN inputs
excluded; a NaN where the rounded reference is a number counts as a
difference; float32 subnormals, which XLA on CPU flushes to zero, excluded:
they concern bfloat16 only, whose exponent range is float32's).

  python tests/jaxrelu/dtype_table.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from test_activations import ALPHA as SELU_ALPHA
from test_activations import (
  NARROW_DTYPES,
  RRELU_EVAL_SLOPE,
  ref_celu,
  ref_elu,
  ref_leaky,
  ref_relu,
  ref_relu6,
)
from test_activations import SCALE as SELU_SCALE

import jaxrelu

# name -> (jaxrelu's function, jax.nn's or None, the float64 reference of
# tests/jaxrelu/test_activations.py: (value, derivative)).
FUNCTIONS = {
  'relu': (jaxrelu.relu, jax.nn.relu, ref_relu),
  'relu6': (jaxrelu.relu6, jax.nn.relu6, ref_relu6),
  'leaky_relu': (jaxrelu.leaky_relu, jax.nn.leaky_relu, ref_leaky(0.01)),
  'prelu (0.25)': (lambda x: jaxrelu.prelu(x, 0.25), None, ref_leaky(0.25)),
  'rrelu (eval)': (
    lambda x: jaxrelu.rrelu(x, deterministic=True),
    None,
    ref_leaky(RRELU_EVAL_SLOPE),
  ),
  'elu': (jaxrelu.elu, jax.nn.elu, ref_elu(1.0)),
  'celu': (jaxrelu.celu, jax.nn.celu, ref_celu(1.0)),
  'selu': (jaxrelu.selu, jax.nn.selu, ref_elu(SELU_ALPHA, SELU_SCALE)),
}


def every_value(dtype) -> np.ndarray:
  """Every non-NaN value of dtype, in float64."""
  bits = jnp.finfo(dtype).bits
  raw = np.arange(2**bits, dtype=np.uint16 if bits == 16 else np.uint8)
  with np.errstate(invalid='ignore'):
    values = raw.view(np.dtype(dtype)).astype(np.float64)
  return np.unique(values[~np.isnan(values)])


TINY32 = float(jnp.finfo(jnp.float32).tiny)


def _flushed(v) -> np.ndarray:
  """Nonzero and below float32's smallest normal: XLA on CPU flushes it."""
  v = np.abs(np.asarray(v, np.float64))
  return (v > 0) & (v < TINY32)


def misses(fn, x, exact, dtype) -> tuple[int, int]:
  """(values, derivatives) of fn at x that differ from exact rounded once.

  Inputs and results that are float32 subnormals are left out: XLA on CPU
  flushes them to zero in every program (jaxrelu's and jax.nn's alike).
  """
  xd = jnp.asarray(x.astype(dtype))
  y, dy = jax.jit(lambda x: jax.jvp(fn, (x,), (jnp.ones_like(x),)))(xd)
  out = []
  for got, want in zip((y, dy), exact, strict=True):
    counted = ~(_flushed(x) | _flushed(want))
    with np.errstate(all='ignore'):
      want = np.asarray(want, np.float64).astype(dtype).astype(np.float64)
    got = np.asarray(got, np.float64)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    out.append(int((~same & counted).sum()))
  return out[0], out[1]


def table() -> str:
  lines = [
    '| dtype | inputs | ' + ' | '.join(FUNCTIONS) + ' |',
    '|---|---|' + '---|' * len(FUNCTIONS),
  ]
  for dtype in NARROW_DTYPES:
    x = every_value(dtype)
    cells = []
    for ours, theirs, ref in FUNCTIONS.values():
      with np.errstate(all='ignore'):
        exact = ref(x)
      values, slopes = misses(ours, x, exact, dtype)
      cell = f'{values} / {slopes}'
      if theirs is not None:
        values, slopes = misses(theirs, x, exact, dtype)
        cell += f' (jax.nn {values} / {slopes})'
      cells.append(cell)
    name = np.dtype(dtype).name
    lines.append(f'| {name} | {x.size} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


if __name__ == '__main__':
  print(table())
