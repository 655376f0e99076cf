r"""Recycling dead and dormant units (ReDo, Sokar et al. 2023).

A unit is recycled by redrawing its incoming weights, zeroing its bias and
zeroing its outgoing weights, so that the network computes the same function
right after the reset (exactly so for dead units, whose output was already
0) while the unit can learn again. The optimizer's per-parameter state is
reset for the changed kernel entries: moments (Adam's ``mu`` and ``nu``,
momentum, ...) to 0 (a bias's are kept unless asked), copies of the
parameters (schedule-free's ``z``) to the new values. The defaults are
those of the reference implementation (google/dopamine
``dopamine/labs/redo/weight_recyclers.py``).

``check_output`` verifies the claim on a model: a walk over the jaxpr of
the model's output finds structures that make it impossible (residual
connections, normalisation), and the output before and after is compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from jax.extend.core import primitives as prims
from jax.typing import ArrayLike

from jaxrelu import _unit_trace

PyTree = Any
Initializer = Callable[..., jax.Array]
Layout = Literal['in_out', 'out_in']
NamedInit = Literal['xavier_uniform', 'framework']

# (kernel, bias, layout) names: Flax and nnx, Haiku, Equinox and PyTorch.
_NAMED = (
  ('kernel', 'bias', 'in_out'),
  ('w', 'b', 'in_out'),
  ('weight', 'bias', 'out_in'),
)
_LAYOUTS = ('in_out', 'out_in')
_NAMED_INITS = ('xavier_uniform', 'framework')

# Optimizer-state entries shaped like a parameter, by the name of the state
# that holds them: moments are zeroed where units are recycled, parameter
# copies set to the new parameters, others kept.
_STATE_ROLES = {
  # optax: adam/adamw/lamb/adabelief/yogi/lion/amsgrad, sgd momentum,
  # rmsprop, adagrad, adan, ema of updates, MultiSteps' accumulator.
  'mu': 'moment',
  'nu': 'moment',
  'nu_max': 'moment',
  'trace': 'moment',
  'momentum': 'moment',
  'sum_of_squares': 'moment',
  'm': 'moment',
  'v': 'moment',
  'n': 'moment',
  'ema': 'moment',
  'acc_grads': 'moment',
  'exp_avg': 'moment',
  'exp_avg_sq': 'moment',
  # Copies of the parameters: schedule-free's z, EMA / slow weights.
  'z': 'param',
  'params': 'param',
  'ema_params': 'param',
  'params_ema': 'param',
  'slow': 'param',
}
_ROLES = ('moment', 'param', 'keep')


def _key_str(entry: Any) -> str | None:
  """One path entry as a string; None for an nnx Variable's '.value'."""
  if isinstance(entry, jax.tree_util.DictKey):
    return str(entry.key)
  if isinstance(entry, jax.tree_util.SequenceKey):
    return str(entry.idx)
  if isinstance(entry, jax.tree_util.GetAttrKey):
    return None if entry.name == 'value' else entry.name
  if isinstance(entry, jax.tree_util.FlattenedIndexKey):
    return str(entry.key)
  return str(entry)


def _path(path: Sequence[Any]) -> tuple[str, ...]:
  return tuple(s for s in map(_key_str, path) if s is not None)


class _Layer:
  """Where one layer's kernel (and bias) sit, and how units are laid out.

  With layout 'in_out' a kernel is (..., fan_in, units): units on the last
  axis, inputs on the one before. With 'out_in' it is (units, fan_in, ...).
  """

  def __init__(
    self,
    name: str,
    index: dict,
    leaves: list,
    layout: Layout | None,
  ):
    base = tuple(p for p in name.split('/') if p)
    candidates: list[tuple[tuple, tuple | None, str | None]] = [
      ((*base, k), (*base, b), hint) for k, b, hint in _NAMED
    ]
    candidates += [((*base, '0'), (*base, '1'), None), (base, None, None)]
    # A name that ends at a named kernel ('layers/0/weight'): its layer.
    for k, b, hint in _NAMED:
      if base[-1:] == (k,):
        candidates.insert(0, (base, (*base[:-1], b), hint))
    found = next((c for c in candidates if c[0] in index), None)
    if found is None:
      layers = sorted({'/'.join(p[:-1]) for p in index if len(p) > 1})
      raise ValueError(
        f'recycle_units: pairs names layer {name!r}, which is not in '
        f'params: expected a kernel at {name}/kernel, {name}/w, '
        f'{name}/weight, {name}/0 or {name} itself. Layers found: {layers}.'
      )
    kernel, bias, hint = found
    self.kernel = index[kernel]
    self.bias = index.get(bias) if bias is not None else None
    self.name = name
    self.layout = layout or hint
    if self.layout is None:
      raise ValueError(
        f'recycle_units: the layout of params[{name!r}] (a bare weight '
        'array or a (weight, bias) pair) is ambiguous: pass '
        "layout='in_out' for (..., fan_in, fan_out) kernels (Flax, Haiku, "
        "stax) or layout='out_in' for (fan_out, fan_in, ...) weights "
        '(Equinox, PyTorch).'
      )
    k = leaves[self.kernel]
    if not jnp.issubdtype(jnp.result_type(k), jnp.floating) or jnp.ndim(k) < 2:
      raise TypeError(
        f'recycle_units: params[{name!r}] needs a floating kernel of at '
        f'least 2 axes, got {jnp.result_type(k)} of shape {jnp.shape(k)}.'
      )
    shape = jnp.shape(k)
    if self.layout == 'in_out':
      self.units, self.fan_in = shape[-1], shape[-2]
    else:
      self.units, self.fan_in = shape[0], shape[1]
    if self.bias is not None:
      b = leaves[self.bias]
      if jnp.shape(b) != (self.units,):
        stacked = jnp.ndim(b) > 1 and jnp.shape(b)[-1] == self.units
        raise ValueError(
          f'recycle_units: params[{name!r}] bias has shape {jnp.shape(b)}, '
          f'but its kernel has {self.units} units: expected ({self.units},).'
          + (
            ' It looks like a stack of layers (nn.scan, nnx.vmap): '
            'recycle_units takes one layer per name and does not support '
            'stacked layers.'
            if stacked
            else ''
          )
        )
      if not jnp.issubdtype(jnp.result_type(b), jnp.floating):
        raise TypeError(
          f'recycle_units: params[{name!r}] bias must be floating, '
          f'got {jnp.result_type(b)}.'
        )


