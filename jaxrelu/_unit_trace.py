r"""Per-unit statistics of every rectifier a JAX function applies.

`activation_stats(fn)` traces `fn` to a jaxpr and evaluates it with a small
interpreter (the technique of `jax.experimental.jet` and oryx's `harvest`).
Every equation is bound as `jax.core.eval_jaxpr` would bind it, so the
outputs and their gradients are those of `fn`; where an equation applies a
rectifier, its input (the pre-activation) and output are also reduced to a
few counts per unit. The user's model is never changed: code that does not
call `activation_stats` compiles to the same program.

Recognised rectifiers:

* jaxrelu's `relu`, `relu6`, `leaky_relu`, `prelu`, `rrelu`, `elu`, `selu`
  and `celu` (`prelu` and evaluation-mode `rrelu` are one function and report
  as ``'leaky_relu'``);
* `jax.nn.relu`, `relu6`, `leaky_relu`, `elu`, `selu` and `celu` (also as
  `flax.linen.relu`, `nnx.relu`, ...);
* in the user's own code, on a floating pre-activation z: a hand-written
  ``jnp.maximum(z, 0)`` or ``lax.max(z, 0.)`` (kind ``'maximum'``);
  ``jnp.where(z > 0, z, 0)`` or ``lax.select`` of the same (kind
  ``'where'``; the test may be ``z >= 0`` or ``0 < z``, or the negation
  ``jnp.where(z <= 0, 0, z)``); ``z * (z > 0)`` in either order, the
  comparison converted to z's dtype (kind ``'mask'``); and ``jnp.clip(z,
  0)``, ``jnp.clip(z, 0, 6)``, ``jnp.clip(z, min=0)`` or ``z.clip(0)``
  (kind ``'clip'``). The zero may be a literal or a broadcast zero such as
  ``jnp.zeros_like(z)``. The same forms written in a library (the variance
  clamp of Flax's and Equinox's LayerNorm and BatchNorm, optax, ...) are not
  rectifiers and are not reported.

Each site's pre-activation is z, and a unit is active where z > 0. When
`fn` applies no recognised rectifier, `activation_stats` warns (a
`UserWarning` naming `fn` and listing what is recognised) rather than
return an empty report silently: a rectifier in a form it does not know
would otherwise read as "no dead units".

A named activation is recognised by its primal structure, not by its name
alone: its first operand is the floating pre-activation, its first output
has the same shape and dtype and depends on it nonlinearly, and it is not
part of a backward pass. So when `fn` differentiates (``jax.grad`` of a loss,
a whole training step), the forward part of each activation is a site and
the backward part JAX splits off under the same name is not.

The interpreter recurses into `jit` (inlining it, or keeping its boundary
when it places its inputs or outputs with shardings), `custom_jvp` and
`custom_vjp` functions, `lax.scan`, `lax.cond`/`lax.switch`,
`lax.while_loop` (body and condition), `jax.checkpoint`, and `shard_map`
and `pmap` (which jax implements with shard_map). A shard_map body sees one
device's shard, so each site's counts are combined over the mesh axes to
equal those of the unsharded computation: concatenated over the axes that
split its units (a layer's columns in tensor parallelism), summed over the
other axes its inputs vary over (a batch, or pmap's mapped axis), and
counted once over axes it is replicated on. Which axes split which axes of
a value is followed through the body from its ``in_specs``; where that is
lost (a collective such as `lax.all_to_all`, an unknown primitive) the
counts are summed and a `UserWarning` names the site. Functions defined
inside jax and jaxrelu themselves (`jax.nn.hard_swish`, `jax.nn.softplus`,
...) are opaque: a rectifier they use internally is not reported.
Other higher-order primitives (`custom_transpose`, ...) are bound unchanged
and are opaque too.

The Markdown table and plot of a report live in `_unit_report.py`.
"""

from __future__ import annotations

import collections
import contextvars
import dataclasses
import functools
import importlib.util
import math
import os
import sysconfig
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore
from jax.extend import source_info_util
from jax.extend.core import primitives as prims
from jax.typing import ArrayLike

from jaxrelu import registry

# ReDo's dormancy threshold: a unit is dormant when its mean |activation| is
# at most tau times the layer's mean (Sokar et al. 2023).
DORMANT_TAU = 0.1

# jax.nn's activations -> (number of operands: x and hyperparameters, the
# primal as jax.nn differentiates it). A Python-number hyperparameter may be
# inlined, leaving fewer operands. From the registry: jaxrelu's activations
# with a jax.nn counterpart.
_JAX_NN_KINDS = {
  name: (1 + len(spec.hyperparameters), spec.jax_nn)
  for name, spec in registry.ACTIVATIONS.items()
  if spec.jax_nn is not None and spec.rectifier
}
# jaxrelu's jitted cores (and their custom_jvp functions) -> (reported kind,
# number of operands, the primal with its custom rule), from the registry.
_JAXRELU_KINDS = {
  core.name: (core.kind, core.arity, core.primal)
  for spec in registry.ACTIVATIONS.values()
  if spec.rectifier
  for core in spec.cores
}


# Users' own rectifiers of the trace under way (`activation_stats`'
# rectifiers): the source of each jitted function (as its jaxpr records it)
# -> (reported kind, number of operands, the function).
_USER_KINDS: contextvars.ContextVar[Mapping[str, tuple]] = (
  contextvars.ContextVar(
    'jaxrelu_user_rectifiers', default=types.MappingProxyType({})
  )
)


def _names(names) -> str:
  """'a, b and c'."""
  names = list(names)
  return (
    ', '.join(names[:-1]) + ' and ' + names[-1]
    if len(names) > 1
    else ''.join(names)
  )


# For the warning when none is found.
_RECOGNISED = (
  f"jaxrelu's and jax.nn's {_names(_JAX_NN_KINDS)} (and jaxrelu's "
  f'{_names(n for n in registry.ACTIVATIONS if n not in _JAX_NN_KINDS)}), '
  'and, in your own code, '
  'jnp.maximum(z, 0), jnp.where(z > 0, z, 0), z * (z > 0) and '
  'jnp.clip(z, 0), your own jitted rectifiers passed as '
  'activation_stats(fn, rectifiers=[...]), '
  'also inside jit, scan, cond, while_loop, checkpoint, '
  'shard_map and pmap; not those forms written in a library (flax, '
  'equinox, optax, ...), nor a rectifier inside another function of jax '
  'or jaxrelu (jax.nn.hard_swish, jax.nn.softplus, ...)'
)
# Outputs of these name the same units as their (first) input.
_PASSTHROUGH = frozenset(('convert_element_type', 'reshape', 'squeeze', 'copy'))
# Outputs of these are zero when their input is (pvary and pcast mark a
# value of a shard_map body as varying over mesh axes).
_KEEPS_ZERO = frozenset(
  ('broadcast_in_dim', 'convert_element_type', 'reshape', 'pvary', 'pcast')
)
# Outputs of these are a comparison with zero when their input is.
_KEEPS_SIGN = frozenset(('convert_element_type', 'broadcast_in_dim', 'pvary'))


def _package_dir(name: str) -> str:
  spec = importlib.util.find_spec(name)
  locations = (spec and spec.submodule_search_locations) or ()
  return os.path.join(next(iter(locations), ''), '') if locations else ''


