r"""Dead-unit diagnostics: measure the dying-ReLU problem in any model.

A unit is *dead on a probe set* when its pre-activation is <= 0 for every
probe input: a ReLU then outputs 0 and passes no gradient for all of them.
For leaky and exponential variants the same test reports units that are
*never positive* (they still pass gradient, through the negative slope).

Pre-activations come as a pytree of arrays (one leaf per layer), each of
shape (batch, ...units); axis 0 is the probe axis, every other axis indexes
units. Everything here is pure and jittable.

Models that do not expose their pre-activations need no change:
`activation_stats(fn)` runs any JAX function (a linen ``apply``, an nnx or
Equinox module, plain jnp code) and reports, for every rectifier it applies,
per-unit counts (`UnitStats`): the active fraction, dead and ReDo-dormant
units, and the fraction of inputs that pass no gradient. It recognises
jaxrelu's and jax.nn's rectifiers and, in your own code, ``jnp.maximum(z,
0)``, ``jnp.where(z > 0, z, 0)``, ``z * (z > 0)`` and ``jnp.clip(z, 0)``,
inside `shard_map` and `pmap` too; when `fn` applies none it warns rather
than return an empty report silently. `recycle_units`
revives dead or dormant units of Dense/Linear and Conv stacks (ReDo, with
the reference implementation's defaults), resetting their optimizer state
too; with ``check_output`` it verifies that the model's output is unchanged.

Examples:
  >>> import jax.numpy as jnp
  >>> from jaxrelu import diagnostics
  >>> pre = {'layer1': jnp.array([[1.0, -1.0], [2.0, -3.0]])}
  >>> diagnostics.dead_fraction(pre)
  {'layer1': Array(0.5, dtype=float32)}
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

# Unit statistics of any model, unchanged, and their remedy (ReDo).
from jaxrelu._redo import recycle_units as recycle_units
from jaxrelu._unit_report import plot_dead_fraction as plot_dead_fraction
from jaxrelu._unit_report import report_table as report_table
from jaxrelu._unit_trace import DORMANT_TAU as DORMANT_TAU
from jaxrelu._unit_trace import UnitStats as UnitStats
from jaxrelu._unit_trace import activation_stats as activation_stats
from jaxrelu._unit_trace import merge_unit_stats as merge_unit_stats
from jaxrelu._unit_trace import unit_stats_init as unit_stats_init

__all__ = (
  'DORMANT_TAU',
  'TrackerState',
  'UnitStats',
  'activation_stats',
  'born_dead',
  'dead_fraction',
  'dead_units',
  'merge_unit_stats',
  'plot_dead_fraction',
  'recycle_units',
  'report_table',
  'tracker_dead_fraction',
  'tracker_init',
  'tracker_merge',
  'tracker_update',
  'unit_stats_init',
)

PyTree = Any


def _check_batched(
  leaf: jax.Array, fn: str = 'diagnostics', *, probes: bool = True
) -> None:
  """Shapes only, so the checks hold under jit too."""
  shape = jnp.shape(leaf)
  if len(shape) < 2:
    raise ValueError(
      f'{fn}: each pre-activation leaf needs shape (batch, ...units) '
      f'with at least 2 axes, got shape {shape}.'
    )
  if probes and shape[0] == 0:
    raise ValueError(
      f'{fn}: a pre-activation leaf of shape {shape} has an empty batch '
      'axis; a unit is judged on at least one probe input.'
    )


def _dead(x: jax.Array, threshold: ArrayLike, fn: str) -> jax.Array:
  _check_batched(x, fn)
  return jnp.max(x, axis=0) <= threshold


def dead_units(preactivations: PyTree, threshold: ArrayLike = 0.0) -> PyTree:
  """Per-unit boolean masks: True where pre-activation <= threshold always.

  NaN: a unit that saw a NaN pre-activation for some probe is not dead (its
  max is NaN, and NaN <= threshold is False), as in `activation_stats`. A
  unit whose pre-activations are NaN for every probe is not dead either:
  the mask is False there, and `dead_fraction` reports NaN for its layer.

  Args:
    preactivations: pytree of arrays of shape (batch, ...units).
    threshold: a unit is dead if no probe lifts it above this value.

  Returns:
    A pytree of bool arrays of shape (...units).

  Raises:
    ValueError: for a leaf with fewer than 2 axes or an empty batch axis
      (shapes are checked under jit too).
  """
  return jax.tree.map(
    lambda x: _dead(x, threshold, 'dead_units'), preactivations
  )


def _dead_fraction(x: jax.Array, threshold: ArrayLike) -> jax.Array:
  dead = _dead(x, threshold, 'dead_fraction')
  fraction = jnp.mean(dead.astype(jnp.float32))
  # No probe gave an all-NaN unit a value: neither dead nor alive.
  undefined = jnp.any(jnp.all(jnp.isnan(x), axis=0))
  return jnp.where(undefined, jnp.float32(jnp.nan), fraction)


def dead_fraction(preactivations: PyTree, threshold: ArrayLike = 0.0) -> PyTree:
  """Per-layer fraction of dead units (0 to 1), a pytree of scalars.

  The fraction of `dead_units` that are True, except that a layer with a
  unit whose pre-activations are NaN for every probe gets NaN: that unit is
  neither dead nor alive, and counting it either way would hide the NaN.
  Units with only some NaN probes count as not dead (see `dead_units`).

  Raises:
    ValueError: for a leaf with fewer than 2 axes or an empty batch axis.
  """
  return jax.tree.map(lambda x: _dead_fraction(x, threshold), preactivations)


class TrackerState(NamedTuple):
  """Streaming state: the largest pre-activation seen per unit, and a count.

  The max is combinable in any order (max is associative and commutative)
  so updates from batches, steps or devices merge exactly.
  """

  max_preactivation: PyTree
  examples: jax.Array


def tracker_init(preactivations_like: PyTree) -> TrackerState:
  """An empty tracker for pre-activations shaped like the given pytree.

  Leaves may be arrays or `jax.ShapeDtypeStruct`s of shape (batch, ...units);
  only the unit axes are kept.
  """

  def empty(x):
    _check_batched(x, 'tracker_init', probes=False)
    return jnp.full(jnp.shape(x)[1:], -jnp.inf, jnp.float32)

  return TrackerState(
    jax.tree.map(empty, preactivations_like), jnp.zeros((), jnp.int32)
  )


def tracker_update(state: TrackerState, preactivations: PyTree) -> TrackerState:
  """Folds one batch of pre-activations into the state (jittable).

  Inside a jitted step with the batch sharded over devices, the max over
  axis 0 is a cross-device reduction: the state comes out replicated. A
  unit that sees a NaN keeps a NaN max and is never counted dead, as in
  `dead_units` (the tracker keeps only the max, so a unit that saw only NaN
  counts the same way).

  Raises:
    ValueError: if preactivations has no arrays, or a leaf has fewer than
      2 axes or an empty batch axis.
  """
  leaves = jax.tree.leaves(preactivations)
  if not leaves:
    raise ValueError(
      'tracker_update: preactivations has no arrays (got '
      f'{preactivations!r}); pass a pytree of arrays of shape '
      '(batch, ...units), shaped like the one given to tracker_init.'
    )
  for leaf in leaves:
    _check_batched(leaf, 'tracker_update')
  batch = leaves[0].shape[0]
  new_max = jax.tree.map(
    lambda m, x: jnp.maximum(m, jnp.max(x, axis=0).astype(jnp.float32)),
    state.max_preactivation,
    preactivations,
  )
  return TrackerState(new_max, state.examples + batch)


def tracker_merge(a: TrackerState, b: TrackerState) -> TrackerState:
  """Combines two trackers (e.g. from different devices or runs) exactly."""
  return TrackerState(
    jax.tree.map(jnp.maximum, a.max_preactivation, b.max_preactivation),
    a.examples + b.examples,
  )


def tracker_dead_fraction(
  state: TrackerState, threshold: ArrayLike = 0.0
) -> PyTree:
  """Per-layer dead fraction over everything the tracker has seen."""
  return jax.tree.map(
    lambda m: jnp.mean((m <= threshold).astype(jnp.float32)),
    state.max_preactivation,
  )


def born_dead(
  outputs: ArrayLike, *, rtol: ArrayLike = 0.0, atol: ArrayLike = 0.0
) -> jax.Array:
  """Whether a network's output is constant over the probe set.

  A network is *born dead* when some layer is dead for every probe: all
  later layers then see the same input and the output cannot vary. With
  the default tolerances the output must be exactly constant, which is
  what a dead layer produces.

  Args:
    outputs: network outputs of shape (batch, ...).
    rtol: relative tolerance against the first output's magnitude.
    atol: absolute tolerance.

  Returns:
    A scalar bool array.
  """
  y = jnp.asarray(outputs)
  if y.ndim < 1 or y.shape[0] < 1:
    raise ValueError(
      f'born_dead: outputs need a batch axis, got shape {y.shape}.'
    )
  spread = jnp.max(jnp.abs(y - y[:1]))
  return spread <= atol + rtol * jnp.max(jnp.abs(y[:1]))