def _check_key(key: Any) -> None:
  ok = isinstance(key, jax.Array) and (
    jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    or (key.dtype == jnp.uint32 and key.shape == (2,))
  )
  if not ok:
    raise TypeError(
      'recycle_units: key must be a PRNG key (jax.random.key(...)), got '
      f'{type(key).__name__} {getattr(key, "dtype", "")}'
      f'{tuple(getattr(key, "shape", ()))}.'
    )


def _check_mask(name: str, mask: Any, units: int) -> jax.Array:
  try:
    mask = jnp.asarray(mask)
  except (TypeError, ValueError) as e:
    raise TypeError(
      f'recycle_units: masks[{name!r}] must be a bool array (True = '
      f'recycle), got {type(mask).__name__}: {e}'
    ) from None
  if mask.dtype != jnp.bool_:
    raise TypeError(
      f'recycle_units: masks[{name!r}] must be a bool array (True = '
      f'recycle), got dtype {mask.dtype}.'
    )
  if mask.shape != (units,):
    raise ValueError(
      f'recycle_units: masks[{name!r}] has shape {mask.shape}, but layer '
      f'{name!r} has {units} units: expected ({units},). Stacked layers '
      '(one mask row per layer of an nn.scan) are not supported.'
    )
  return mask


class _Norm:
  """A per-unit normalisation layer's scale (or 1-d weight) and bias."""

  def __init__(self, name: str, layer: _Layer, index: dict, leaves: list):
    base = tuple(p for p in name.split('/') if p)
    self.name = name
    self.scale = index.get((*base, 'scale'), index.get((*base, 'weight')))
    self.bias = index.get((*base, 'bias'))
    if self.scale is None and self.bias is None:
      raise ValueError(
        f'recycle_units: norms[{layer.name!r}] = {name!r} has no scale, '
        f'weight or bias in params: expected {name}/scale (Flax) or '
        f'{name}/weight (Equinox) and {name}/bias.'
      )
    for i in (self.scale, self.bias):
      if i is not None and jnp.shape(leaves[i]) != (layer.units,):
        raise ValueError(
          f'recycle_units: norms[{layer.name!r}] = {name!r} has a '
          f'parameter of shape {jnp.shape(leaves[i])}, but {layer.name!r} '
          f'has {layer.units} units: expected ({layer.units},), a '
          'per-unit normalisation (BatchNorm) right after the layer.'
        )

  @property
  def leaves(self) -> tuple[int, ...]:
    return tuple(i for i in (self.scale, self.bias) if i is not None)


class _Entry(NamedTuple):
  """One masked layer: its position (for its PRNG key), its layer, the
  layers it feeds, its mask and its normalisation layer, if any."""

  n: int
  src: _Layer
  dsts: list[_Layer]
  mask: jax.Array
  norm: _Norm | None