_JAX_DIR = os.path.dirname(jax.__file__) + os.sep
_JAX_NN_DIR = os.path.join(os.path.dirname(jax.__file__), '_src', 'nn') + os.sep
_JAXRELU_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# jax implements pmap as a jit of a shard_map defined in this file.
_PMAP_SRC = os.path.join(os.path.dirname(jax.__file__), '_src', 'pmap.py')
# Frames in these are jax's own: the frame that matters is the first outside.
_JAX_DIRS = tuple(d for d in (_JAX_DIR, _package_dir('jaxlib')) if d)
# Libraries whose code is never the user's: a max with 0 written there is a
# clamp (a variance, a norm, a learning rate), not a rectifier of the model,
# and their frames never name a site.
_LIBRARIES = (
  'jax',
  'jaxlib',
  'flax',
  'equinox',
  'haiku',
  'optax',
  'chex',
  'orbax',
  'keras',
  'penzai',
  'treescope',
  'diffrax',
  'lineax',
  'optimistix',
  'distrax',
  'einops',
  'numpy',
  'scipy',
)


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=['examples', 'active', 'nan', 'zero_grad', 'abs_sum'],
  meta_fields=['kind', 'source', 'unit_ndim'],
)
@dataclasses.dataclass(frozen=True)
class UnitStats:
  r"""Counts for the units of one rectifier site; add two to merge them.

  All five arrays have the units' shape (with a leading iteration axis for a
  site inside `lax.scan`). Counts add over batches, steps and devices, so a
  running total is exact and a sum over a sharded batch is a cross-device
  reduction (`jax.tree.map(jnp.add, a, b)`, or `merge_unit_stats`). int32
  counts hold up to 2**31 - 1 inputs per unit; reset a running total before.

  Attributes:
    examples: inputs seen per unit (the product of the reduced axes' sizes,
      summed over calls).
    active: inputs where the pre-activation x > 0.
    nan: inputs where x is NaN. Such a unit is neither active there nor
      dead, as in `diagnostics.dead_units` (max(x) <= 0 fails for NaN).
    zero_grad: inputs where the site's derivative, as JAX differentiates
      it, is exactly 0 (relu: x <= 0; relu6: also x >= 6; leaky_relu only
      with slope 0; elu, selu, celu only where exp underflows; a
      hand-written `jnp.maximum(x, 0)` or `jnp.clip(x, 0)` for x < 0, as
      JAX takes 1/2 at 0; `jnp.where(x > 0, x, 0)` and `x * (x > 0)` for
      x <= 0, with `x >= 0` for x < 0).
    abs_sum: sum of |activation| (the site's output), in float32.
    kind: the rectifier: 'relu', 'relu6', 'leaky_relu', 'rrelu', 'elu',
      'selu', 'celu', or a hand-written one: 'maximum' (a max with 0),
      'where' (`jnp.where(x > 0, x, 0)`), 'mask' (`x * (x > 0)`) or 'clip'
      (`jnp.clip(x, 0, ...)`).
    source: the user's source line that applied it, 'path:line (function)'.
    unit_ndim: how many trailing axes index units (the rest are iterations).
  """

  examples: jax.Array
  active: jax.Array
  nan: jax.Array
  zero_grad: jax.Array
  abs_sum: jax.Array
  kind: str = ''
  source: str = ''
  unit_ndim: int = 1

  @property
  def active_fraction(self) -> jax.Array:
    """Fraction of inputs with x > 0, per unit (NaN for no inputs)."""
    return self.active / self.examples

  @property
  def zero_grad_fraction(self) -> jax.Array:
    """Fraction of inputs that pass no gradient, per unit."""
    return self.zero_grad / self.examples

  @property
  def dead(self) -> jax.Array:
    """True for units that saw inputs and had x <= 0 for every one.

    This is `diagnostics.dead_units` on the same pre-activations: a unit
    with a NaN input is not dead.
    """
    return (self.examples > 0) & (self.active == 0) & (self.nan == 0)

  @property
  def dormancy_score(self) -> jax.Array:
    r"""ReDo's score: mean |activation| over the layer's mean of it.

    .. math::
      s_i = \frac{\mathbb{E}|h_i|}{\frac{1}{H} \sum_j \mathbb{E}|h_j|}

    The layer mean runs over the unit axes; a layer whose activations are
    all zero scores 0 for every unit. A NaN activation makes its layer's
    scores NaN, and no unit of that layer is dormant.
    """
    mean_abs = self.abs_sum / jnp.maximum(self.examples, 1)
    axes = tuple(range(mean_abs.ndim - self.unit_ndim, mean_abs.ndim))
    layer = jnp.mean(mean_abs, axis=axes, keepdims=True)
    return jnp.where(layer != 0, mean_abs / jnp.where(layer != 0, layer, 1), 0)

  def dormant(self, tau: ArrayLike = DORMANT_TAU) -> jax.Array:
    """True for units whose dormancy score is at most tau (ReDo).

    Args:
      tau: the threshold; 0 marks only units whose output was exactly 0 for
        every input. The default 0.1 is ReDo's.

    Returns:
      A bool array of the units' shape.
    """
    return (self.examples > 0) & (self.dormancy_score <= tau)

  @property
  def dead_fraction(self) -> jax.Array:
    """Fraction of dead units (per iteration for a site inside a scan)."""
    axes = tuple(range(self.active.ndim - self.unit_ndim, self.active.ndim))
    return jnp.mean(self.dead.astype(jnp.float32), axis=axes)

  def dormant_fraction(self, tau: ArrayLike = DORMANT_TAU) -> jax.Array:
    """Fraction of dormant units (per iteration inside a scan)."""
    axes = tuple(range(self.active.ndim - self.unit_ndim, self.active.ndim))
    return jnp.mean(self.dormant(tau).astype(jnp.float32), axis=axes)


# An OrderedDict keeps the sites in the order they run, through jax.jit too
# (a plain dict's keys come back sorted).
Report = collections.OrderedDict[str, UnitStats]


# ----------------------------------------------------------------------------
# Where code comes from.


@functools.cache
def _library_dirs() -> tuple[str, ...]:
  dirs = [d for d in map(_package_dir, _LIBRARIES) if d]
  dirs.append(_JAXRELU_DIR)
  return tuple(dirs)


def _is_user_file(path: str) -> bool:
  if path.startswith(_library_dirs()):
    return False
  stdlib = sysconfig.get_path('stdlib')
  packages = ('site-packages', 'dist-packages')
  return not (path.startswith(stdlib) and not any(p in path for p in packages))


def _user_source(traceback: Any) -> str:
  """'path:line (function)' of the innermost user frame, or ''."""
  if traceback is None:
    return ''
  for frame in traceback.frames:
    if _is_user_file(frame.file_name):
      return f'{frame.file_name}:{frame.line_num} ({frame.function_name})'
  return ''


def _written_by_user(eqn: Any) -> bool:
  """Whether the first frame outside jax that made `eqn` is the user's.

  Without a traceback (source info off) every equation counts as the user's.
  """
  traceback = eqn.source_info.traceback
  if traceback is None:
    return True
  for frame in traceback.frames:
    if not frame.file_name.startswith(_JAX_DIRS):
      return _is_user_file(frame.file_name)
  return False


def short_source(source: str) -> str:
  """'path/to/model.py:12 (f)' -> 'model.py:12'."""
  return os.path.basename(source.split(' (', 1)[0]) if source else ''


# ----------------------------------------------------------------------------
# Recognising rectifiers.


def _fn_info(closed: Any) -> tuple[str, str] | None:
  """(function name, file) of the function a sub-jaxpr was traced from."""
  jaxpr = getattr(closed, 'jaxpr', closed)
  info = getattr(jaxpr, 'debug_info', None)
  src = getattr(info, 'func_src_info', None)
  if not src or ' at ' not in src:
    return None
  name, where = src.rsplit(' at ', 1)
  return name, where.rsplit(':', 1)[0]


def _src(closed: Any) -> str | None:
  """'name at file:line' of the function a sub-jaxpr was traced from."""
  jaxpr = getattr(closed, 'jaxpr', closed)
  return getattr(getattr(jaxpr, 'debug_info', None), 'func_src_info', None)


def _user_kinds(rectifiers: Sequence[Callable]) -> dict[str, tuple]:
  """`_USER_KINDS`' entries of users' jitted rectifiers; TypeError for
  anything else."""
  out = {}
  for fn in rectifiers:
    if not (callable(fn) and hasattr(fn, 'lower')):
      raise TypeError(
        f'activation_stats: rectifiers: {fn!r} is not a jax.jit-compiled '
        'function; accepted: functions wrapped in jax.jit, which the tracer '
        'then recognises wherever they are applied'
      )
    try:
      closed = jax.make_jaxpr(fn)(jnp.zeros((2,), jnp.float32))
    except Exception as e:
      raise TypeError(
        f'activation_stats: rectifiers: {fn!r} failed on a float32 array '
        f'({type(e).__name__}); accepted: functions of the pre-activation '
        'alone (fix hyperparameters with functools.partial inside the jit)'
      ) from None
    (eqn,) = closed.jaxpr.eqns
    inner = getattr(fn, '__wrapped__', fn)
    while isinstance(inner, functools.partial):
      inner = inner.func
    name = getattr(inner, '__name__', 'rectifier')
    out[_src(eqn.params['jaxpr'])] = (name, len(eqn.invars), fn)
  return out


def _is_library(info: tuple[str, str] | None) -> bool:
  """Functions of jax and jaxrelu themselves are opaque (not the jit around
  a `pmap`'s shard_map, which calls the user's function)."""
  return (
    info is not None
    and info[1].startswith((_JAX_DIR, _JAXRELU_DIR))
    and info[1] != _PMAP_SRC
  )


def _is_float(v: Any) -> bool:
  aval = getattr(v, 'aval', None)
  dtype = getattr(aval, 'dtype', None)
  return dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def _is_zero(v: Any, zeros: set) -> bool:
  if isinstance(v, jcore.Literal):
    return np.ndim(v.val) == 0 and bool(v.val == 0)
  return v in zeros


def _is_transposed(eqn: Any) -> bool:
  """Whether JAX made `eqn` by transposing: part of a backward pass."""
  return any(
    type(e).__name__ == 'Transform' and e.name == 'transpose'
    for e in getattr(eqn.source_info.name_stack, 'stack', ())
  )


# Linearity of a sub-jaxpr's outputs in one of its inputs: 0 independent,
# 1 linear, 2 nonlinear. A rectifier is nonlinear in its pre-activation; the
# parts of it that differentiation splits off (the backward pass, the linear
# map of `jax.linearize`) are linear in the residuals they are given.
_LINEAR = frozenset(
  (
    'add',
    'add_any',
    'sub',
    'neg',
    'broadcast_in_dim',
    'reshape',
    'squeeze',
    'expand_dims',
    'transpose',
    'reduce_sum',
    'copy',
    'copy_p',
    'slice',
    'rev',
    'concatenate',
    'pad',
    'cumsum',
    'real',
    'imag',
    'conj',
    'reduce_precision',
  )
)
_BILINEAR = frozenset(('mul', 'dot_general', 'conv_general_dilated'))
# Operands after these positions are indices: a tainted index is nonlinear.
_INDEXED = {'dynamic_slice': 1, 'dynamic_update_slice': 2}


def _call_jaxpr(eqn: Any) -> Any:
  """The (closed or open) jaxpr a call-like equation evaluates, or None."""
  prim, p = eqn.primitive, eqn.params
  if prim is prims.jit_p:
    return p['jaxpr']
  if prim in (prims.custom_jvp_call_p, prims.custom_vjp_call_p):
    return p['call_jaxpr']
  if prim is prims.remat_p:
    return p['jaxpr']
  return None


