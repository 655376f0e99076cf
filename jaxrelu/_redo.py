r"""Recycling dead and dormant units (ReDo, Sokar et al. 2023).

A unit is recycled by re-initialising its incoming weights and bias with the
layer's initializer and zeroing its outgoing weights, so that the network
computes the same function right after the reset (exactly so for dead units,
whose output was already 0) while the unit can learn again. The optimizer's
per-parameter state is reset for the same entries: moments (Adam's ``mu``
and ``nu``, momentum, ...) to 0, copies of the parameters (schedule-free's
``z``) to the new values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

PyTree = Any
Initializer = Callable[..., jax.Array]
Layout = Literal['in_out', 'out_in']

# (kernel, bias, layout) names: Flax and nnx, Haiku, Equinox and PyTorch.
_NAMED = (
  ('kernel', 'bias', 'in_out'),
  ('w', 'b', 'in_out'),
  ('weight', 'bias', 'out_in'),
)
_LAYOUTS = ('in_out', 'out_in')

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

  def incoming(self, mask: jax.Array, ndim: int) -> jax.Array:
    """The mask broadcastable over this kernel's incoming weights."""
    if self.layout == 'in_out':
      return mask
    return mask.reshape((-1,) + (1,) * (ndim - 1))

  def outgoing(self, mask: jax.Array, ndim: int) -> jax.Array:
    """The mask broadcastable over this kernel's fan_in axis."""
    if self.layout == 'in_out':
      return mask[:, None]
    return mask.reshape((1, -1) + (1,) * (ndim - 2))


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