def recycle_units(
  params: PyTree,
  masks: Mapping[str, ArrayLike],
  key: jax.Array,
  *,
  pairs: Mapping[str, str | Sequence[str]],
  opt_state: PyTree = None,
  kernel_init: Initializer
  | NamedInit
  | Mapping[str, Initializer | NamedInit] = 'xavier_uniform',
  bias_init: Initializer | None = None,
  reset_bias_moments: bool = False,
  norms: Mapping[str, str] | None = None,
  layout: Layout | None = None,
  state_roles: Mapping[str, str] | None = None,
  check_output: Callable[[PyTree], PyTree] | None = None,
  check_tol: float = 1e-6,
) -> tuple[PyTree, PyTree]:
  r"""Re-initialises masked units (ReDo) and resets their optimizer state.

  For every unit i of a layer L with ``masks[L][i]`` True:

  * its incoming weights are drawn afresh from ``kernel_init`` and its
    bias from ``bias_init`` (zeros by default);
  * its outgoing weights (its fan-in slice of the kernel of each layer in
    ``pairs[L]``) are set to 0, so the network's output is unchanged at
    this step when the unit was dead (its output was already 0); a dormant
    unit's small contribution is removed;
  * where ``norms[L]`` names a per-unit normalisation layer between L and
    ``pairs[L]`` (a BatchNorm), its scale and bias for the unit are reset to
    1 and 0 (BatchNorm's init), so that they do not hold the revived unit
    dead; its running statistics (``batch_stats``) are not parameters and
    are left alone (the output is unchanged whatever they hold);
  * optimizer-state entries shaped like one of those parameters are reset
    at the same entries, by the role of the state that holds them: moments
    (``mu``, ``nu``, ``trace``, ``momentum``, ``sum_of_squares``, ``ema``,
    ``acc_grads``, ...) to 0 for the incoming and outgoing kernels, and for
    the bias and normalisation parameters only with
    ``reset_bias_moments=True``; copies of the parameters (schedule-free's
    ``z``, ``params``, ``ema_params``, ``slow``) to the new parameters,
    biases included. Leaves of other shapes (``count``, factored moments)
    are left alone.

  The defaults follow the reference implementation, ``NeuronRecycler`` in
  google/dopamine ``dopamine/labs/redo/weight_recyclers.py``: its
  ``weight_reinit_random`` redraws incoming kernels from
  ``xavier_uniform()`` whatever initializer the network used,
  ``create_masks`` zeroes the bias, ``weight_reinit_zero`` the outgoing
  kernel, and ``reset_momentum`` zeroes Adam's ``mu`` and ``nu`` for the
  incoming and outgoing kernels only (1-d parameters get no mask there, so
  bias moments are kept), keeping ``count``. ``kernel_init='framework'``
  with ``reset_bias_moments=True`` is this function's earlier behaviour:
  the framework's default initializer, and bias moments zeroed too.

  Supported structures: stacks of Dense/Linear or Conv layers in which each
  masked layer's units reach the output only through the layers in
  ``pairs`` (after elementwise activations, dropout or pooling), possibly
  through a per-unit normalisation named in ``norms``. Not supported, as no
  choice of outgoing weights then keeps the output: a residual connection
  that reads the units (recycle the layers inside a block, whose units feed
  only the block's next layer, as the reference does for its ResNet),
  normalisation across units (LayerNorm, GroupNorm), a layer whose units
  feed a layer not named in ``pairs``, a Conv flattened into a Dense (the
  pair does not chain). ``check_output`` finds these.

  With ``check_output=fn``, where ``fn(params)`` is the model's output on
  a batch (``lambda p: model.apply({'params': p}, x)``), recycle_units
  first traces ``fn`` to a jaxpr and follows each masked layer's units
  through it; a ValueError names each layer whose units reach the output
  or another layer other than through ``pairs``, are mixed by a reduction
  over units, or are shifted by per-unit parameters (a BatchNorm's bias)
  not named in ``norms``. The walk does not enter ``lax.scan``, ``cond``
  or ``while_loop`` bodies; the comparison covers them. It then evaluates
  ``fn`` before and after, and a ValueError names the layers whose revival
  changed the output, with the change, when the largest change exceeds
  ``check_tol * max(1, max|output|)``. The output is unchanged only where
  the masked units are dead on that batch: recycling dormant units removes
  their contribution by design. The check compares values on the host, so
  it needs concrete arguments: call recycle_units outside `jax.jit` (``fn``
  itself may be jitted).

  Everything else, live units' weights and optimizer state included, is
  returned unchanged. Without ``check_output`` the function is pure and
  jittable (the masks may be traced; nothing branches on their values), so
  a jitted training step can call it every K steps, or every step with
  ``mask & (step % K == 0)``.

  Layers are named by their '/'-separated path in ``params``: a node with
  ``kernel``/``bias`` entries (Flax linen params, nnx ``State``), ``w``/``b``
  entries (Haiku), ``weight``/``bias`` entries (Equinox, as in
  ``eqx.filter(model, eqx.is_array)``: ``'layers/0'``), a ``(weight,
  bias)`` pair, or the weight array itself. One name is one layer: layers
  stacked along a leading axis (``nn.scan``, ``nnx.vmap``) are not
  supported; a stacked bias, or a mask of more than one axis, is an error.

  Layouts: ``'in_out'`` kernels are (..., fan_in, units), as Flax and Haiku
  Dense and Conv (channels on the last two axes): units are the last axis
  of the incoming kernel and the second-to-last of the outgoing one.
  ``'out_in'`` weights are (units, fan_in, ...), as Equinox and PyTorch
  Linear and Conv: units are the first axis of the incoming weight and the
  second of the outgoing one. By default the layout follows the names
  (``kernel`` and ``w``: in_out; ``weight``: out_in); a bare array or a
  pair needs ``layout``, which, when given, applies to every layer.

  Args:
    params: the parameters: linen ``params`` dict, ``nnx.state(model,
      nnx.Param)``, Equinox ``eqx.filter(model, eqx.is_array)``, or any
      pytree of arrays.
    masks: incoming layer name -> bool array of shape (units,) (or a list
      of bools), True for the units to recycle (e.g. ``report[site].dead``
      or ``.dormant()`` from `activation_stats`). Every key must be a key
      of ``pairs``.
    key: a PRNG key for the new weights.
    pairs: incoming layer name -> the layer (or layers) its units feed.
    opt_state: optax state for ``params`` (or an nnx optimizer's state),
      or None.
    kernel_init: ``'xavier_uniform'`` (default, the reference's:
      ``xavier_uniform()`` on in_out kernels, the same with ``in_axis=1,
      out_axis=0`` on out_in weights); ``'framework'``, the framework's
      default: ``lecun_normal()`` for in_out kernels (Flax Dense's and
      Conv's, nnx Linear's), Equinox's and PyTorch's uniform on
      +-1/sqrt(fan_in) for out_in weights (``variance_scaling(1/3,
      'fan_in', 'uniform', in_axis=1, out_axis=0)``); a
      `jax.nn.initializers` initializer; or a mapping from layer name to
      one of these (layers it does not name get the default). An out_in
      initializer must take its fan-in from axis 1.
    bias_init: default zeros (the reference's).
    reset_bias_moments: default False (the reference's): the moments of
      the recycled units' biases and normalisation parameters are kept;
      True zeroes them as the kernels'.
    norms: incoming layer name -> the per-unit normalisation layer (Flax
      or Equinox BatchNorm) between it and ``pairs[name]``, whose ``scale``
      (or ``weight``) and ``bias`` for recycled units are reset to 1 and 0.
      Every key must be a key of ``pairs``.
    layout: ``'in_out'``, ``'out_in'``, or None to follow the names.
    state_roles: optimizer-state names -> ``'moment'`` (zeroed),
      ``'param'`` (set to the new parameters) or ``'keep'``, added to the
      defaults above. An entry is given the role of the innermost name on
      its path that has one.
    check_output: None (default), or a function of ``params`` returning
      the model's output (any pytree of arrays) on a batch: check that the
      revival leaves it unchanged, as described above.
    check_tol: the largest output change ``check_output`` allows, relative
      to max(1, max|output|).

  Returns:
    ``(params, opt_state)`` with the same structures (``opt_state`` stays
    None when it was None).

  Raises:
    ValueError: a layer name not found in ``params``, a layer whose layout
      is ambiguous, a mask or norms key that is not a key of ``pairs``, a
      mask (or bias, or normalisation parameter) of the wrong shape, a pair
      whose kernels do not chain (incoming units != outgoing fan_in), a bad
      ``kernel_init`` name, ``layout`` or ``state_roles``, an
      optimizer-state entry of a changed parameter whose role is unknown,
      traced arguments with ``check_output``, or a failed check (a
      structure that cannot keep the output, or a changed output); messages
      name the argument or the layer.
    TypeError: ``pairs`` not a mapping, a non-bool mask, a non-floating or
      1-d kernel, a non-floating bias, or a key that is not a PRNG key.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxrelu import diagnostics
    >>> b1 = jnp.array([1.0, -2.0, 1.0])
    >>> params = {'l1': {'kernel': jnp.ones((2, 3)), 'bias': b1},
    ...           'l2': {'kernel': jnp.ones((3, 1)), 'bias': jnp.zeros(1)}}
    >>> x = jnp.eye(2)  # a batch on which unit 1 of l1 is dead
    >>> def apply(p):
    ...   h = jax.nn.relu(x @ p['l1']['kernel'] + p['l1']['bias'])
    ...   return h @ p['l2']['kernel'] + p['l2']['bias']
    >>> new, _ = diagnostics.recycle_units(
    ...     params, {'l1': jnp.array([False, True, False])}, jax.random.key(0),
    ...     pairs={'l1': 'l2'}, check_output=apply)
    >>> new['l1']['bias'], new['l2']['kernel'][:, 0]
    (Array([1., 0., 1.], dtype=float32), Array([1., 0., 1.], dtype=float32))

  References:
    Sokar, Agarwal, Castro & Evci, The Dormant Neuron Phenomenon in Deep
    Reinforcement Learning, ICML 2023; their code: google/dopamine,
    ``dopamine/labs/redo/weight_recyclers.py``.
  """
  _check_key(key)
  if not isinstance(pairs, Mapping):
    raise TypeError(
      'recycle_units: pairs must be a mapping from incoming layer name to '
      f'outgoing layer name(s), got {type(pairs).__name__}.'
    )
  if layout not in (None, *_LAYOUTS):
    raise ValueError(
      f"recycle_units: layout must be 'in_out', 'out_in' or None, got "
      f'{layout!r}.'
    )
  inits = kernel_init.values() if isinstance(kernel_init, Mapping) else ()
  for init in (kernel_init, *inits):
    if isinstance(init, str) and init not in _NAMED_INITS:
      raise ValueError(
        f'recycle_units: kernel_init must be an initializer or one of '
        f'{_NAMED_INITS}, got {init!r}.'
      )
  roles = dict(_STATE_ROLES)
  for name, role in (state_roles or {}).items():
    if role not in _ROLES:
      raise ValueError(
        f'recycle_units: state_roles[{name!r}] must be one of {_ROLES}, '
        f'got {role!r}.'
      )
    roles[name] = role
  norms = dict(norms or {})
  for arg, names in (('masks', masks), ('norms', norms)):
    unknown = [name for name in names if name not in pairs]
    if unknown:
      raise ValueError(
        f'recycle_units: {arg} has layers {unknown} that are not keys of '
        f'pairs ({list(pairs)}); each needs its outgoing layer named.'
      )
  if bias_init is None:
    bias_init = jax.nn.initializers.zeros

  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  paths = [_path(p) for p, _ in flat]
  leaves = [leaf for _, leaf in flat]
  index = {p: i for i, p in reversed(list(enumerate(paths)))}

  layers: dict[str, _Layer] = {}

  def layer(name: str) -> _Layer:
    if name not in layers:
      layers[name] = _Layer(name, index, leaves, layout)
    return layers[name]

  # Validate everything before computing anything.
  plan = []
  for name, outgoing in pairs.items():
    src = layer(name)
    outs = [outgoing] if isinstance(outgoing, str) else list(outgoing)
    dsts = [layer(o) for o in outs]
    for dst in dsts:
      if dst.fan_in != src.units:
        raise ValueError(
          f'recycle_units: pairs[{name!r}] = {dst.name!r} does not chain: '
          f'{name!r} has {src.units} units ({src.layout} kernel '
          f'{jnp.shape(leaves[src.kernel])}) but {dst.name!r} takes '
          f'{dst.fan_in} inputs ({dst.layout} kernel '
          f'{jnp.shape(leaves[dst.kernel])}).'
        )
    norm = _Norm(norms[name], src, index, leaves) if name in norms else None
    if name in masks:
      mask = _check_mask(name, masks[name], src.units)
      plan.append(_Entry(len(plan), src, dsts, mask, norm))

  steps = tuple(_step(e, kernel_init) for e in plan)
  changed = {i for step in steps for i in step.changed}
  moments = {i for step in steps for i in step.moments(reset_bias_moments)}
  if opt_state is not None:
    state_leaves, state_def = jax.tree_util.tree_flatten_with_path(opt_state)
    actions = _state_actions(
      state_leaves, paths, leaves, changed, moments, roles
    )
    state = {s: state_leaves[s][1] for s, _, _ in actions}

  def recycle(
    chosen: Sequence[int], actions: tuple = (), state: Mapping | None = None
  ) -> tuple[list[Any], dict[int, jax.Array]]:
    if not chosen and not actions:
      return list(leaves), {}
    spec = _Spec(
      tuple(steps[j] for j in chosen), bias_init, reset_bias_moments, actions
    )
    needed = {i for j in chosen for i in steps[j].changed}
    new_leaves, new_state = _recycle(
      spec,
      {i: leaves[i] for i in needed},
      tuple(plan[j].mask for j in chosen),
      key,
      dict(state or {}),
    )
    out = list(leaves)
    for i, leaf in new_leaves.items():
      out[i] = leaf
    return out, new_state

  before = None
  if check_output is not None:
    _check_concrete(leaves, [e.mask for e in plan])
    _check_structure(check_output, params, paths, plan)
    before = check_output(params)
  everything = range(len(plan))
  if opt_state is None:
    new, _ = recycle(everything)
  else:
    new, new_state = recycle(everything, actions, state)
  params_out = jax.tree_util.tree_unflatten(treedef, new)
  if check_output is not None:
    _check_change(
      check_output,
      before,
      params_out,
      check_tol,
      {
        e.src.name: lambda j=j: jax.tree_util.tree_unflatten(
          treedef, recycle([j])[0]
        )
        for j, e in enumerate(plan)
      },
    )
  if opt_state is None:
    return params_out, None
  out_state = [leaf for _, leaf in state_leaves]
  for s, leaf in new_state.items():
    out_state[s] = leaf
  return params_out, jax.tree_util.tree_unflatten(state_def, out_state)