def _linearity(jaxpr: Any, states: tuple[int, ...], cache: dict) -> list[int]:
  """Per output: 0, 1 or 2 (see above), given the inputs' states."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  key = ('linearity', id(jaxpr), states)
  if key in cache:
    return cache[key][0]
  env: dict = dict(zip(jaxpr.invars, states, strict=True))

  def get(v):
    return 0 if isinstance(v, jcore.Literal) else env.get(v, 0)

  for eqn in jaxpr.eqns:
    ins = [get(v) for v in eqn.invars]
    n, name, top = len(eqn.outvars), eqn.primitive.name, max(ins, default=0)
    sub = _call_jaxpr(eqn)
    if top == 0:
      outs = [0] * n
    elif sub is not None:
      outs = _linearity(sub, tuple(ins), cache)
    elif name == 'select_n':
      outs = [2 if ins[0] else top]
    elif name in _BILINEAR:
      outs = [2 if sum(s > 0 for s in ins) > 1 else top]
    elif name == 'div':
      outs = [2 if ins[1] else ins[0]]
    elif name == 'convert_element_type':
      outs = [top if _is_float(eqn.outvars[0]) else 2]
    elif name in _INDEXED:
      outs = [2 if any(ins[_INDEXED[name] :]) else top]
    elif name in _LINEAR:
      outs = [top] * n
    else:
      outs = [2] * n
    for v, s in zip(eqn.outvars, outs, strict=True):
      env[v] = s
  result = [get(v) for v in jaxpr.outvars]
  cache[key] = (result, jaxpr)  # the jaxpr is kept so that its id stays unique
  return result


class _Site(NamedTuple):
  """A rectifier equation: its kind, the index of its pre-activation
  operand, and the activation as its library defines it (with its number
  of operands), or None for a hand-written max."""

  kind: str
  index: int
  arity: int = 2
  primal: Callable | None = None


class _Facts:
  """What a plan knows of a jaxpr's values so far: which are zero, and
  which compare a value with zero."""

  def __init__(self):
    self.zeros: set = set()
    # A comparison's output -> (z, positive): it is true where z > 0 (or
    # z >= 0) when positive, where z <= 0 (or z < 0) when not. Converted to
    # a float, it stays one.
    self.signs: dict = {}


# Comparisons with zero -> whether they test z > 0 (or z >= 0) when the zero
# is their second operand, and when it is their first.
_COMPARISONS = {
  'gt': (True, False),
  'ge': (True, False),
  'lt': (False, True),
  'le': (False, True),
}
# What _run_shard_map rebuilds a shard_map from (else it stays opaque).
_SHARD_MAP_PARAMS = frozenset(
  ('jaxpr', 'mesh', 'in_specs', 'out_specs', 'check_vma', 'newly_manual_axes')
)
# Functions of jax.numpy that a hand-written rectifier calls -> its kind.
_JNP_FORMS = {'_where': 'where', 'clip': 'clip'}


def _is_var(v: Any) -> bool:
  return not isinstance(v, jcore.Literal)


def _same_as_output(eqn: Any, x: Any) -> bool:
  y = eqn.outvars[0]
  return (x.aval.shape, x.aval.dtype) == (y.aval.shape, y.aval.dtype)


def _update_facts(eqn: Any, facts: _Facts) -> None:
  if not eqn.invars or not eqn.outvars:
    return
  name, ins, out = eqn.primitive.name, eqn.invars, eqn.outvars[0]
  if name in _KEEPS_ZERO and _is_zero(ins[0], facts.zeros):
    facts.zeros.add(out)
  if name in _COMPARISONS:
    a, b = ins
    second, first = _COMPARISONS[name]
    if _is_zero(b, facts.zeros) and _is_var(a) and _is_float(a):
      facts.signs[out] = (a, second)
    elif _is_zero(a, facts.zeros) and _is_var(b) and _is_float(b):
      facts.signs[out] = (b, first)
  elif _is_var(ins[0]) and ins[0] in facts.signs:
    z, positive = facts.signs[ins[0]]
    if name == 'not':
      facts.signs[out] = (z, not positive)
    elif name in _KEEPS_SIGN:
      facts.signs[out] = (z, positive)


def _select_site(
  eqn: Any, facts: _Facts, c: Any, true: int, false: int
) -> _Site | None:
  """A where(c, x, 0) on c = (x > 0), or where(c, 0, x) on c = (x <= 0):
  `true` and `false` are the operand indices of the two cases."""
  if not _is_var(c) or c not in facts.signs:
    return None
  z, positive = facts.signs[c]
  index, other = (true, false) if positive else (false, true)
  if eqn.invars[index] is not z or not _is_zero(eqn.invars[other], facts.zeros):
    return None
  return _Site('where', index) if _same_as_output(eqn, z) else None


def _mask_site(eqn: Any, facts: _Facts) -> _Site | None:
  """x * (x > 0), in either order, the comparison converted to x's dtype."""
  for index, (z, m) in enumerate((eqn.invars, eqn.invars[::-1])):
    if _is_var(m) and _is_float(m) and m in facts.signs:
      if facts.signs[m] == (z, True) and _same_as_output(eqn, z):
        return _Site('mask', index)
  return None


def _clip_site(eqn: Any, body: Any, facts: _Facts) -> _Site | None:
  """jnp.clip(x, 0, ...): its body takes the max of x and its lower bound."""
  jaxpr = body.jaxpr
  x = jaxpr.invars[0]
  origin = {v: i for i, v in enumerate(jaxpr.invars)}
  for e in jaxpr.eqns:
    a = e.invars[0] if e.invars else None
    if e.primitive.name in _KEEPS_ZERO and _is_var(a) and a in origin:
      origin[e.outvars[0]] = origin[a]
    elif e.primitive is prims.max_p and x in e.invars:
      bound = e.invars[1] if e.invars[0] is x else e.invars[0]
      if _is_var(bound):  # an operand of the call: the lower bound
        k = origin.get(bound, 0)
        zero = k > 0 and _is_zero(eqn.invars[k], facts.zeros)
      else:
        zero = _is_zero(bound, set())
      ok = zero and _is_float(eqn.invars[0]) and _same_as_output(eqn, x)
      return _Site('clip', 0) if ok else None
  return None


def _recognise(
  eqn: Any, facts: _Facts, transposed: bool, cache: dict
) -> _Site | None:
  """The site of a rectifier equation, or None."""
  prim, zeros = eqn.primitive, facts.zeros
  if prim is prims.max_p:
    a, b = eqn.invars
    if _is_zero(b, zeros) and _is_float(a) and not _is_zero(a, zeros):
      site = _Site('maximum', 0)
    elif _is_zero(a, zeros) and _is_float(b):
      site = _Site('maximum', 1)
    else:
      return None
    return site if _written_by_user(eqn) else None
  if prim.name in ('select_n', 'mul'):
    if prim.name == 'mul':
      site = _mask_site(eqn, facts)
    elif len(eqn.invars) == 3:  # select_n(c, when false, when true)
      site = _select_site(eqn, facts, eqn.invars[0], 2, 1)
    else:
      site = None
    ok = site is not None and not transposed and _written_by_user(eqn)
    return site if ok else None
  if prim is prims.jit_p:
    body, index = eqn.params['jaxpr'], 0
  elif prim is prims.custom_jvp_call_p:
    body, index = eqn.params['call_jaxpr'], eqn.params['num_consts']
  else:
    return None
  info = _fn_info(body)
  if transposed or info is None or index >= len(eqn.invars):
    return None
  name, path = info
  if prim is prims.jit_p and path.startswith(_JAX_DIR) and name in _JNP_FORMS:
    if _JNP_FORMS[name] == 'clip':
      site = _clip_site(eqn, body, facts)
    elif len(eqn.invars) >= 3:  # jnp.where(c, x, y), then any tangents
      site = _select_site(eqn, facts, eqn.invars[0], 1, 2)
    else:
      site = None
    return site if site is not None and _written_by_user(eqn) else None
  user = _USER_KINDS.get()
  if path.startswith(_JAX_NN_DIR) and name in _JAX_NN_KINDS:
    kind, (arity, primal) = name, _JAX_NN_KINDS[name]
  elif path.startswith(_JAXRELU_DIR) and name in _JAXRELU_KINDS:
    kind, arity, primal = _JAXRELU_KINDS[name]
  elif prim is prims.jit_p and _src(body) in user:
    kind, arity, primal = user[_src(body)]
  else:
    return None
  # The primal structure: the floating pre-activation in, an output of its
  # shape and dtype out first, nonlinear in it. Differentiation may add
  # outputs (residuals; tangents in forward mode, with tangent inputs); an
  # equation with more operands than the activation and one output is the
  # linear part `jax.linearize` splits off, not a site.
  if len(eqn.invars) - index > arity and len(eqn.outvars) < 2:
    return None
  x, y = eqn.invars[index], eqn.outvars[0]
  if not _is_float(x) or (x.aval.shape, x.aval.dtype) != (
    y.aval.shape,
    y.aval.dtype,
  ):
    return None
  states = tuple(int(i == index) for i in range(len(eqn.invars)))
  if _linearity(body, states, cache)[0] != 2:
    return None
  return _Site(kind, index, arity, primal)


def _sub_jaxprs(eqn: Any) -> list[Any]:
  """The sub-jaxprs (closed or open) this interpreter recurses into."""
  prim, p = eqn.primitive, eqn.params
  if prim is prims.jit_p:
    closed = p['jaxpr']
    return [] if _is_library(_fn_info(closed)) else [closed]
  if prim in (prims.custom_jvp_call_p, prims.custom_vjp_call_p):
    closed = p['call_jaxpr']
    return [] if _is_library(_fn_info(closed)) else [closed]
  if prim is prims.scan_p:
    return [p['jaxpr']]
  if prim is prims.cond_p:
    return list(p['branches'])
  if prim is prims.while_p:
    return [p['cond_jaxpr'], p['body_jaxpr']]
  if prim is prims.remat_p or (
    prim.name == 'shard_map' and _SHARD_MAP_PARAMS <= p.keys()
  ):
    return [] if p['jaxpr'].constvars else [p['jaxpr']]
  return []


