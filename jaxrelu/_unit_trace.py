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
* a hand-written ``jnp.maximum(x, 0)`` or ``lax.max(x, 0.)`` on a floating x
  (kind ``'maximum'``) in the user's own code; the zero may be a literal or a
  broadcast zero such as ``jnp.zeros_like(x)``. A max with zero written in a
  library (the variance clamp of Flax's and Equinox's LayerNorm and
  BatchNorm, optax, ...) is not a rectifier and is not reported.

A named activation is recognised by its primal structure, not by its name
alone: its first operand is the floating pre-activation, its first output
has the same shape and dtype and depends on it nonlinearly, and it is not
part of a backward pass. So when `fn` differentiates (``jax.grad`` of a loss,
a whole training step), the forward part of each activation is a site and
the backward part JAX splits off under the same name is not.

The interpreter recurses into `jit` (inlining it, or keeping its boundary
when it places its inputs or outputs with shardings), `custom_jvp` and
`custom_vjp` functions, `lax.scan`, `lax.cond`/`lax.switch`,
`lax.while_loop` (body and condition) and `jax.checkpoint`. Functions
defined inside jax and jaxrelu themselves (`jax.nn.hard_swish`, `jnp.clip`,
`jax.nn.softplus`, ...) are opaque: a rectifier they use internally is not
reported. Other higher-order primitives (`shard_map`, `pmap`,
`custom_transpose`, ...) are bound unchanged and are opaque too.

The Markdown table and plot of a report live in `_unit_report.py`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib.util
import math
import os
import sysconfig
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

from jaxrelu import _activations

# ReDo's dormancy threshold: a unit is dormant when its mean |activation| is
# at most tau times the layer's mean (Sokar et al. 2023).
DORMANT_TAU = 0.1

# jax.nn's activations -> (number of operands: x and hyperparameters, the
# primal as jax.nn differentiates it). A Python-number hyperparameter may be
# inlined, leaving fewer operands.
_JAX_NN_KINDS = {
  'relu': (1, jax.nn.relu),
  'relu6': (1, jax.nn.relu6),
  'leaky_relu': (2, jax.nn.leaky_relu),
  'elu': (2, jax.nn.elu),
  'selu': (1, jax.nn.selu),
  'celu': (2, jax.nn.celu),
}
# jaxrelu's jitted cores (and their custom_jvp functions) -> (reported kind,
# number of operands, the primal with its custom rule).
_JAXRELU_KINDS = {
  '_relu': ('relu', 1, _activations._relu_float),
  '_relu6': ('relu6', 1, _activations._relu6_float),
  '_prelu': ('leaky_relu', 2, _activations._prelu_jit),
  '_leaky_relu_default': (
    'leaky_relu',
    1,
    _activations._leaky_relu_default_jit,
  ),
  '_rrelu_eval_default': (
    'leaky_relu',
    1,
    _activations._rrelu_eval_default_jit,
  ),
  '_rrelu_train': ('rrelu', 4, _activations._rrelu_train),
  '_elu': ('elu', 2, _activations._elu_jit),
  '_elu_default': ('elu', 1, _activations._elu_default_jit),
  '_selu': ('selu', 1, _activations._selu_jit),
  '_celu': ('celu', 2, _activations._celu_jit),
  '_celu_default': ('celu', 1, _activations._celu_default_jit),
}
# Outputs of these name the same units as their (first) input.
_PASSTHROUGH = frozenset(('convert_element_type', 'reshape', 'squeeze', 'copy'))
# Outputs of these are zero when their input is.
_KEEPS_ZERO = frozenset(('broadcast_in_dim', 'convert_element_type', 'reshape'))


def _package_dir(name: str) -> str:
  spec = importlib.util.find_spec(name)
  locations = (spec and spec.submodule_search_locations) or ()
  return os.path.join(next(iter(locations), ''), '') if locations else ''


_JAX_DIR = os.path.dirname(jax.__file__) + os.sep
_JAX_NN_DIR = os.path.join(os.path.dirname(jax.__file__), '_src', 'nn') + os.sep
_JAXRELU_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
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
      hand-written `jnp.maximum(x, 0)` for x < 0, as JAX takes 1/2 at 0).
    abs_sum: sum of |activation| (the site's output), in float32.
    kind: the rectifier: 'relu', 'relu6', 'leaky_relu', 'rrelu', 'elu',
      'selu', 'celu' or 'maximum' (a hand-written max with 0).
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


def _is_library(info: tuple[str, str] | None) -> bool:
  """Functions of jax and jaxrelu themselves are opaque."""
  return info is not None and info[1].startswith((_JAX_DIR, _JAXRELU_DIR))


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


def _recognise(
  eqn: Any, zeros: set, transposed: bool, cache: dict
) -> _Site | None:
  """The site of a rectifier equation, or None."""
  prim = eqn.primitive
  if prim is prims.max_p:
    a, b = eqn.invars
    if _is_zero(b, zeros) and _is_float(a) and not _is_zero(a, zeros):
      site = _Site('maximum', 0)
    elif _is_zero(a, zeros) and _is_float(b):
      site = _Site('maximum', 1)
    else:
      return None
    return site if _written_by_user(eqn) else None
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
  if path.startswith(_JAX_NN_DIR) and name in _JAX_NN_KINDS:
    kind, (arity, primal) = name, _JAX_NN_KINDS[name]
  elif path.startswith(_JAXRELU_DIR) and name in _JAXRELU_KINDS:
    kind, arity, primal = _JAXRELU_KINDS[name]
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


def _update_zeros(eqn: Any, zeros: set) -> None:
  if eqn.primitive.name in _KEEPS_ZERO and _is_zero(eqn.invars[0], zeros):
    zeros.add(eqn.outvars[0])


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
  if prim is prims.remat_p:
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
    zeros: set = set()
    sites, subs, flags = [], [], []
    for eqn in jaxpr.eqns:
      t = transposed or _is_transposed(eqn)
      site = _recognise(eqn, zeros, t, cache)
      sites.append(site)
      subs.append(
        site is None and any(_plan(s, t, cache).any for s in _sub_jaxprs(eqn))
      )
      flags.append(t)
      _update_zeros(eqn, zeros)
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
  stats: tuple[jax.Array, ...]  # examples, active, nan, zero_grad, abs_sum

  def meta(self) -> tuple:
    return self[:4]


@dataclasses.dataclass
class _Ctx:
  unit_axis: tuple[int, ...] | int
  prefix: tuple[str, ...] = ()
  source: str = ''
  transposed: bool = False
  records: list = dataclasses.field(default_factory=list)
  cache: dict = dataclasses.field(default_factory=dict)

  def child(
    self, prefix: tuple[str, ...], source: str, transposed: bool | None = None
  ) -> _Ctx:
    if transposed is None:
      transposed = self.transposed
    return _Ctx(self.unit_axis, prefix, source, transposed, [], self.cache)


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
      ctx.records.append(_Record(where, site.kind, source, len(axes), stats))
    elif plan.subs[i]:
      source = _user_source(eqn.source_info.traceback) or ctx.source
      sub = ctx.child(path, source, plan.transposed[i])
      handler = _HANDLERS[eqn.primitive]
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
  fn: Callable[..., Any], *, unit_axis: int | Sequence[int] = -1
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
  ... A function with no rectifier gives an empty report.

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

  Returns:
    A function with `fn`'s arguments returning ``(outputs, report)``.

  Raises:
    TypeError: if unit_axis is not an int or a tuple of ints; (when called)
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

    outs, report = jax.jit(run)(args_in, kwargs_in)
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