# The named kernel initializers.
_INITS = {
  ('xavier_uniform', 'in_out'): jax.nn.initializers.xavier_uniform(),
  ('xavier_uniform', 'out_in'): jax.nn.initializers.xavier_uniform(
    in_axis=1, out_axis=0
  ),
  ('framework', 'in_out'): jax.nn.initializers.lecun_normal(),
  ('framework', 'out_in'): jax.nn.initializers.variance_scaling(
    1 / 3, 'fan_in', 'uniform', in_axis=1, out_axis=0
  ),
}


class _Step(NamedTuple):
  """One masked layer as the recycling sees it: leaf indices, layouts and
  its initializer."""

  n: int
  kernel: int
  bias: int | None
  layout: str
  init: Initializer
  dsts: tuple[tuple[int, str], ...]
  norm: tuple[int | None, int | None]

  @property
  def changed(self) -> tuple[int, ...]:
    leaves = (self.kernel, self.bias, *self.norm, *(k for k, _ in self.dsts))
    return tuple(i for i in leaves if i is not None)

  def moments(self, reset_bias_moments: bool) -> tuple[int, ...]:
    """The leaves whose optimizer moments are reset."""
    if reset_bias_moments:
      return self.changed
    return (self.kernel, *(k for k, _ in self.dsts))