class _Plan(NamedTuple):
  """Per equation of a jaxpr: its site (or None), whether a sub-jaxpr has
  sites, whether it is part of a backward pass; and whether any has."""

  sites: tuple[_Site | None, ...]
  subs: tuple[bool, ...]
  transposed: tuple[bool, ...]
  any: bool


def _plan(jaxpr: Any, transposed: bool, cache: dict) -> _Plan:
  """Where the sites of a (closed or open) jaxpr are, cached."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  key = ('plan', id(jaxpr), transposed)
  if key not in cache:
    cache[key] = (_Plan((), (), (), False), jaxpr)  # guards recursion
    facts = _Facts()
    sites, subs, flags = [], [], []
    for eqn in jaxpr.eqns:
      t = transposed or _is_transposed(eqn)
      site = _recognise(eqn, facts, t, cache)
      sites.append(site)
      subs.append(
        site is None and any(_plan(s, t, cache).any for s in _sub_jaxprs(eqn))
      )
      flags.append(t)
      _update_facts(eqn, facts)
    found = any(s is not None for s in sites) or any(subs)
    # The jaxpr is kept in the entry so that its id stays unique.
    cache[key] = (_Plan(tuple(sites), tuple(subs), tuple(flags), found), jaxpr)
  return cache[key][0]


def _needed(jaxpr: Any, plan: _Plan) -> list[bool]:
  """Equations that the sites need (for a statistics-only evaluation)."""
  needed: set = set()
  keep = [False] * len(jaxpr.eqns)
  for i in reversed(range(len(jaxpr.eqns))):
    eqn = jaxpr.eqns[i]
    if (
      plan.sites[i] is not None
      or plan.subs[i]
      or any(
        not isinstance(v, jcore.DropVar) and v in needed for v in eqn.outvars
      )
    ):
      keep[i] = True
      needed.update(v for v in eqn.invars if not isinstance(v, jcore.Literal))
  return keep


# ----------------------------------------------------------------------------
# Inside shard_map (and pmap, which jax implements with it): a body sees one
# device's shard, so a site's counts are combined over the mesh axes.


class _Layout(NamedTuple):
  """How a value of a shard_map body lies on the mesh.

  dims: per axis of the value, the mesh axes that split it, major first;
    None where not known.
  varies: the mesh axes over which jax types it as varying (`check_vma`):
    a psum of it may sum over those only.
  differs: the mesh axes over which its values do differ between devices,
    a subset (an all_gather's output is typed varying, but the same on
    every device).
  """

  dims: tuple[tuple[str, ...], ...] | None
  varies: frozenset = frozenset()
  differs: frozenset = frozenset()


class _Spmd(NamedTuple):
  """Of a site in a shard_map body: per unit axis, the mesh axes that split
  it (None if not known); the mesh axes over which its operands vary and
  differ (None if not known)."""

  units: tuple[tuple[str, ...], ...] | None
  varies: frozenset | None
  differs: frozenset | None


# Collectives whose outputs are the same on every device of their axes.
_ALL_REDUCE = frozenset(('psum', 'psum_invariant', 'pmax', 'pmin'))
# Primitives that reduce their operand over params['axes'] (also read by
# _redo's structure walk).
REDUCTIONS = frozenset(
  (
    'reduce_sum',
    'reduce_max',
    'reduce_min',
    'reduce_prod',
    'reduce_and',
    'reduce_or',
    'reduce_xor',
    'argmax',
    'argmin',
  )
)
# Their first operand's axes are the output's where sizes agree.
_SLICES = frozenset(('slice', 'dynamic_slice', 'pad', 'dynamic_update_slice'))


def _replicated(ndim: int) -> _Layout:
  return _Layout(((),) * ndim)


def _names(axis_name: Any) -> tuple[str, ...]:
  return (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)


def _merge_dims(dims: Sequence[Any], ndim: int) -> tuple | None:
  """Per axis, the one splitting of the operands split there, or None."""
  if any(d is None for d in dims):
    return None
  out = []
  for i in range(ndim):
    axes = {d[i] for d in dims} - {()}
    if len(axes) > 1:
      return None
    out.append(axes.pop() if axes else ())
  return tuple(out)


def _join(a: _Layout, b: _Layout) -> _Layout:
  ndim = len(a.dims) if a.dims is not None else 0
  return _Layout(
    _merge_dims([a.dims, b.dims], ndim),
    a.varies | b.varies,
    a.differs | b.differs,
  )


def _shape(v: Any) -> tuple[int, ...]:
  return tuple(getattr(v.aval, 'shape', ()))


def _reshape_dims(dims: tuple, old: tuple, new: tuple) -> tuple | None:
  """A split axis keeps its splitting through a reshape where it stays the
  major axis of those it is merged with or split into. A split axis of size
  1 (a device's index along it, as in pmap) is dropped."""
  out: list = [()] * len(new)
  i = j = 0
  while i < len(old) or j < len(new):
    i0, j0 = i, j
    a = old[i] if i < len(old) else 1
    b = new[j] if j < len(new) else 1
    i, j = i + 1, j + 1
    while a != b:
      if a < b and i < len(old):
        a, i = a * old[i], i + 1
      elif b < a and j < len(new):
        b, j = b * new[j], j + 1
      else:
        return None
    group = [k for k in range(i0, min(i, len(old))) if old[k] != 1]
    split = [k for k in group if dims[k]]
    if not split:
      continue
    into = [k for k in range(j0, min(j, len(new))) if new[k] != 1]
    if split != group[:1] or not into:
      return None
    out[into[0]] = dims[split[0]]
  return tuple(out)


def _eqn_dims(eqn: Any, ins: Sequence[_Layout]) -> list[Any]:
  """The dims of an equation's outputs (None where not known)."""
  name, p = eqn.primitive.name, eqn.params
  shapes = [_shape(v) for v in eqn.outvars]
  unknown = [None] * len(shapes)
  if any(lay.dims is None for lay in ins):
    return unknown
  dims = [lay.dims for lay in ins]
  if not any(any(d) for d in dims):
    return [_replicated(len(s)).dims for s in shapes]
  if name == 'broadcast_in_dim':
    old, out = _shape(eqn.invars[0]), [()] * len(shapes[0])
    for i, d in enumerate(p['broadcast_dimensions']):
      out[d] = dims[0][i] if old[i] == shapes[0][d] else ()
    return [tuple(out)]
  if name == 'dot_general':
    (lc, rc), (lb, rb) = p['dimension_numbers']
    lhs, rhs = dims[:2]
    batch = [
      _merge_dims([(lhs[i],), (rhs[j],)], 1)
      for i, j in zip(lb, rb, strict=True)
    ]
    if None in batch:
      return unknown
    free_l = [lhs[i] for i in range(len(lhs)) if i not in (*lc, *lb)]
    free_r = [rhs[j] for j in range(len(rhs)) if j not in (*rc, *rb)]
    return [(*(b[0] for b in batch), *free_l, *free_r)]
  if name == 'conv_general_dilated':
    lhs_spec, rhs_spec, out_spec = p['dimension_numbers']
    lhs, rhs = dims[:2]
    if any(lhs[i] for i in lhs_spec[2:]):
      return unknown
    out = [()] * len(shapes[0])
    out[out_spec[0]], out[out_spec[1]] = lhs[lhs_spec[0]], rhs[rhs_spec[0]]
    return [tuple(out)]
  if name == 'transpose':
    return [tuple(dims[0][i] for i in p['permutation'])]
  if name in REDUCTIONS or name == 'squeeze':
    drop = p['axes'] if name in REDUCTIONS else p['dimensions']
    return [tuple(d for i, d in enumerate(dims[0]) if i not in drop)]
  if name == 'reshape':
    return [_reshape_dims(dims[0], _shape(eqn.invars[0]), shapes[0])]
  if name == 'all_gather':
    axis, d = p['all_gather_dimension'], dims[0]
    if not p['tiled']:
      return [(*d[:axis], (), *d[axis:])]
    if d[axis] not in ((), _names(p['axis_name'])):
      return unknown
    return [(*d[:axis], (), *d[axis + 1 :])]
  if name in _SLICES and not any(any(d) for d in dims[1:]):
    old = _shape(eqn.invars[0])
    if len(old) != len(shapes[0]):
      return unknown
    out = [
      d if n == m else () if not d else None
      for d, n, m in zip(dims[0], old, shapes[0], strict=True)
    ]
    return unknown if None in out else [tuple(out)]
  # Elementwise: operands of the outputs' shape, or of its rank with size-1
  # axes (broadcast, so not split), or scalars.
  if not shapes or any(s != shapes[0] for s in shapes):
    return unknown
  out = shapes[0]
  operands = []
  for v, d in zip(eqn.invars, dims, strict=True):
    shape = _shape(v)
    if not shape:
      continue
    if len(shape) != len(out) or any(
      n not in (m, 1) or (n != m and d[i])
      for i, (n, m) in enumerate(zip(shape, out, strict=True))
    ):
      return unknown
    operands.append(d)
  return [_merge_dims(operands, len(out))] * len(shapes)


def _fixpoint(step: Callable, carry: list[_Layout]) -> list[_Layout]:
  """Loop-carried layouts: joined with what an iteration makes of them."""
  for _ in range(4):
    joined = [_join(a, b) for a, b in zip(carry, step(carry), strict=True)]
    if joined == carry:
      return carry
    carry = joined
  return [c._replace(dims=None) for c in carry]


def _eqn_layouts(eqn: Any, ins: list[_Layout], table: dict) -> list[_Layout]:
  """The layouts of an equation's outputs; sub-jaxprs' values go to table."""
  prim, p, name = eqn.primitive, eqn.params, eqn.primitive.name
  sub = _call_jaxpr(eqn)
  if sub is not None:
    return _layout_jaxpr(sub, ins, table)
  if prim is prims.scan_p:
    body, nc, nk = p['jaxpr'], p['num_consts'], p['num_carry']
    consts = ins[:nc]
    xs = [
      lay._replace(dims=lay.dims and lay.dims[1:]) for lay in ins[nc + nk :]
    ]

    def step(carry):
      return _layout_jaxpr(body, [*consts, *carry, *xs], {})[:nk]

    carry = _fixpoint(step, ins[nc : nc + nk])
    outs = _layout_jaxpr(body, [*consts, *carry, *xs], table)
    ys = [lay._replace(dims=lay.dims and ((), *lay.dims)) for lay in outs[nk:]]
    return [*outs[:nk], *ys]
  if prim is prims.while_p:
    cn, bn = p['cond_nconsts'], p['body_nconsts']
    cconsts, bconsts = ins[:cn], ins[cn : cn + bn]
    body = p['body_jaxpr']
    carry = _fixpoint(
      lambda carry: _layout_jaxpr(body, [*bconsts, *carry], {}),
      ins[cn + bn :],
    )
    (pred,) = _layout_jaxpr(p['cond_jaxpr'], [*cconsts, *carry], table)
    carry = _layout_jaxpr(body, [*bconsts, *carry], table)
    # A predicate that differs between devices makes the outputs differ.
    return [_join(c, pred._replace(dims=c.dims)) for c in carry]
  if prim is prims.cond_p:
    branches = [_layout_jaxpr(b, ins[1:], table) for b in p['branches']]
    outs = [functools.reduce(_join, ls) for ls in zip(*branches, strict=True)]
    return [_join(lay, ins[0]._replace(dims=lay.dims)) for lay in outs]
  varies = frozenset().union(*(lay.varies for lay in ins))
  differs = frozenset().union(*(lay.differs for lay in ins))
  if name in _ALL_REDUCE:
    axes = {a for a in p.get('axes', ()) if isinstance(a, str)}
    varies, differs = varies - axes, differs - axes
  elif name == 'pvary':  # typed varying, the same values
    varies |= set(p['axes'])
  elif name == 'axis_index':
    varies |= set(_names(p['axis_name']))
    differs |= set(_names(p['axis_name']))
  elif name == 'all_gather':
    differs -= set(_names(p['axis_name']))
  elif name == 'shard_map':  # a nested one analyses its own body
    return [_Layout(None, varies, differs)] * len(eqn.outvars)
  return [_Layout(d, varies, differs) for d in _eqn_dims(eqn, ins)]


def _layout_jaxpr(
  jaxpr: Any, ins: Sequence[_Layout], table: dict
) -> list[_Layout]:
  """Layouts of a (closed or open) jaxpr's outputs; table gets every value's
  (a value reached twice with different layouts gets dims None)."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  env: dict = {}

  def read(v):
    if isinstance(v, jcore.Literal):
      return _replicated(np.ndim(v.val))
    return env[v]

  def write(v, layout):
    if isinstance(v, jcore.DropVar):
      return
    env[v] = layout
    old = table.get(v)
    table[v] = layout if old is None or old == layout else _join(old, layout)

  for v in jaxpr.constvars:
    write(v, _replicated(len(_shape(v))))
  for v, layout in zip(jaxpr.invars, ins, strict=True):
    write(v, layout)
  for eqn in jaxpr.eqns:
    outs = _eqn_layouts(eqn, [read(v) for v in eqn.invars], table)
    for v, layout in zip(eqn.outvars, outs, strict=True):
      write(v, layout)
  return [read(v) for v in jaxpr.outvars]


def _spec_axes(entry: Any) -> tuple[str, ...] | None:
  """A PartitionSpec entry as mesh axes (None if not a plain one)."""
  if entry is None:
    return ()
  if isinstance(entry, str):
    return (entry,)
  if isinstance(entry, tuple) and all(isinstance(a, str) for a in entry):
    return entry
  return None


def _body_layouts(eqn: Any, outer: Sequence[_Layout | None]) -> list[_Layout]:
  """The layouts of a shard_map body's inputs, from its in_specs (and, in
  a shard_map nested in another, the outer body's layouts)."""
  layouts = []
  for v, spec, out in zip(
    eqn.params['jaxpr'].invars, eqn.params['in_specs'], outer, strict=True
  ):
    ndim = len(_shape(v))
    axes = [_spec_axes(e) for e in (*spec, *(None,) * ndim)[:ndim]]
    dims = None if None in axes else tuple(axes)
    split = frozenset(a for d in axes if d for a in d)
    layout = _Layout(dims, split, split)
    if out is not None:
      layout = _Layout(
        None
        if dims is None or out.dims is None
        else tuple(o + d for o, d in zip(out.dims, dims, strict=True)),
        split | out.varies,
        split | out.differs,
      )
    layouts.append(layout)
  return layouts


def _site_spmd(
  eqn: Any, index: int, unit_axes: tuple[int, ...], layouts: dict
) -> _Spmd:
  def get(v):
    if isinstance(v, jcore.Literal):
      return _replicated(np.ndim(v.val))
    return layouts.get(v)

  ins = [get(v) for v in eqn.invars]
  x = ins[index]
  units = None
  if x is not None and x.dims is not None:
    units = tuple(x.dims[a] for a in unit_axes)
  if any(lay is None for lay in ins):
    return _Spmd(units, None, None)
  return _Spmd(
    units,
    frozenset().union(*(lay.varies for lay in ins)),
    frozenset().union(*(lay.differs for lay in ins)),
  )


# ----------------------------------------------------------------------------
# The interpreter.


def _scopes(name_stack: Any) -> tuple[str, ...]:
  """Named scopes of a name stack, without transformation wrappers."""
  return tuple(
    e.name
    for e in getattr(name_stack, 'stack', ())
    if e.name and type(e).__name__ != 'Transform'
  )


class _Record(NamedTuple):
  where: str
  kind: str
  source: str
  unit_ndim: int
  spmd: _Spmd | None  # inside a shard_map body
  stats: tuple[jax.Array, ...]  # examples, active, nan, zero_grad, abs_sum

  def meta(self) -> tuple:
    return self[:5]


@dataclasses.dataclass
class _Ctx:
  unit_axis: tuple[int, ...] | int
  prefix: tuple[str, ...] = ()
  source: str = ''
  transposed: bool = False
  records: list = dataclasses.field(default_factory=list)
  cache: dict = dataclasses.field(default_factory=dict)
  # Inside a shard_map body: the layouts of its values (see _Layout).
  layouts: dict | None = None

  def child(
    self, prefix: tuple[str, ...], source: str, transposed: bool | None = None
  ) -> _Ctx:
    if transposed is None:
      transposed = self.transposed
    return _Ctx(
      self.unit_axis, prefix, source, transposed, [], self.cache, self.layouts
    )


def _name_context(eqn: Any):
  name_stack = (
    source_info_util.current_name_stack() + eqn.source_info.name_stack
  )
  return source_info_util.user_context(
    eqn.source_info.traceback, name_stack=name_stack
  )


def _bind(eqn: Any, invals: Sequence[Any]) -> list[Any]:
  """Binds an equation as `jax.core.eval_jaxpr` does, source info included."""
  params = eqn.primitive.get_bind_params(eqn.params)
  with _name_context(eqn), eqn.ctx.manager:
    out = eqn.primitive.bind(*invals, **params)
  return list(out) if eqn.primitive.multiple_results else [out]


def _stop(v: Any) -> Any:
  dtype = getattr(v, 'dtype', None)
  if dtype is not None and jnp.issubdtype(dtype, jnp.inexact):
    return lax.stop_gradient(v)
  return v


def _unit_axes(unit_axis, shape, where: str) -> tuple[int, ...]:
  ndim = len(shape)
  if ndim == 0:
    return ()
  axes = (unit_axis,) if isinstance(unit_axis, int) else unit_axis
  for a in axes:
    if not -ndim <= a < ndim:
      raise ValueError(
        f'activation_stats: unit_axis={unit_axis!r} is out of range for the '
        f'rectifier at {where!r}, whose pre-activation has shape {shape}.'
      )
  return tuple(sorted({a % ndim for a in axes}))


def _site_stats(
  eqn: Any, invals: Sequence[Any], y: jax.Array, site: _Site, unit_axes
) -> tuple[jax.Array, ...]:
  """Per-unit counts of one application of a rectifier."""
  # A Literal operand (a Python number fn was given or wrote) is a 0-d site.
  args = [
    jnp.asarray(_stop(val), v.aval.dtype)
    if isinstance(v, jcore.Literal)
    else _stop(val)
    for v, val in zip(eqn.invars, invals, strict=True)
  ]
  index = site.index
  x, hyper = args[index], args[index + 1 : index + site.arity]

  # The derivative as JAX differentiates the activation: its library
  # function (with its custom rule) on the same operands, since under
  # differentiation the equation itself may be a part that has lost the
  # rule; the equation itself where a hyperparameter was inlined (jax.nn,
  # no custom rule) or is not a scalar (it may be batched by vmap).
  by_library = (
    site.primal is not None
    and len(hyper) == site.arity - 1
    and all(jnp.ndim(h) == 0 for h in hyper)
  )

  def apply(x):
    if by_library:
      return site.primal(x, *hyper)
    return _bind(eqn, [*args[:index], x, *args[index + 1 :]])[0]

  _, deriv = jax.jvp(apply, (x,), (jnp.ones_like(x),))
  reduce = tuple(a for a in range(x.ndim) if a not in unit_axes)
  n = math.prod(x.shape[a] for a in reduce)
  active = jnp.sum(x > 0, axis=reduce, dtype=jnp.int32)
  nan = jnp.sum(jnp.isnan(x), axis=reduce, dtype=jnp.int32)
  zero_grad = jnp.sum(deriv == 0, axis=reduce, dtype=jnp.int32)
  abs_sum = jnp.sum(
    jnp.abs(_stop(y)).astype(jnp.float32), axis=reduce, dtype=jnp.float32
  )
  examples = jnp.full(active.shape, n, jnp.int32)
  return examples, active, nan, zero_grad, abs_sum


def _interpret(
  jaxpr: Any,
  consts: Sequence[Any],
  args: Sequence[Any],
  ctx: _Ctx,
  producers: Sequence[tuple[str, ...]] | None = None,
  *,
  outputs: bool = True,
) -> tuple[list[Any], list[tuple[str, ...]]]:
  """Evaluates a jaxpr, recording rectifier sites in ctx.records.

  Returns the outputs and, for each, the scope path of the equation that
  produced it (used to name the sites that consume it). With
  ``outputs=False`` only the equations the sites need are evaluated, and
  nothing is returned.
  """
  plan = _plan(jaxpr, ctx.transposed, ctx.cache)
  keep = _needed(jaxpr, plan) if not outputs else None
  env: dict = {}
  made_by: dict = {}

  def read(v):
    return v.val if isinstance(v, jcore.Literal) else env[v]

  for v, val in zip(jaxpr.constvars, consts, strict=True):
    env[v] = val
  for i, (v, val) in enumerate(zip(jaxpr.invars, args, strict=True)):
    env[v] = val
    if producers is not None and producers[i]:
      made_by[v] = producers[i]

  for i, eqn in enumerate(jaxpr.eqns):
    if keep is not None and not keep[i]:
      continue
    invals = [read(v) for v in eqn.invars]
    in_made_by = [
      () if isinstance(v, jcore.Literal) else made_by.get(v, ())
      for v in eqn.invars
    ]
    path = ctx.prefix + _scopes(eqn.source_info.name_stack)
    site = plan.sites[i]
    out_made_by = None
    if site is not None:
      outs = _bind(eqn, invals)
      source = _user_source(eqn.source_info.traceback) or ctx.source
      where = '/'.join(in_made_by[site.index] or path) or short_source(source)
      where = where or site.kind
      shape = eqn.invars[site.index].aval.shape
      axes = _unit_axes(ctx.unit_axis, shape, where)
      stats = _site_stats(eqn, invals, outs[0], site, axes)
      spmd = None
      if ctx.layouts is not None:
        spmd = _site_spmd(eqn, site.index, axes, ctx.layouts)
      ctx.records.append(
        _Record(where, site.kind, source, len(axes), spmd, stats)
      )
    elif plan.subs[i]:
      source = _user_source(eqn.source_info.traceback) or ctx.source
      sub = ctx.child(path, source, plan.transposed[i])
      handler = _HANDLERS.get(eqn.primitive) or _run_shard_map  # by name
      outs, out_made_by = handler(eqn, invals, in_made_by, sub)
      ctx.records.extend(sub.records)
    else:
      outs = _bind(eqn, invals)
    for j, (v, val) in enumerate(zip(eqn.outvars, outs, strict=True)):
      if isinstance(v, jcore.DropVar):
        continue
      env[v] = val
      if out_made_by is not None and out_made_by[j]:
        made_by[v] = out_made_by[j]
      elif path:
        made_by[v] = path
      elif eqn.primitive.name in _PASSTHROUGH and in_made_by[0]:
        made_by[v] = in_made_by[0]
  if not outputs:
    return [], []
  outvals = [read(v) for v in jaxpr.outvars]
  out_made_by = [
    () if isinstance(v, jcore.Literal) else made_by.get(v, ())
    for v in jaxpr.outvars
  ]
  return outvals, out_made_by


def _zeros_like_stats(shapes: Sequence[Any]) -> list[Any]:
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), list(shapes))


