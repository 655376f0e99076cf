"""Argument checks shared by the public functions.

Dtypes and shapes are checked always, even under `jax.jit`. Values are
checked in Python on concrete hyperparameters only: Python and NumPy scalars
and arrays on the host, concrete jax Arrays after one `np.asarray`. A
hyperparameter that is a tracer (an argument of an enclosing `jax.jit`, or a
value under `vmap`/`grad`) has no value at trace time and passes unchecked.
Each public docstring says what a bad traced value does instead.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Values = float | np.ndarray

# Real dtypes, for a set lookup before jnp.issubdtype's slower walk.
_REAL_DTYPES = frozenset(
  np.dtype(d)
  for d in (
    *(np.int8, np.int16, np.int32, np.int64),
    *(np.uint8, np.uint16, np.uint32, np.uint64),
    *(jnp.float16, jnp.bfloat16, np.float32, np.float64),
  )
)


def concrete_scalar(value: Any) -> float | None:
  """Returns `value` as a Python float when it is a concrete scalar, else None.

  Python numbers, NumPy scalars and 0-d arrays, and concrete 0-d jax Arrays
  are concrete; tracers and non-scalar arrays are not.
  """
  if isinstance(value, jax.core.Tracer):
    return None
  if isinstance(value, bool | np.bool_):
    return float(value)
  if isinstance(value, int | float | np.number):
    return float(value)
  if isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 0:
    return float(np.asarray(value))
  return None


def _not_real(fn: str, name: str, value: Any, kind: str) -> TypeError:
  return TypeError(
    f'{fn}: {name} must be real: a Python int or float, or an array of a '
    f'real integer or floating dtype; got {kind} {value!r}.'
  )


def hyperparameter(fn: str, name: str, value: Any) -> tuple[Any, Values | None]:
  """Checks a hyperparameter's type; returns it with its concrete values.

  Args:
    fn: the public function's name, for messages.
    name: the argument's name, for messages.
    value: a Python number, a sequence of numbers, a NumPy or jax array, or a
      tracer.

  Returns:
    (value, values): `value` itself, or as a jax Array if it was a Python
    sequence; and its values as a Python float (Python and NumPy scalars),
    a NumPy array of its own dtype (concrete arrays), or None (a tracer).

  Raises:
    TypeError: for None, strings, bool and complex values or dtypes, and
      anything else that is not a real number or array. Dtypes are known
      under jit, so a traced bool or complex value raises too.
  """
  t = type(value)
  if t is float or t is int:  # The common case, checked cheaply.
    return value, float(value)
  if isinstance(value, bool | np.bool_ | complex | np.complexfloating):
    raise _not_real(fn, name, value, type(value).__name__)
  if isinstance(value, int | float | np.integer | np.floating):
    return value, float(value)
  if value is None:
    raise TypeError(f'{fn}: {name} must be a real number or array, got None.')
  if isinstance(value, jax.core.Tracer | jax.Array | np.ndarray):
    dtype = value.dtype
  elif isinstance(value, list | tuple):
    try:
      values = np.asarray(value)
    except (TypeError, ValueError):
      values = None
    if values is None or not (
      np.issubdtype(values.dtype, np.integer)
      or np.issubdtype(values.dtype, np.floating)
    ):
      raise TypeError(
        f'{fn}: {name} must be a real number or array, got {value!r}.'
      )
    return jnp.asarray(value), values
  else:
    raise TypeError(
      f'{fn}: {name} must be a real number or array, got '
      f'{type(value).__name__} {value!r}.'
    )
  if dtype not in _REAL_DTYPES and (
    dtype == np.bool_
    or not (
      jnp.issubdtype(dtype, np.integer) or jnp.issubdtype(dtype, np.floating)
    )
  ):
    raise _not_real(fn, name, value, f'dtype {dtype}')
  if isinstance(value, jax.core.Tracer):
    return value, None
  values = np.asarray(value)
  # A 0-d array is checked as a float: NumPy's reductions cost ~1 us.
  return value, float(values) if values.ndim == 0 else values


def check_values(
  fn: str,
  name: str,
  values: Values | None,
  ok: Callable[[Values], Any],
  accepted: str,
) -> None:
  """Raises ValueError unless `ok(values)` holds (everywhere, for arrays).

  `ok` must work on a Python float and elementwise on a NumPy array, and be
  False for NaN. The message names the first offending element.
  """
  if values is None:
    return
  if isinstance(values, float):
    if not ok(values):
      raise ValueError(f'{fn}: {name} must be {accepted}, got {values!r}.')
    return
  good = np.asarray(ok(values))
  if good.all():
    return
  where = tuple(int(i) for i in np.argwhere(~good)[0])
  bad = values[where] if where else values
  at = f'{name}[{", ".join(map(str, where))}] = ' if where else ''
  raise ValueError(f'{fn}: {name} must be {accepted}, got {at}{bad!s}.')


def finite(v: Values) -> Any:
  """True where v is a finite number (False for NaN and +-inf)."""
  return abs(v) < math.inf


# Concrete jax Arrays already found finite, by identity: an eager call with
# a layer's slope array need not copy it to the host each time. Arrays are
# immutable, and the weak reference tells a live object from a reused id.
_FOUND_FINITE: dict[int, weakref.ref] = {}


def overflow_threshold(dtype: Any) -> float:
  """The smallest magnitude that rounds to +-inf (or NaN) in `dtype`.

  Halfway between the largest finite number and the next power of two:
  a tie rounds to even, which is the power of two, and so overflows. For
  float64 it is inf: every finite Python float is finite there.
  """
  info = jnp.finfo(dtype)
  return float(info.max) + 2.0 ** (info.maxexp - 2 - info.nmant)


def finite_in(dtype: Any) -> Callable[[Values], Any]:
  """A predicate: True where v is finite after rounding to `dtype`."""
  limit = overflow_threshold(dtype)

  def ok(v):
    if isinstance(v, float):
      return abs(v) < limit
    # In float64: a float32 array compared with a limit beyond float32
    # would round the limit (with an overflow warning).
    return np.abs(np.asarray(v, np.float64)) < limit

  return ok


def finite_message(dtype: Any) -> str:
  """The accepted values of `finite_in(dtype)`, for messages."""
  dtype = np.dtype(dtype)
  if dtype == np.float64:
    return 'a finite number'
  return (
    f'finite in {dtype.name}, the dtype it is computed in (largest: '
    f'{format_in(jnp.finfo(dtype).max, dtype)})'
  )


def format_in(value: Any, dtype: Any) -> str:
  """`value` as the shortest decimal that rounds to it in `dtype`."""
  return str(
    np.asarray(value, dtype).item()
    if dtype == np.float64
    else np.asarray(value, dtype)
  )


def check_finite(fn: str, name: str, value: Any, dtype: Any) -> Any:
  """Raises unless `value` is real and (when concrete) finite; returns it.

  Finite means finite after rounding to `dtype`, the dtype the value is
  computed in: 1e39 is a finite float64 but inf in float32.
  """
  dtype = np.dtype(dtype)
  if type(value) is ARRAY_TYPE:
    ref = _FOUND_FINITE.get((id(value), dtype))
    if ref is not None and ref() is value:
      return value
  value, values = hyperparameter(fn, name, value)
  check_values(fn, name, values, finite, 'a finite number')
  check_values(fn, name, values, finite_in(dtype), finite_message(dtype))
  _remember(_FOUND_FINITE, (id(value), dtype), value)
  return value


def _remember(table: dict, key: Any, value: Any) -> None:
  """table[key] = a weak reference to `value`, a concrete jax Array (other
  values are not remembered); at most 256 entries."""
  if type(value) is ARRAY_TYPE:
    if len(table) >= 256:
      table.clear()
    table[key] = weakref.ref(value)


# (id of a concrete hyperparameter array, x's shape, x's dtype) that passed
# every check: an eager call with a layer's parameter array and an input shape
# seen before skips the checks (about 1.5 us of a 4 us call). The checks
# read only the array and x's shape (the fast paths take float arrays x
# alone); the weak reference tells a live array from a reused id.
_ACCEPTED: dict[tuple[int, tuple[int, ...]], weakref.ref] = {}


def accepted(value: Any, x: jax.Array) -> bool:
  """Whether `value` passed every check before, against an x like `x`."""
  ref = _ACCEPTED.get((id(value), x.shape, x.dtype))
  return ref is not None and ref() is value


def accept(value: Any, x: jax.Array) -> None:
  """Records that a concrete array `value` passed every check for an x of
  x's shape and dtype (the dtype sets the one its values are computed in)."""
  _remember(_ACCEPTED, (id(value), x.shape, x.dtype), value)