class _Spec(NamedTuple):
  """The static part of one recycling, with the optimizer-state leaves to
  reset: (state leaf, role, parameter leaf)."""

  steps: tuple[_Step, ...]
  bias_init: Initializer
  reset_bias_moments: bool
  actions: tuple[tuple[int, str, int], ...]


def _step(entry: _Entry, kernel_init: Any) -> _Step:
  src, norm = entry.src, entry.norm
  init = kernel_init
  if isinstance(kernel_init, Mapping):
    init = kernel_init.get(src.name, 'xavier_uniform')
  if isinstance(init, str):
    init = _INITS[init, src.layout]
  return _Step(
    entry.n,
    src.kernel,
    src.bias,
    src.layout,
    init,
    tuple((d.kernel, d.layout) for d in entry.dsts),
    (norm.scale, norm.bias) if norm else (None, None),
  )


def _incoming(layout: str, mask: jax.Array, ndim: int) -> jax.Array:
  """The mask broadcastable over a kernel's incoming weights."""
  if layout == 'in_out':
    return mask
  return mask.reshape((-1,) + (1,) * (ndim - 1))


def _outgoing(layout: str, mask: jax.Array, ndim: int) -> jax.Array:
  """The mask broadcastable over a kernel's fan_in axis."""
  if layout == 'in_out':
    return mask[:, None]
  return mask.reshape((1, -1) + (1,) * (ndim - 2))