def _avals_as_structs(avals: Sequence[Any]) -> list[jax.ShapeDtypeStruct]:
  return [
    jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in avals
  ]


def _placement(sharding: Any) -> jax.sharding.Sharding | None:
  return sharding if isinstance(sharding, jax.sharding.Sharding) else None


def _run_jit(eqn, invals, made_by, ctx):
  """A jit: inlined, or, when it places its inputs or outputs with
  shardings, evaluated inside a new jit with the same placements."""
  p = eqn.params
  closed = p['jaxpr']
  ins = tuple(map(_placement, p['in_shardings']))
  outs = list(map(_placement, p['out_shardings']))
  if not any(ins) and not any(outs):
    with _name_context(eqn):
      return _interpret(closed.jaxpr, closed.consts, invals, ctx, made_by)
  meta: list = []
  out_made_by: list = []

  def body(*args):
    sub = ctx.child(ctx.prefix, ctx.source)
    vals, names = _interpret(closed.jaxpr, closed.consts, args, sub, made_by)
    meta[:] = [r.meta() for r in sub.records]
    out_made_by[:] = names
    return vals, [r.stats for r in sub.records]

  body.__name__ = p['name']
  placed = jax.jit(body, in_shardings=ins, out_shardings=(outs, None))
  with _name_context(eqn):
    vals, stats = placed(*invals)
  ctx.records.extend(_Record(*m, s) for m, s in zip(meta, stats, strict=True))
  return vals, out_made_by