def _rate_in_range(v: Values) -> Any:
  return (v >= 0) & (v < 1)


def check_rate(fn: str, rate: Any) -> Any:
  """Checks a dropout rate; returns it (Python sequences as arrays).

  A concrete rate must lie in [0, 1), and still be below 1 after rounding to
  the dtype the correction is computed in (the default float dtype,
  float32 unless x64 is enabled): a rate that rounds to 1 there would keep
  no element and give inf / NaN.

  Raises:
    TypeError: for a complex, bool or non-numeric rate (also when traced).
    ValueError: for a concrete rate (any element of an array) outside
      [0, 1), or one that rounds to 1 in the computation dtype.
  """
  rate, r = hyperparameter(fn, 'rate', rate)
  check_values(fn, 'rate', r, _rate_in_range, 'in [0, 1)')
  if r is None:
    return rate
  top = r if isinstance(r, float) else float(r.max(initial=0.0))
  if top > 0.5:
    dtype = np.dtype(jnp.result_type(float))
    if np.asarray(top, dtype) >= 1:
      below_one = float(np.nextafter(np.asarray(1, dtype), 0))
      raise ValueError(
        f'{fn}: rate must be in [0, 1) in the computation dtype, got '
        f'{top!r}, which rounds to 1 in {dtype.name} and would keep no '
        f'element (largest accepted: {below_one!r}).'
      )
  return rate