def _recycle(
  spec: _Spec,
  params: dict[int, jax.Array],
  masks: tuple[jax.Array, ...],
  key: jax.Array,
  state: dict[int, jax.Array],
) -> tuple[dict[int, jax.Array], dict[int, jax.Array]]:
  """The new parameters and optimizer-state leaves, by leaf index."""
  new = dict(params)
  changed: dict[int, jax.Array] = {}
  moments: dict[int, jax.Array] = {}
  reset_bias = spec.reset_bias_moments

  def touch(i: int, m: jax.Array, moment: bool = True) -> None:
    changed[i] = changed[i] | m if i in changed else m
    if moment:
      moments[i] = moments[i] | m if i in moments else m

  # Incoming weights and biases first, then outgoing weights: a weight that
  # is both (unit j of one layer feeding recycled unit i of the next) ends
  # at 0, so that neither changed unit alters the output at this step.
  for step, mask in zip(spec.steps, masks, strict=True):
    k_key, b_key = jax.random.split(jax.random.fold_in(key, step.n))
    kernel = new[step.kernel]
    shape = jnp.shape(kernel)
    cols = jnp.broadcast_to(_incoming(step.layout, mask, len(shape)), shape)
    fresh = step.init(k_key, shape, jnp.result_type(kernel))
    new[step.kernel] = jnp.where(cols, fresh, kernel)
    touch(step.kernel, cols)
    if step.bias is not None:
      bias = new[step.bias]
      fresh = spec.bias_init(b_key, jnp.shape(bias), jnp.result_type(bias))
      new[step.bias] = jnp.where(mask, fresh, bias)
      touch(step.bias, mask, reset_bias)
    for i, value in zip(step.norm, (1, 0), strict=True):
      if i is not None:
        value = jnp.asarray(value, jnp.result_type(new[i]))
        new[i] = jnp.where(mask, value, new[i])
        touch(i, mask, reset_bias)
  for step, mask in zip(spec.steps, masks, strict=True):
    for i, layout in step.dsts:
      kernel = new[i]
      shape = jnp.shape(kernel)
      rows = jnp.broadcast_to(_outgoing(layout, mask, len(shape)), shape)
      new[i] = jnp.where(rows, jnp.zeros((), kernel.dtype), kernel)
      touch(i, rows)
  new_state = {}
  for s, role, i in spec.actions:
    leaf = jnp.asarray(state[s])
    if role == 'moment':
      new_state[s] = jnp.where(moments[i], jnp.zeros((), leaf.dtype), leaf)
    else:
      new_state[s] = jnp.where(changed[i], new[i].astype(leaf.dtype), leaf)
  return new, new_state


def _state_actions(
  state_leaves: list[tuple[Any, Any]],
  paths: list[tuple[str, ...]],
  leaves: list[Any],
  changed: set[int],
  moments: set[int],
  roles: Mapping[str, str],
) -> tuple[tuple[int, str, int], ...]:
  """The optimizer-state leaves to reset: (state leaf, role, parameter).

  An optimizer-state leaf belongs to the parameter whose path is the
  longest suffix of its own path (optax nests param-shaped trees under
  ``mu``, ``nu``, ``z``, ...) and must have that parameter's shape. The
  innermost name with a role on the rest of its path says what it holds:
  a moment is zeroed where the parameter's moments are reset, a parameter
  copy takes the new values where the parameter changed.
  """
  by_len = sorted(range(len(paths)), key=lambda i: -len(paths[i]))
  actions = []
  for s, (path, leaf) in enumerate(state_leaves):
    p = _path(path)
    for i in by_len:
      n = len(paths[i])
      if n <= len(p) and p[len(p) - n :] == paths[i]:
        break
    else:
      continue
    if i not in changed or jnp.shape(leaf) != jnp.shape(leaves[i]):
      continue
    prefix = p[: len(p) - n]
    role = next((roles[k] for k in reversed(prefix) if k in roles), None)
    if role is None:
      raise ValueError(
        f'recycle_units: opt_state entry {"/".join(p)!r} has the shape of '
        f'parameter {"/".join(paths[i])!r}, which is recycled, but what it '
        f'holds is unknown. Name it in state_roles, e.g. state_roles='
        f"{{{(prefix[-1] if prefix else '')!r}: 'moment'}} (zeroed, as "
        "Adam's mu), 'param' (a copy of the parameters, set to the new "
        "ones) or 'keep'."
      )
    if (role == 'moment' and i in moments) or role == 'param':
      actions.append((s, role, i))
  return tuple(actions)


def _check_concrete(leaves: list[Any], masks: list[jax.Array]) -> None:
  if any(isinstance(v, jax.core.Tracer) for v in (*leaves, *masks)):
    raise ValueError(
      'recycle_units: check_output compares outputs on the host and needs '
      'concrete params and masks: call recycle_units outside jax.jit (the '
      'check_output function itself may be jitted), or leave check_output '
      'out inside a jitted step.'
    )


def _max_change(before: PyTree, after: PyTree) -> float:
  """The largest absolute change between two outputs (NaN to NaN: 0)."""
  worst = 0.0
  pairs = zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
  for a, b in pairs:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    d = np.where(same, 0.0, np.abs(a - b))
    worst = max(worst, float(np.max(np.nan_to_num(d, nan=np.inf), initial=0)))
  return worst