def _run_custom(eqn, invals, made_by, ctx):
  """custom_jvp/vjp: outputs from the original (its rules kept), stats from
  the part of its primal body that the sites need, evaluated again on
  stop_gradient inputs."""
  outs = _bind(eqn, invals)
  closed = eqn.params['call_jaxpr']
  args = [_stop(v) for v in invals]
  with _name_context(eqn):
    _interpret(closed.jaxpr, closed.consts, args, ctx, made_by, outputs=False)
  return outs, None


def _run_scan(eqn, invals, made_by, ctx):
  """A scan: one site per body site, stats stacked along the scan axis."""
  p = eqn.params
  body, nc, nk = p['jaxpr'], p['num_consts'], p['num_carry']
  consts, init, xs = invals[:nc], invals[nc : nc + nk], invals[nc + nk :]
  meta: list = []

  def step(carry, x):
    sub = ctx.child(ctx.prefix, ctx.source)
    outs, _ = _interpret(
      body.jaxpr, body.consts, [*consts, *carry, *x], sub, made_by
    )
    meta[:] = [r.meta() for r in sub.records]
    return outs[:nk], (outs[nk:], [r.stats for r in sub.records])

  with _name_context(eqn):
    carry, (ys, stats) = lax.scan(
      step,
      list(init),
      list(xs),
      length=p['length'],
      reverse=p['reverse'],
      unroll=p['unroll'],
    )
  ctx.records.extend(_Record(*m, s) for m, s in zip(meta, stats, strict=True))
  return [*carry, *ys], None


def _run_checkpoint(eqn, invals, made_by, ctx):
  """jax.checkpoint: the stats leave the rematerialised body as outputs."""
  p = eqn.params
  meta: list = []

  def body(*args):
    sub = ctx.child(ctx.prefix, ctx.source)
    outs, _ = _interpret(p['jaxpr'], (), args, sub, made_by)
    meta[:] = [r.meta() for r in sub.records]
    return outs, [r.stats for r in sub.records]

  with _name_context(eqn):
    outs, stats = jax.checkpoint(
      body, prevent_cse=p['prevent_cse'], policy=p['policy']
    )(*invals)
  ctx.records.extend(_Record(*m, s) for m, s in zip(meta, stats, strict=True))
  return outs, None


def _run_cond(eqn, invals, made_by, ctx):
  """cond/switch: every branch's sites are reported; only the branch taken
  adds counts (the others report examples == 0)."""
  branches = eqn.params['branches']
  index, ops = invals[0], invals[1:]
  metas: list = [[] for _ in branches]

  def branch(i):
    def run(*ops):
      sub = ctx.child(ctx.prefix, ctx.source)
      closed = branches[i]
      outs, _ = _interpret(closed.jaxpr, closed.consts, ops, sub, made_by[1:])
      metas[i] = [r.meta() for r in sub.records]
      return outs, [r.stats for r in sub.records]

    return run

  shapes = [
    jax.eval_shape(branch(i), *_avals_as_structs(b.in_avals))[1]
    for i, b in enumerate(branches)
  ]

  def full(i):
    def run(*ops):
      outs, stats = branch(i)(*ops)
      return outs, [
        stats if j == i else _zeros_like_stats(shapes[j])
        for j in range(len(branches))
      ]

    return run

  with _name_context(eqn):
    outs, stats = lax.switch(
      index, [full(i) for i in range(len(branches))], *ops
    )
  for meta, branch_stats in zip(metas, stats, strict=True):
    ctx.records.extend(
      _Record(*m, s) for m, s in zip(meta, branch_stats, strict=True)
    )
  return outs, None