def check_bool(fn: str, name: str, value: Any) -> None:
  """Raises TypeError unless `value` is a Python (or NumPy) bool."""
  if type(value) is bool or isinstance(value, np.bool_):
    return
  static = ''
  if isinstance(value, jax.core.Tracer):
    static = (
      ' It selects the computation, so it must be static: under jax.jit '
      'mark it static (static_argnames) or close over it.'
    )
  raise TypeError(
    f'{fn}: {name} must be a Python bool (True or False), got '
    f'{type(value).__name__} {value!r}.{static}'
  )


def check_key(fn: str, key: Any) -> None:
  """Raises TypeError unless `key` is a PRNG key (typed or raw uint32)."""
  dtype = getattr(key, 'dtype', None)
  if dtype is not None and (
    dtype == np.uint32 or jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
  ):
    return
  raise TypeError(
    f'{fn}: key must be a PRNG key, from jax.random.key(seed) (or a raw '
    f'uint32 key from jax.random.PRNGKey(seed)), got {type(key).__name__} '
    f'{key!r}.'
  )


# Floating dtypes narrower than float32: computed in float32, rounded once.
NARROW_FLOAT_DTYPES = frozenset(
  np.dtype(d)
  for d in (
    *(jnp.float16, jnp.bfloat16),
    *(jnp.float8_e3m4, jnp.float8_e4m3, jnp.float8_e4m3fn),
    *(jnp.float8_e4m3fnuz, jnp.float8_e4m3b11fnuz),
    *(jnp.float8_e5m2, jnp.float8_e5m2fnuz),
    jnp.float4_e2m1fn,
  )
)
# Every floating dtype an activation takes: all of jax's but the unsigned
# float8_e8m0fnu (no zero, no negative numbers) and the float6 types (XLA
# cannot hold them in an array on CPU).
SUPPORTED_FLOAT_DTYPES = NARROW_FLOAT_DTYPES | frozenset(
  np.dtype(d) for d in (jnp.float32, jnp.float64)
)


def compute_dtype(dtype: Any) -> np.dtype:
  """The dtype x is computed in: float32 for narrower floats, else x's."""
  if dtype in NARROW_FLOAT_DTYPES:
    return np.dtype(np.float32)
  return dtype


def _supported_names() -> str:
  return ', '.join(sorted(d.name for d in SUPPORTED_FLOAT_DTYPES))