def _check_change(
  fn: Callable[[PyTree], PyTree],
  before: PyTree,
  after: PyTree,
  tol: float,
  alone: Mapping[str, Callable[[], PyTree]],
) -> None:
  """Raises if ``fn`` changed beyond ``tol``, naming the layers that did."""
  worst = _max_change(before, fn(after))
  scale = max(
    (
      float(np.max(np.abs(a[np.isfinite(a)]), initial=0))
      for a in (np.asarray(x, np.float64) for x in jax.tree.leaves(before))
    ),
    default=0.0,
  )
  allowed = tol * max(1.0, scale)
  if worst <= allowed:
    return
  each = {name: _max_change(before, fn(make())) for name, make in alone.items()}
  named = {n: c for n, c in each.items() if c > allowed} or each
  raise ValueError(
    'recycle_units: check_output: reviving the masked units changed the '
    f'output by up to {worst:.3g} (allowed: {allowed:.3g}); by layer, '
    'alone: '
    + ', '.join(f'{n!r} {c:.3g}' for n, c in named.items())
    + ". The output is kept only where a layer's units were dead on this "
    'batch and reach the output only through the layers in pairs (not '
    'through a residual connection or a normalisation across units); '
    'dormant units contribute by design.'
  )


# The structure check: a walk over the jaxpr of the model's output, one
# masked layer at a time, following the values that carry its units.
_CALLS = (
  prims.jit_p,
  prims.custom_jvp_call_p,
  prims.custom_vjp_call_p,
  prims.remat_p,
  prims.closed_call_p,
  prims.call_p,
)
_PRODUCTS = frozenset(('dot_general', 'conv_general_dilated'))
_ALIASES = frozenset(('convert_element_type', 'copy', 'copy_p'))
_CUMULATIVE = frozenset(
  ('cumsum', 'cumprod', 'cummax', 'cummin', 'cumlogsumexp')
)
_ADDS = frozenset(('add', 'add_any', 'sub'))
_RESHAPES = frozenset(('reshape', 'squeeze', 'expand_dims'))


class _Value(NamedTuple):
  """What the walk knows of one value of the jaxpr, for one layer.

  leaf: the parameter leaf it is (cast, copied or transposed), with perm
  its axes as the leaf's axes; units: whether it carries the layer's units
  (along ``axis``, None when unknown), and ``skip`` whether they were
  added to other activations on the way; deps: the per-unit-shaped
  parameter leaves it is computed from; data: computed from a product
  with weights or from a batch (not a per-unit parameter).
  """

  leaf: int | None = None
  perm: tuple[int, ...] = ()
  units: bool = False
  axis: int | None = None
  skip: bool = False
  deps: frozenset[int] = frozenset()
  data: bool = False


_DATA = _Value(data=True)