def _run_while(eqn, invals, made_by, ctx):
  """while_loop: counts are summed over iterations (no iteration axis).

  The condition's sites come first; it runs once more than the body, on
  the same values as in the original loop.
  """
  p = eqn.params
  cn, bn = p['cond_nconsts'], p['body_nconsts']
  cond, body = p['cond_jaxpr'], p['body_jaxpr']
  cconsts, bconsts, init = invals[:cn], invals[cn : cn + bn], invals[cn + bn :]
  cond_names = [*made_by[:cn], *made_by[cn + bn :]]
  cond_meta: list = []
  body_meta: list = []

  def run_cond(*carry):
    sub = ctx.child(ctx.prefix, ctx.source)
    outs, _ = _interpret(
      cond.jaxpr, cond.consts, [*cconsts, *carry], sub, cond_names
    )
    cond_meta[:] = [r.meta() for r in sub.records]
    return outs[0], [r.stats for r in sub.records]

  def run_body(*carry):
    sub = ctx.child(ctx.prefix, ctx.source)
    outs, _ = _interpret(
      body.jaxpr, body.consts, [*bconsts, *carry], sub, made_by[cn:]
    )
    body_meta[:] = [r.meta() for r in sub.records]
    return outs, [r.stats for r in sub.records]

  shapes = jax.eval_shape(run_body, *_avals_as_structs(body.in_avals[bn:]))[1]

  def body_fun(state):
    carry, _, body_stats, cond_stats = state
    carry, stats = run_body(*carry)
    pred, more = run_cond(*carry)
    return (
      carry,
      pred,
      jax.tree.map(jnp.add, body_stats, stats),
      jax.tree.map(jnp.add, cond_stats, more),
    )

  with _name_context(eqn):
    pred, cond_stats = run_cond(*init)
    outs, _, body_stats, cond_stats = lax.while_loop(
      lambda state: state[1],
      body_fun,
      (list(init), pred, _zeros_like_stats(shapes), cond_stats),
    )
  for meta, stats in ((cond_meta, cond_stats), (body_meta, body_stats)):
    ctx.records.extend(_Record(*m, s) for m, s in zip(meta, stats, strict=True))
  return outs, None


def _combine(r: _Record, here: frozenset, mesh: Any) -> _Record:
  """A site's counts in a shard_map body, combined over its mesh axes
  `here` into those of the whole array: concatenated over the axes that
  split its units, summed over the others its operands differ over, and
  taken once over the rest."""
  spmd = r.spmd or _Spmd(None, None, None)
  varies = here if spmd.varies is None else spmd.varies & here
  differs = here if spmd.differs is None else spmd.differs & here
  if spmd.units is None:
    if differs:
      warnings.warn(
        f'activation_stats: inside shard_map, which of the mesh axes '
        f'{sorted(differs)} split the units of the site {r.where!r} is not '
        'known; its counts are summed over them, which is wrong for those '
        'that split its units.',
        stacklevel=2,
      )
    gather: list = [()] * r.unit_ndim
  else:
    gather = [tuple(a for a in axes if a in here) for axes in spmd.units]
  split = {a for g in gather for a in g}
  once = tuple(sorted(varies - differs - split))
  axes = tuple(sorted(varies | differs | split))
  spmd = _Spmd(
    spmd.units
    and tuple(tuple(a for a in g if a not in here) for g in spmd.units),
    spmd.varies and spmd.varies - here,
    spmd.differs and spmd.differs - here,
  )
  if not axes:
    return r._replace(spmd=spmd)
  # A psum adds what each device holds: a zero varying over every axis
  # makes a value typed invariant over some count once per device, and a
  # mask keeps one device's copy of a value that is the same on all.
  varying_zero = lax.axis_index(axes) * 0
  first = lax.axis_index(once) == 0 if once else True

  def combine(leaf):
    lead = leaf.ndim - r.unit_ndim
    for k, g in enumerate(gather):
      if g:
        axis, size = lead + k, leaf.shape[lead + k]
        n = math.prod(mesh.shape[a] for a in g)
        shape = (*leaf.shape[:axis], size * n, *leaf.shape[axis + 1 :])
        leaf = lax.dynamic_update_slice_in_dim(
          jnp.zeros(shape, leaf.dtype), leaf, lax.axis_index(g) * size, axis
        )
    return jnp.where(first, leaf, 0) + varying_zero.astype(leaf.dtype)

  stats = lax.psum(tuple(map(combine, r.stats)), axes)
  return r._replace(spmd=spmd, stats=tuple(stats))


def _run_shard_map(eqn, invals, made_by, ctx):
  """shard_map (and pmap): the body runs in a shard_map of the same mesh
  and specs, each site's counts combined over the devices (`_combine`)."""
  p = eqn.params
  jaxpr = p['jaxpr']
  here = frozenset(p['newly_manual_axes'])
  outer = [
    None
    if ctx.layouts is None or isinstance(v, jcore.Literal)
    else ctx.layouts.get(v)
    for v in eqn.invars
  ]
  layouts: dict = {}
  _layout_jaxpr(jaxpr, _body_layouts(eqn, outer), layouts)
  meta: list = []
  out_made_by: list = []

  def body(*args):
    sub = ctx.child(ctx.prefix, ctx.source)
    sub.layouts = layouts
    vals, names = _interpret(jaxpr, (), args, sub, made_by)
    records = [_combine(r, here, p['mesh']) for r in sub.records]
    meta[:] = [r.meta() for r in records]
    out_made_by[:] = names
    return tuple(vals), [r.stats for r in records]

  mapped = jax.shard_map(
    body,
    mesh=p['mesh'],
    in_specs=tuple(p['in_specs']),
    out_specs=(tuple(p['out_specs']), jax.sharding.PartitionSpec()),
    axis_names=here,
    check_vma=p['check_vma'],
  )
  with _name_context(eqn):
    vals, stats = mapped(*invals)
  ctx.records.extend(_Record(*m, s) for m, s in zip(meta, stats, strict=True))
  return list(vals), out_made_by


_HANDLERS: dict[Any, Callable] = {
  prims.jit_p: _run_jit,
  prims.custom_jvp_call_p: _run_custom,
  prims.custom_vjp_call_p: _run_custom,
  prims.scan_p: _run_scan,
  prims.remat_p: _run_checkpoint,
  prims.cond_p: _run_cond,
  prims.while_p: _run_while,
}


# ----------------------------------------------------------------------------
# Public functions.


def _check_unit_axis(unit_axis: Any) -> tuple[int, ...] | int:
  def is_int(a):
    return isinstance(a, int | np.integer) and not isinstance(a, bool)

  if is_int(unit_axis):
    return int(unit_axis)
  if (
    isinstance(unit_axis, tuple | list)
    and unit_axis
    and all(is_int(a) for a in unit_axis)
  ):
    return tuple(int(a) for a in unit_axis)
  raise TypeError(
    'activation_stats: unit_axis must be an int or a non-empty tuple of '
    f'ints, got {unit_axis!r}.'
  )


def _arg_name(path: Sequence[Any]) -> str:
  """'args[0]', "kwargs['x']", ... for a path into (args, kwargs)."""
  head = 'args' if path[0].idx == 0 else 'kwargs'
  return head + jax.tree_util.keystr(tuple(path[1:]))


def _is_traced(path: Sequence[Any], leaf: Any) -> bool:
  """Array leaves are traced, others static; untraceable arrays raise."""
  if not isinstance(leaf, jax.Array | np.ndarray | np.generic):
    return False
  dtype = leaf.dtype
  if not any(
    jnp.issubdtype(dtype, kind)
    for kind in (jnp.number, jnp.bool_, jax.dtypes.extended)
  ):
    raise TypeError(
      f'activation_stats: {_arg_name(path)} is a NumPy array of dtype '
      f'{dtype}, which JAX cannot trace. Pass numeric arrays (they are '
      'traced), or a non-array value such as a string (passed to fn as is).'
    )
  return True


class _Static:
  """A static argument or output leaf, carried through a trace as is."""

  __slots__ = ('value',)

  def __init__(self, value: Any):
    self.value = value


jax.tree_util.register_pytree_node(
  _Static, lambda s: ((), s), lambda static, _: static
)


def _unwrap(tree: Any) -> Any:
  return jax.tree.map(
    lambda x: x.value if isinstance(x, _Static) else x,
    tree,
    is_leaf=lambda x: isinstance(x, _Static),
  )


def _report(records: Sequence[_Record]) -> Report:
  report: Report = collections.OrderedDict()
  seen: dict[str, int] = {}
  for r in records:
    seen[r.where] = seen.get(r.where, 0) + 1
    name = r.where if seen[r.where] == 1 else f'{r.where}#{seen[r.where]}'
    while name in report:  # a site literally named 'x#2' and a second 'x'
      seen[r.where] += 1
      name = f'{r.where}#{seen[r.where]}'
    report[name] = UnitStats(*r.stats, r.kind, r.source, r.unit_ndim)
  return report