def recycle_units(
  params: PyTree,
  masks: Mapping[str, ArrayLike],
  key: jax.Array,
  *,
  pairs: Mapping[str, str | Sequence[str]],
  opt_state: PyTree = None,
  kernel_init: Initializer | Mapping[str, Initializer] | None = None,
  bias_init: Initializer | None = None,
  layout: Layout | None = None,
  state_roles: Mapping[str, str] | None = None,
) -> tuple[PyTree, PyTree]:
  r"""Re-initialises masked units (ReDo) and resets their optimizer state.

  For every unit i of a layer L with ``masks[L][i]`` True:

  * its incoming weights and its bias are drawn afresh from ``kernel_init``
    and ``bias_init``;
  * its outgoing weights (its fan-in slice of the kernel of each layer in
    ``pairs[L]``) are set to 0, so the network's output is unchanged at
    this step when the unit was dead (its output was already 0); a dormant
    unit's small contribution is removed;
  * optimizer-state entries shaped like one of those parameters are reset
    at the same entries, by the role of the state that holds them: moments
    (``mu``, ``nu``, ``trace``, ``momentum``, ``sum_of_squares``, ``ema``,
    ``acc_grads``, ...) to 0; copies of the parameters (schedule-free's
    ``z``, ``params``, ``ema_params``, ``slow``) to the new parameters.
    Leaves of other shapes (``count``, factored moments) are left alone.

  Everything else, live units' weights and optimizer state included, is
  returned unchanged. The function is pure and jittable (the masks may be
  traced; nothing branches on their values), so a jitted training step can
  call it every K steps, or every step with ``mask & (step % K == 0)``.

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
    kernel_init: a `jax.nn.initializers` initializer, or a mapping from
      layer name to one (layers it does not name get the default). Default:
      ``lecun_normal()`` for in_out kernels (Flax Dense's, nnx Linear's);
      for out_in weights, Equinox's and PyTorch's uniform on
      +-1/sqrt(fan_in) (``variance_scaling(1/3, 'fan_in', 'uniform',
      in_axis=1, out_axis=0)``). An out_in initializer must take its fan-in
      from axis 1.
    bias_init: default zeros.
    layout: ``'in_out'``, ``'out_in'``, or None to follow the names.
    state_roles: optimizer-state names -> ``'moment'`` (zeroed),
      ``'param'`` (set to the new parameters) or ``'keep'``, added to the
      defaults above. An entry is given the role of the innermost name on
      its path that has one.

  Returns:
    ``(params, opt_state)`` with the same structures (``opt_state`` stays
    None when it was None).

  Raises:
    ValueError: a layer name not found in ``params``, a layer whose layout
      is ambiguous, a mask key that is not a key of ``pairs``, a mask (or
      bias) of the wrong shape, a pair whose kernels do not chain
      (incoming units != outgoing fan_in), a bad ``layout`` or
      ``state_roles``, or an optimizer-state entry of a changed parameter
      whose role is unknown; messages name the argument.
    TypeError: ``pairs`` not a mapping, a non-bool mask, a non-floating or
      1-d kernel, a non-floating bias, or a key that is not a PRNG key.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxrelu import diagnostics
    >>> params = {'l1': {'kernel': jnp.ones((2, 3)), 'bias': -jnp.ones(3)},
    ...           'l2': {'kernel': jnp.ones((3, 1)), 'bias': jnp.zeros(1)}}
    >>> mask = jnp.array([False, True, False])
    >>> new, _ = diagnostics.recycle_units(
    ...     params, {'l1': mask}, jax.random.key(0), pairs={'l1': 'l2'})
    >>> new['l1']['bias'], new['l2']['kernel'][:, 0]
    (Array([-1.,  0., -1.], dtype=float32), Array([1., 0., 1.], dtype=float32))

  References:
    Sokar, Agarwal, Castro & Evci, The Dormant Neuron Phenomenon in Deep
    Reinforcement Learning, ICML 2023.
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
  roles = dict(_STATE_ROLES)
  for name, role in (state_roles or {}).items():
    if role not in _ROLES:
      raise ValueError(
        f'recycle_units: state_roles[{name!r}] must be one of {_ROLES}, '
        f'got {role!r}.'
      )
    roles[name] = role
  unknown = [name for name in masks if name not in pairs]
  if unknown:
    raise ValueError(
      f'recycle_units: masks has layers {unknown} that are not keys of '
      f'pairs ({list(pairs)}); each mask needs its outgoing layer named.'
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
    if name in masks:
      plan.append((src, dsts, _check_mask(name, masks[name], src.units)))

  new = list(leaves)
  touched: dict[int, jax.Array] = {}

  def touch(i: int, m: jax.Array) -> None:
    touched[i] = touched[i] | m if i in touched else m

  # Incoming weights and biases first, then outgoing weights: a weight that
  # is both (unit j of one layer feeding recycled unit i of the next) ends
  # at 0, so that neither changed unit alters the output at this step.
  for n, (src, _, mask) in enumerate(plan):
    init = _default_init(src.layout)
    if isinstance(kernel_init, Mapping):
      init = kernel_init.get(src.name, init)
    elif kernel_init is not None:
      init = kernel_init
    k_key, b_key = jax.random.split(jax.random.fold_in(key, n))
    kernel = new[src.kernel]
    shape = jnp.shape(kernel)
    cols = jnp.broadcast_to(src.incoming(mask, len(shape)), shape)
    fresh = init(k_key, shape, jnp.result_type(kernel))
    new[src.kernel] = jnp.where(cols, fresh, kernel)
    touch(src.kernel, cols)
    if src.bias is not None:
      bias = new[src.bias]
      fresh = bias_init(b_key, jnp.shape(bias), jnp.result_type(bias))
      new[src.bias] = jnp.where(mask, fresh, bias)
      touch(src.bias, mask)
  for _, dsts, mask in plan:
    for dst in dsts:
      kernel = new[dst.kernel]
      shape = jnp.shape(kernel)
      rows = jnp.broadcast_to(dst.outgoing(mask, len(shape)), shape)
      new[dst.kernel] = jnp.where(rows, jnp.zeros((), kernel.dtype), kernel)
      touch(dst.kernel, rows)
  params_out = jax.tree_util.tree_unflatten(treedef, new)
  if opt_state is None:
    return params_out, None
  state = _reset_opt_state(opt_state, paths, leaves, new, touched, roles)
  return params_out, state


def _default_init(layout: str) -> Initializer:
  if layout == 'in_out':
    return jax.nn.initializers.lecun_normal()
  return jax.nn.initializers.variance_scaling(
    1 / 3, 'fan_in', 'uniform', in_axis=1, out_axis=0
  )


def _reset_opt_state(
  opt_state: PyTree,
  paths: list[tuple[str, ...]],
  leaves: list[Any],
  new: list[Any],
  touched: Mapping[int, jax.Array],
  roles: Mapping[str, str],
) -> PyTree:
  """Resets touched entries of every state leaf shaped like its parameter.

  An optimizer-state leaf belongs to the parameter whose path is the
  longest suffix of its own path (optax nests param-shaped trees under
  ``mu``, ``nu``, ``z``, ...) and must have that parameter's shape. The
  innermost name with a role on the rest of its path says what it holds.
  """
  by_len = sorted(range(len(paths)), key=lambda i: -len(paths[i]))

  def reset(path, leaf):
    p = _path(path)
    for i in by_len:
      n = len(paths[i])
      if n <= len(p) and p[len(p) - n :] == paths[i]:
        break
    else:
      return leaf
    if i not in touched or jnp.shape(leaf) != jnp.shape(leaves[i]):
      return leaf
    prefix = p[: len(p) - n]
    role = next((roles[s] for s in reversed(prefix) if s in roles), None)
    if role is None:
      raise ValueError(
        f'recycle_units: opt_state entry {"/".join(p)!r} has the shape of '
        f'parameter {"/".join(paths[i])!r}, which is recycled, but what it '
        f'holds is unknown. Name it in state_roles, e.g. state_roles='
        f"{{{(prefix[-1] if prefix else '')!r}: 'moment'}} (zeroed, as "
        "Adam's mu), 'param' (a copy of the parameters, set to the new "
        "ones) or 'keep'."
      )
    if role == 'moment':
      return jnp.where(touched[i], jnp.zeros((), leaf.dtype), leaf)
    if role == 'param':
      return jnp.where(touched[i], new[i].astype(leaf.dtype), leaf)
    return leaf

  return jax.tree_util.tree_map_with_path(reset, opt_state)