class _Flow:
  """Follows one masked layer's units through a jaxpr."""

  def __init__(self, entry: _Entry, paths: list[tuple[str, ...]]):
    self.entry = entry
    self.paired = {d.kernel for d in entry.dsts}
    allowed = {entry.src.bias} | set(entry.norm.leaves if entry.norm else ())
    self.allowed = frozenset(i for i in allowed if i is not None)
    self.paths = paths
    self.problems: dict[tuple, None] = {}

  def walk(
    self, jaxpr: Any, ins: Sequence[_Value], consts: Sequence[_Value] = ()
  ) -> list[_Value]:
    env = dict(zip(jaxpr.constvars, consts, strict=False))
    env.update(zip(jaxpr.invars, ins, strict=True))

    def read(v: Any) -> _Value:
      return _Value() if isinstance(v, jcore.Literal) else env.get(v, _Value())

    for eqn in jaxpr.eqns:
      outs = self.eqn(eqn, [read(v) for v in eqn.invars])
      env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]

  def eqn(self, eqn: Any, ins: list[_Value]) -> list[_Value]:
    n, name, p = len(eqn.outvars), eqn.primitive.name, eqn.params
    if eqn.primitive in _CALLS:
      sub = p.get('jaxpr', p.get('call_jaxpr'))
      sub = getattr(sub, 'jaxpr', sub)
      if sub is not None and len(sub.invars) == len(ins):
        if len(sub.outvars) == n:
          return self.walk(sub, ins)
    if name in _PRODUCTS:
      return [self.product(eqn, ins)] * n
    carried = [(v, s) for v, s in zip(eqn.invars, ins, strict=True) if s.units]
    if not carried:
      first = ins[0] if ins else _Value()
      leaf, perm = None, ()
      if first.leaf is not None and name in _ALIASES:
        leaf, perm = first.leaf, first.perm
      elif first.leaf is not None and name == 'transpose':
        leaf = first.leaf
        perm = tuple(first.perm[a] for a in p['permutation'])
      deps = frozenset().union(*(s.deps for s in ins))
      return [_Value(leaf, perm, deps=deps, data=any(s.data for s in ins))] * n
    if any(True for _ in jcore.jaxprs_in_params(p)):
      return [_DATA] * n  # scan, cond, while, ...: not followed
    # A per-unit parameter (a normalisation's scale and bias) that shifts
    # the units can hold a revived one dead; a per-unit slope (PReLU) alone
    # cannot.
    for v, s in zip(eqn.invars, ins, strict=True):
      extra = s.deps - self.allowed
      if not (s.units or s.data) and extra and _size(v) == self.entry.src.units:
        self.problems['affine', tuple(sorted(extra)), name in _ADDS] = None
    v, s = carried[0]
    skip = any(s.skip for _, s in carried) or (
      name in _ADDS and any(s.data and not s.units for s in ins)
    )
    axis = self.axis(eqn, v, s.axis)
    return [_Value(units=True, axis=axis, skip=skip, data=True)] * n

  def product(self, eqn: Any, ins: list[_Value]) -> _Value:
    a, b = ins[:2]
    if not (a.units or b.units):
      for side, s in enumerate((a, b)):
        if s.leaf == self.entry.src.kernel:
          axis = self.kernel_axis(eqn, side, s.perm)
          return _Value(units=True, axis=axis, data=True)
      return _DATA
    skip = a.skip or b.skip
    other = b if a.units else a
    if other.leaf in self.paired:
      return _DATA  # the outgoing weights: zero for the revived units
    if other.leaf is not None:
      layer = self.paths[other.leaf]
      named = (
        layer[:-1]
        if layer[-1:] in (('kernel',), ('w',), ('weight',))
        else layer
      )
      self.problems['reads', '/'.join(named), skip] = None
      return _DATA
    return _Value(units=True, skip=skip, data=True)

  def kernel_axis(
    self, eqn: Any, side: int, perm: tuple[int, ...]
  ) -> int | None:
    """Where a product of the layer's kernel puts the units, if known."""
    unit = len(perm) - 1 if self.entry.src.layout == 'in_out' else 0
    axis = perm.index(unit)
    if eqn.primitive.name == 'conv_general_dilated':
      dn = eqn.params['dimension_numbers']
      return dn.out_spec[1] if side == 1 and dn.rhs_spec[0] == axis else None
    (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
    contract, batch = (lc, lb) if side == 0 else (rc, rb)
    if axis in contract or axis in batch:
      return None
    free = [d for d in range(len(perm)) if d not in contract and d not in batch]
    offset = len(lb)
    if side == 1:
      offset += eqn.invars[0].aval.ndim - len(lc) - len(lb)
    return offset + free.index(axis)

  def axis(self, eqn: Any, v: Any, axis: int | None) -> int | None:
    """Where an equation puts the units its operand v has on axis."""
    if axis is None:
      return None
    name, p = eqn.primitive.name, eqn.params
    shape, out = v.aval.shape, eqn.outvars[0].aval.shape
    if name in _unit_trace.REDUCTIONS:
      if axis in p['axes']:
        self.problems[('mixes',)] = None
        return None
      return axis - sum(a < axis for a in p['axes'])
    if name in _CUMULATIVE:
      if p['axis'] == axis:
        self.problems[('mixes',)] = None
      return axis
    if name == 'broadcast_in_dim':
      return p['broadcast_dimensions'][axis]
    if name == 'transpose':
      return list(p['permutation']).index(axis)
    if name in _RESHAPES:
      before = math.prod(shape[:axis])
      for b, size in enumerate(out):
        if size == shape[axis] and math.prod(out[:b]) == before:
          return b
      return None
    if len(out) == len(shape) and out[axis] == shape[axis]:
      return axis
    return None

  def describe(self) -> str:
    """The layer's problems in words, or ''."""
    name, kinds = self.entry.src.name, {k[0] for k in self.problems}
    skip = any(k[-1] for k in self.problems if k[0] in ('output', 'reads'))
    parts = []
    reads = [k[1] for k in self.problems if k[0] == 'reads']
    if reads:
      parts.append(
        f'reach {", ".join(map(repr, reads))}, which pairs[{name!r}] does '
        'not name'
      )
    if 'output' in kinds:
      parts.append(
        f"reach the model's output other than through pairs[{name!r}]"
      )
    if skip:
      parts[-1] += ' (through a residual connection)'
    if 'mixes' in kinds:
      parts.append(
        'are mixed by a reduction over units (a LayerNorm, GroupNorm or '
        'softmax), so that a revived unit changes the others'
      )
    elif any(k[0] == 'affine' and k[2] for k in self.problems):
      leaves = sorted(
        {i for k in self.problems if k[0] == 'affine' for i in k[1]}
      )
      parts.append(
        'pass through per-unit parameters '
        + ', '.join(repr('/'.join(self.paths[i])) for i in leaves)
        + " that would keep revived units dead (a BatchNorm's scale and "
        f'bias): name that layer in norms={{{name!r}: ...}} to reset them'
      )
    return f'the units of {name!r} ' + ' and '.join(parts) if parts else ''


def _size(v: Any) -> int:
  return math.prod(v.aval.shape)


def _check_structure(
  fn: Callable[[PyTree], PyTree],
  params: PyTree,
  paths: list[tuple[str, ...]],
  plan: Sequence[_Entry],
) -> None:
  """Raises if the structure of ``fn`` keeps a masked layer from revival
  that leaves the output unchanged."""
  if not plan:
    return
  closed = jax.make_jaxpr(fn)(params)
  jaxpr = closed.jaxpr
  if len(jaxpr.invars) != len(paths):  # not one input per leaf: no walk
    return
  found = []
  for entry in plan:
    flow = _Flow(entry, paths)
    ins = [
      _Value(
        leaf=i,
        perm=tuple(range(v.aval.ndim)),
        deps=frozenset({i} if v.aval.shape == (entry.src.units,) else ()),
      )
      for i, v in enumerate(jaxpr.invars)
    ]
    # Arrays the function closes over: a batch (2-d or more) is data, 1-d
    # ones are statistics (BatchNorm's running mean and variance).
    consts = [_Value(data=np.ndim(c) >= 2) for c in closed.consts]
    outs = flow.walk(jaxpr, ins, consts)
    for s in outs:
      if s.units:
        flow.problems['output', s.skip] = None
    if text := flow.describe():
      found.append(text)
  if found:
    raise ValueError(
      "recycle_units: check_output: the model's structure does not allow "
      'the revival asked for: '
      + '; '.join(found)
      + ". See recycle_units' docstring for the structures it supports."
    )