def activation_stats(
  fn: Callable[..., Any],
  *,
  unit_axis: int | Sequence[int] = -1,
  rectifiers: Sequence[Callable] = (),
) -> Callable[..., tuple[Any, Report]]:
  r"""Transforms `fn` to also return unit statistics for every rectifier.

  ``activation_stats(fn)(*args, **kwargs)`` returns ``(fn(*args,
  **kwargs), report)``. The model is not changed: `fn` is traced to a jaxpr
  and evaluated equation by equation inside a `jax.jit`, so the outputs and
  their gradients are `fn`'s; rectifier sites add a few reductions each.
  Call it inside your jitted step: there it adds only those reductions.
  Called outside jit, it compiles `fn` with the statistics on every call.
  Outputs are placed (sharded) as `fn`'s are when `fn` is called inside
  `jax.jit`, explicitly sharded inputs included.

  ``report`` is an ``OrderedDict`` from a readable site name to its
  `UnitStats`, in the order the sites run (kept through `jax.jit`). A
  name is the module path of the layer that produced the pre-activation
  (Flax linen and Equinox put module paths in `jax.named_scope`s, e.g.
  'MLP/Dense_0'), else the rectifier's own scope, else its source line in
  the user's code ('model.py:12'). A site applied again gets '#2', '#3',
  ...

  Recognised rectifiers: jaxrelu's `relu`, `relu6`, `leaky_relu`, `prelu`,
  `rrelu`, `elu`, `selu` and `celu`; `jax.nn`'s `relu`, `relu6`,
  `leaky_relu`, `elu`, `selu` and `celu` (also as `flax.linen.relu`, ...);
  and, written in the user's own code, ``jnp.maximum(z, 0)``,
  ``jnp.where(z > 0, z, 0)`` (or ``z >= 0``, ``0 < z``), ``z * (z > 0)``
  and ``jnp.clip(z, 0)`` (with or without a maximum). The same forms
  written in a library (LayerNorm's variance clamp) and rectifiers inside
  other functions of jax or jaxrelu (`jax.nn.hard_swish`) are not. When
  `fn` applies none, the report is empty and a `UserWarning` naming `fn`
  says so.

  `fn` may differentiate (a whole training step, ``jax.grad(loss)``): the
  forward application of each rectifier is its site, with the same counts
  as without differentiation, and the backward pass adds none. A rectifier
  applied in forward mode (``jax.jvp``, ``jax.jacfwd``) inside `fn` is a
  site too. One exception: for jaxrelu's `elu` or `celu` with an array
  ``alpha``, inside a differentiating `fn`, ``zero_grad`` is counted on the
  forward part JAX split off, which lacks jaxrelu's exact derivative (it is
  0 for x <= -18 in float32, as `jax.nn.elu`'s).

  A site inside `lax.scan` is one entry whose arrays have a leading axis of
  the scan's length (one row per iteration: per layer for a scan over
  layers). Inside `lax.while_loop` counts are summed over iterations, the
  condition's sites (evaluated once more than the body) listed first.
  Inside `lax.cond`/`lax.switch` every branch's sites are listed, in branch
  index order (`lax.cond`'s false branch first), and only the branch taken
  adds counts: the others have ``examples == 0`` and are neither dead nor
  dormant. Sites inside `jax.checkpoint` stay rematerialised. Inner
  `jax.jit`s are inlined, except those that place their inputs or outputs
  with ``in_shardings``/``out_shardings``, which keep those placements.
  Inside `jax.shard_map` and `jax.pmap` the counts of each device's shard
  are combined into those of the whole array: concatenated over the mesh
  axes that split the units, summed over the others the pre-activation
  varies over, counted once over those it is replicated on; where the
  splitting of the units cannot be followed through the body, they are
  summed and a `UserWarning` names the site.

  A `custom_jvp`/`custom_vjp` function that is not itself a recognised
  rectifier runs once as is, so its custom rule still applies to the
  outputs. If it applies rectifiers, the part of its body they need is
  evaluated a second time, gradient-free, for their statistics: a side
  effect (`jax.debug.print`, an `io_callback`) that a rectifier's input
  depends on runs twice; the others run once.

  Streaming: every count adds, so ``merge_unit_stats(total, report)`` inside
  a jitted step keeps an exact running total (start from
  `unit_stats_init`), and over a batch sharded across devices the counts
  are cross-device sums.

  Arguments: array leaves (`jax.Array`, NumPy arrays and scalars) of
  ``args`` and ``kwargs`` are traced; every other leaf (Python numbers,
  bools such as linen's ``train=True``, strings, modules' static fields) is
  passed to `fn` as is, as `equinox.filter_jit` does. A rectifier applied to
  a Python number is a 0-d site (one unit, seen once). Likewise outputs:
  array leaves come back as arrays, other leaves as `fn` returned them.
  `fn` should be functional: pass an nnx module (or its ``nnx.split``
  state) as an argument rather than closing over it, and return state
  updates (linen's ``mutable=[...]``) rather than making them in place.

  Args:
    fn: any JAX-traceable function: a linen ``model.apply``, an nnx module
      call, an Equinox model, plain jnp code, a training step.
    unit_axis: the pre-activation axis (or axes) that index units, default
      the last; every other axis is reduced over (batch, sequence, space).
      Channels-first convolutions use ``unit_axis=1``. A rectifier applied
      to a 0-d value is one unit seen once; one applied to an integer array
      is not a site (no gradient flows through it).
    rectifiers: your own rectifiers, each a `jax.jit`-compiled function of
      the pre-activation alone (hyperparameters fixed inside): wherever
      `fn` applies one, it is a site whose kind is the function's name,
      whatever its body (a function not declared here is counted only
      through the forms above it is written in).

  Returns:
    A function with `fn`'s arguments returning ``(outputs, report)``.

  Raises:
    TypeError: if unit_axis is not an int or a tuple of ints, or one of
      rectifiers is not a jitted function of one array; (when called)
      if an argument is a NumPy array JAX cannot trace (strings, objects);
      the message names it ('args[0]', "kwargs['x']").
    ValueError: (when called) if unit_axis is out of range for a site's
      pre-activation; the message names the site.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxrelu import diagnostics
    >>> def f(x, w):
    ...   with jax.named_scope('hidden'):
    ...     h = x @ w
    ...   return jax.nn.relu(h).sum()
    >>> x = jnp.array([[1.0, 2.0], [3.0, -1.0]])
    >>> w = jnp.array([[1.0, -1.0], [0.0, -1.0]])
    >>> out, report = jax.jit(diagnostics.activation_stats(f))(x, w)
    >>> out
    Array(4., dtype=float32)
    >>> list(report), report['hidden'].kind
    (['hidden'], 'relu')
    >>> report['hidden'].dead, report['hidden'].active_fraction
    (Array([False,  True], dtype=bool), Array([1., 0.], dtype=float32))
  """
  axis = _check_unit_axis(unit_axis)
  user = _user_kinds(rectifiers)

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    flat, treedef = jax.tree_util.tree_flatten_with_path((args, kwargs))
    leaves = [
      leaf if _is_traced(path, leaf) else _Static(leaf) for path, leaf in flat
    ]
    # Static leaves have no children: JAX names the traced ones by their
    # path in (args, kwargs), as 'args[0]', in its own errors too.
    args_in, kwargs_in = jax.tree.unflatten(treedef, leaves)
    returned: list = []

    def call(args, kwargs):
      args, kwargs = _unwrap((args, kwargs))
      out = fn(*args, **kwargs)
      out_leaves, out_tree = jax.tree.flatten(out)
      kept = [isinstance(leaf, jax.Array) for leaf in out_leaves]
      returned[:] = [out_tree, kept, out_leaves]
      return [leaf for leaf, k in zip(out_leaves, kept, strict=True) if k]

    def run(args, kwargs):
      closed = jax.make_jaxpr(call)(args, kwargs)
      ctx = _Ctx(axis)
      dynamic = jax.tree.leaves((args, kwargs))
      outs, _ = _interpret(closed.jaxpr, closed.consts, dynamic, ctx)
      return outs, _report(ctx.records)

    token = _USER_KINDS.set(user)
    try:
      outs, report = jax.jit(run)(args_in, kwargs_in)
    finally:
      _USER_KINDS.reset(token)
    if not report:
      name = getattr(fn, '__qualname__', None) or repr(fn)
      warnings.warn(
        f'activation_stats: no rectifier recognised in {name}, so the report '
        f'is empty. Recognised: {_RECOGNISED}.',
        UserWarning,
        stacklevel=2,
      )
    out_tree, kept, out_leaves = returned
    it = iter(outs)
    out = [
      next(it) if k else leaf for leaf, k in zip(out_leaves, kept, strict=True)
    ]
    return jax.tree.unflatten(out_tree, out), report

  return wrapped


def unit_stats_init(report_like: Mapping[str, Any]) -> Report:
  """A zero report shaped like another, for a running total.

  Args:
    report_like: a report, or its `jax.eval_shape` (ShapeDtypeStruct
      leaves), e.g. ``jax.eval_shape(activation_stats(fn), *args)[1]``.

  Returns:
    The same sites with every count 0.
  """
  return collections.OrderedDict(
    (name, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), stats))
    for name, stats in report_like.items()
  )


def merge_unit_stats(
  a: Mapping[str, UnitStats], b: Mapping[str, UnitStats]
) -> Report:
  """Adds two reports of the same sites (batches, steps or devices).

  Args:
    a: a report from `activation_stats` (or a running total).
    b: a report of the same function.

  Returns:
    The site-wise sum, exact for the counts.

  Raises:
    ValueError: if the two reports do not have the same sites.
  """
  if sorted(a) != sorted(b):
    raise ValueError(
      'merge_unit_stats: the reports have different sites: '
      f'{list(a)} and {list(b)}.'
    )
  out: Report = collections.OrderedDict()
  for name in a:
    sa, sb = a[name], b[name]
    if (sa.kind, sa.unit_ndim) != (sb.kind, sb.unit_ndim) or (
      jnp.shape(sa.active) != jnp.shape(sb.active)
    ):
      raise ValueError(
        f'merge_unit_stats: site {name!r} differs: a kind {sa.kind!r} with '
        f'units {jnp.shape(sa.active)}, b kind {sb.kind!r} with units '
        f'{jnp.shape(sb.active)}.'
      )
    out[name] = dataclasses.replace(
      sa,
      examples=sa.examples + sb.examples,
      active=sa.active + sb.active,
      nan=sa.nan + sb.nan,
      zero_grad=sa.zero_grad + sb.zero_grad,
      abs_sum=sa.abs_sum + sb.abs_sum,
    )
  return out