def check_real_dtype(fn: str, x: Any) -> None:
  """Raises TypeError for dtypes no activation takes.

  Those are bool, complex, and the floating dtypes outside
  `SUPPORTED_FLOAT_DTYPES`.
  """
  dtype = x.dtype
  if dtype == jnp.bool_ or jnp.issubdtype(dtype, jnp.complexfloating):
    raise TypeError(
      f'{fn}: x must have a real integer or floating dtype, got {dtype}. '
      'Cast it first, e.g. x.astype(jnp.float32).'
    )
  if jnp.issubdtype(dtype, jnp.floating) and dtype not in (
    SUPPORTED_FLOAT_DTYPES
  ):
    raise TypeError(
      f'{fn}: x has dtype {dtype}, which no activation supports (it has no '
      f'negative numbers or no zero, or XLA cannot compute in it); '
      f'accepted floating dtypes: {_supported_names()}.'
    )


FLOAT_DTYPES = frozenset(
  np.dtype(d) for d in (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)
)
# For the eager fast paths of the four common dtypes: x's dtype -> the
# magnitude at which a Python float hyperparameter overflows in x's compute
# dtype, and the smallest normal number there.
OVERFLOW_AT = {d: overflow_threshold(compute_dtype(d)) for d in FLOAT_DTYPES}
SMALLEST_NORMAL = {
  d: float(jnp.finfo(compute_dtype(d)).tiny) for d in FLOAT_DTYPES
}


# The concrete array type, for a cheaper test than isinstance(x, jax.Array)
# on the eager fast paths (tracers take the full path). Not type(jnp.zeros(
# ())): that would start the backend at import, before a user's
# jax.distributed.initialize(). If jax moves the class, the fast paths are
# never taken and every call takes the full path: slower, still right.
try:
  from jax._src.array import ArrayImpl as ARRAY_TYPE
except ImportError:  # pragma: no cover
  ARRAY_TYPE = None


def is_float_array(x: Any) -> bool:
  """A jax Array (or tracer) of a floating dtype: nothing to convert."""
  return isinstance(x, jax.Array) and x.dtype in FLOAT_DTYPES


_EAGER_SCALARS: dict[tuple[float, float, bool], jax.Array] = {}


def eager_scalar(value: Any, x: jax.Array) -> Any:
  """A Python float hyperparameter as a cached device scalar, when eager.

  jit's C++ dispatch converts a Python float argument on every call (about
  1.3 us on CPU, a third of a small eager call); a weak-typed device scalar
  has the same abstract value, so it hits the same compiled program, and is
  passed through. Under tracing (x a tracer) the float is returned as is,
  and so it is for a committed x (placed on a device or sharded): the
  scalar lives on the default device, and passing it would be a
  device-to-device transfer, which a transfer guard may forbid.
  """
  if (
    type(value) is not float
    or isinstance(x, jax.core.Tracer)
    or getattr(x, 'committed', True)
  ):
    return value
  # copysign: 0.0 == -0.0, but they are different slopes.
  key = (value, math.copysign(1.0, value), jax.config.jax_enable_x64)
  scalar = _EAGER_SCALARS.get(key)
  if scalar is None:
    if len(_EAGER_SCALARS) >= 256:
      _EAGER_SCALARS.clear()
    # Concrete even when called while tracing (x a constant closed over
    # by a jitted function): a tracer kept here would leak its trace.
    with jax.ensure_compile_time_eval():
      scalar = _EAGER_SCALARS[key] = jnp.asarray(value)
  return scalar


def as_array(fn: str, x: Any) -> jax.Array:
  """jnp.asarray(x), with a clear error for None and non-numeric inputs."""
  if isinstance(x, jax.Array):  # Also tracers; jnp.asarray would be a no-op.
    return x
  if x is None:
    raise TypeError(f'{fn}: x must be an array, got None.')
  if isinstance(x, np.ndarray | np.generic):
    check_real_dtype(fn, x)  # before XLA refuses a dtype it cannot hold
  try:
    return jnp.asarray(x)
  except TypeError as e:
    raise TypeError(
      f'{fn}: x must be an array of numbers, got {type(x).__name__} {x!r}.'
    ) from e
