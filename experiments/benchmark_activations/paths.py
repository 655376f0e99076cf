"""What benchmark_activations times, and which public names each row covers.

Not a binary (no flags), so a test can import it with other modules.

`ACTIVATIONS`: the activations timed in the four modes of `timing.programs`
against jax.nn's counterpart. `PATHS`: the other public paths (prelu's
learnable slopes, rrelu and alpha_dropout in training, each Flax layer's
training step, the tracer inside a training step and `recycle_units` per
call), each against its natural reference. `uncovered` names the public
functions and layers that no row times: a new public name without a
benchmark row fails a test
(tests/experiments/benchmark_activations/test_benchmark_coverage.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp

import jaxrelu
from jaxrelu import diagnostics, registry

Fn = Callable[[jax.Array], jax.Array]


def _key() -> jax.Array:
  """The benchmark's key, made at use (importing starts no backend), and
  concrete even under a trace: a constant of the program, as a key made
  before it."""
  with jax.ensure_compile_time_eval():
    return jax.random.key(0)


RRELU_SLOPE = (1 / 8 + 1 / 3) / 2  # rrelu's evaluation slope.
_RRELU_LOWER, _RRELU_UPPER = 1 / 8, 1 / 3
DROPOUT_RATE = 0.1


def channel_slopes(x: jax.Array) -> jax.Array:
  """One slope per channel (x's last axis), 0.1 to 0.3, in x's dtype."""
  return jnp.linspace(0.1, 0.3, x.shape[-1], dtype=x.dtype)


@dataclasses.dataclass(frozen=True)
class Activation:
  """An activation timed in fwd, value_and_grad, vjp and jvp.

  Attributes:
    ours: the function of x that is timed.
    baseline: jax.nn's function with the same arithmetic, or None.
    residual_target: bytes per element its backward pass may save.
    covers: the public names whose cost this row measures.
  """

  ours: Fn
  baseline: Fn | None
  residual_target: float | None = None
  covers: tuple[str, ...] = ()


def _plain(spec: registry.Activation) -> Activation:
  """The row of an activation that needs no hyperparameter and draws
  nothing, beside jax.nn's function of the same name (none: timed alone)."""
  return Activation(
    spec.fn, spec.jax_nn, spec.residual_bytes, (f'jaxrelu.{spec.name}',)
  )


# Every activation of the registry that needs no hyperparameter and draws
# no random numbers gets its row from the registry, in its order; prelu
# (a slope to give) and rrelu (two modes) have rows of their own, each
# beside jax.nn's function with the same arithmetic.
ACTIVATIONS: dict[str, Activation] = {
  **{
    name: _plain(spec)
    for name, spec in registry.ACTIVATIONS.items()
    if not spec.random
    and all(h.default is not None for h in spec.hyperparameters)
  },
  'prelu': Activation(
    lambda x: jaxrelu.prelu(x, 0.25),
    lambda x: jax.nn.leaky_relu(x, 0.25),
    registry.get('prelu').residual_bytes,
    ('jaxrelu.prelu',),
  ),
  'prelu_channel': Activation(
    lambda x: jaxrelu.prelu(x, channel_slopes(x)),
    lambda x: jax.nn.leaky_relu(x, channel_slopes(x)),
    # The mask, and the 1024 slopes (4 KiB) over the traced 2^16 elements.
    registry.get('prelu').residual_bytes + 4 * 1024 / 2**16,
    ('jaxrelu.prelu',),
  ),
  'rrelu_eval': Activation(
    functools.partial(jaxrelu.rrelu, deterministic=True),
    lambda x: jax.nn.leaky_relu(x, RRELU_SLOPE),
    1,  # evaluation mode is a leaky ReLU: its mask
    ('jaxrelu.rrelu',),
  ),
  'rrelu_train': Activation(
    lambda x: jaxrelu.rrelu(x, _key()),
    None,
    registry.get('rrelu').residual_bytes,
    ('jaxrelu.rrelu',),
  ),
}

# A path's function: f(x, d, c), differentiable in x and d (parameters),
# not in c (keys, masks, targets).
PathFn = Callable[[jax.Array, object, object], object]
# The timed modes of a path (`path_programs`); 'call' is 'fwd' of a
# function that is itself a training step or a parameter update.
PATH_MODES = ('fwd', 'call', 'value_and_grad', 'vjp')


@dataclasses.dataclass(frozen=True)
class Built:
  """A path's functions and arguments at one input x.

  Attributes:
    ours: f(x, d, c), the code under test.
    reference: the same computation written by its natural reference
      (jax.nn, a jnp formula, Flax's layer, the plain step), or None.
    d: the differentiable arguments (slopes, parameters): a pytree.
    c: the other arguments (keys, masks, targets): a pytree.
    d_ref: the reference's own d, where it holds other parameters (a Flax
      layer's); None: d.
  """

  ours: PathFn
  reference: PathFn | None
  d: object = ()
  c: object = ()
  d_ref: object = None

  @property
  def reference_d(self):
    """The reference's differentiable arguments (its own parameters)."""
    return self.d if self.d_ref is None else self.d_ref


@dataclasses.dataclass(frozen=True)
class Path:
  """A public path timed beside its reference.

  Attributes:
    covers: the public names whose cost the path measures.
    build: x -> `Built`, at the timed input x (rows of 1024).
    modes: what is timed, from `PATH_MODES`.
    reference: the reference's name, for the tables ('' for none).
    target: largest ratio ours / reference that meets the target; None:
      the ratio is reported, not judged (a cost next to the step it
      accompanies, not two ways of computing one thing).
    note: why there is no reference, or what the ratio means.
  """

  covers: tuple[str, ...]
  build: Callable[[jax.Array], Built]
  modes: tuple[str, ...]
  reference: str = ''
  target: float | None = 1.0
  note: str = ''


def path_programs(f: PathFn) -> dict[str, Callable]:
  """The jitted programs of f, each taking (x, v, d, c).

  fwd and call: f(x, d, c); value_and_grad: of sum(f(x, d, c) * v) with
  respect to (x, d); vjp: the pure vjp with respect to (x, d), cotangent v.
  """

  def call(x, v, d, c):
    return f(x, d, c)

  def value_and_grad(x, v, d, c):
    loss = lambda x, d: jnp.sum(f(x, d, c) * v)
    return jax.value_and_grad(loss, argnums=(0, 1))(x, d)

  def vjp(x, v, d, c):
    return jax.vjp(lambda x, d: f(x, d, c), x, d)[1](v)

  return {
    'fwd': jax.jit(call),
    'call': jax.jit(call),
    'value_and_grad': jax.jit(value_and_grad),
    'vjp': jax.jit(vjp),
  }


def _where_prelu(x, a):
  return jnp.where(x > 0, x, a * x)


def _prelu(slopes: Callable[[jax.Array], jax.Array]) -> Callable:
  def build(x):
    return Built(
      lambda x, a, c: jaxrelu.prelu(x, a),
      lambda x, a, c: _where_prelu(x, a),
      d=slopes(x),
    )

  return build


def _rrelu(x):
  def reference(x, d, key):
    # Drawn as rrelu draws them: in float32 (float64 for float64 inputs).
    cdt = jnp.promote_types(x.dtype, jnp.float32)
    u = jax.random.uniform(key, x.shape, cdt)
    a = _RRELU_LOWER + (_RRELU_UPPER - _RRELU_LOWER) * u
    return _where_prelu(x.astype(cdt), a).astype(x.dtype)

  return Built(lambda x, d, key: jaxrelu.rrelu(x, key), reference, c=_key())


def _alpha_dropout(x):
  a, b = jaxrelu.alpha_dropout_affine(DROPOUT_RATE)
  alpha = -jaxrelu.SELU_SCALE * jaxrelu.SELU_ALPHA

  def reference(x, d, c):
    key, a, b = c
    keep = jax.random.bernoulli(key, 1 - DROPOUT_RATE, x.shape)
    return (a * jnp.where(keep, x, alpha) + b).astype(x.dtype)

  return Built(
    lambda x, d, c: jaxrelu.alpha_dropout(x, DROPOUT_RATE, c[0]),
    reference,
    c=(_key(), a, b),
  )


def _linen_path(name: str) -> Callable:
  """A linen layer's training step: value_and_grad of sum(layer(x) * v)
  with respect to its params (if any) and x; keys from 'dropout'."""

  def build(x):
    import flax.linen as nn

    from jaxrelu import linen as jrl

    ours, reference = {
      'PReLU': (jrl.PReLU(), nn.PReLU()),
      'RReLU': (jrl.RReLU(deterministic=False), None),
      'AlphaDropout': (
        jrl.AlphaDropout(DROPOUT_RATE, deterministic=False),
        nn.Dropout(DROPOUT_RATE, deterministic=False),
      ),
    }[name]

    def step(layer):
      def f(x, params, key):
        return layer.apply({'params': params}, x, rngs={'dropout': key})

      rngs = {'params': _key(), 'dropout': _key()}
      return f, layer.init(rngs, x).get('params', {})

    f, d = step(ours)
    if reference is None:
      return Built(f, None, d=d, c=_key())
    g, d_ref = step(reference)
    return Built(f, g, d=d, c=_key(), d_ref=d_ref)

  return build


def _nnx_path(name: str) -> Callable:
  """An nnx layer's training step, split into graph and state: its
  parameters are differentiated, the key is passed at the call."""

  def build(x):
    from flax import nnx

    from jaxrelu import nnx as jrn

    plain = lambda m, x, key: m(x)
    keyed = lambda m, x, key: m(x, rngs=key)
    ours, reference = {
      'PReLU': ((jrn.PReLU(), plain), (nnx.PReLU(), plain)),
      'RReLU': ((jrn.RReLU(), keyed), None),
      'AlphaDropout': (
        (jrn.AlphaDropout(DROPOUT_RATE), keyed),
        (nnx.Dropout(DROPOUT_RATE), keyed),
      ),
    }[name]

    def step(module, call):
      graph, params, rest = nnx.split(module, nnx.Param, ...)

      def f(x, params, c):
        key, rest = c
        return call(nnx.merge(graph, params, rest), x, key)

      return f, params, rest

    f, d, rest = step(*ours)
    if reference is None:
      return Built(f, None, d=d, c=(_key(), rest))
    g, d_ref, rest_ref = step(*reference)
    if jax.tree.leaves(rest) or jax.tree.leaves(rest_ref):
      raise ValueError(f'nnx.{name}: state beyond its parameters')
    return Built(f, g, d=d, c=(_key(), rest), d_ref=d_ref)

  return build


# The small MLP that the diagnostics paths act on: x's 1024 features, two
# hidden relu layers, one output, Adam.
_HIDDEN = 128
_PAIRS = {'Dense_0': 'Dense_1', 'Dense_1': 'Dense_2'}


def _mlp_params(dtype):
  shapes = {'Dense_0': (1024, _HIDDEN), 'Dense_1': (_HIDDEN, _HIDDEN)}
  shapes['Dense_2'] = (_HIDDEN, 1)
  keys = jax.random.split(jax.random.key(3), len(shapes))
  return {
    name: {
      'kernel': jax.random.normal(k, s, dtype) / jnp.sqrt(s[0]).astype(dtype),
      'bias': jnp.zeros(s[1], dtype),
    }
    for k, (name, s) in zip(keys, shapes.items(), strict=True)
  }


def _mlp_loss(params, x, y):
  h = x
  for name in ('Dense_0', 'Dense_1'):
    h = jax.nn.relu(h @ params[name]['kernel'] + params[name]['bias'])
  out = h @ params['Dense_2']['kernel'] + params['Dense_2']['bias']
  return jnp.mean((out - y) ** 2)


def _adam():
  import optax

  return optax.adam(1e-3)


def _plain_step(x, params, c):
  """One Adam step of the MLP: c = (opt_state, y, ...)."""
  import optax

  opt_state, y = c[0], c[1]
  loss, grads = jax.value_and_grad(_mlp_loss)(params, x, y)
  updates, opt_state = _adam().update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def _mlp_args(x):
  params = _mlp_params(x.dtype)
  y = jnp.sum(x[:, :2], axis=1, keepdims=True)
  return params, _adam().init(params), y


def _stats_step(x):
  import optax

  params, opt_state, y = _mlp_args(x)

  def ours(x, params, c):
    opt_state, y = c
    loss = diagnostics.activation_stats(lambda p: _mlp_loss(p, x, y))
    (loss, report), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = _adam().update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, report

  return Built(ours, _plain_step, d=params, c=(opt_state, y))


def _recycle(x):
  params, opt_state, y = _mlp_args(x)
  # Every fourth unit of each hidden layer recycled.
  masks = {n: jnp.arange(_HIDDEN) % 4 == 0 for n in _PAIRS}

  def ours(x, params, c):
    opt_state, _, masks, key = c
    return diagnostics.recycle_units(
      params, masks, key, pairs=_PAIRS, opt_state=opt_state
    )

  return Built(ours, _plain_step, d=params, c=(opt_state, y, masks, _key()))


_NO_FLAX_RRELU = 'Flax has no RReLU layer: timed, not compared.'
PATHS: dict[str, Path] = {
  'prelu_learnable': Path(
    ('jaxrelu.prelu',),
    _prelu(lambda x: jnp.asarray(0.25, x.dtype)),
    ('value_and_grad', 'vjp'),
    'jnp.where',
  ),
  'prelu_learnable_channel': Path(
    ('jaxrelu.prelu',),
    _prelu(channel_slopes),
    ('value_and_grad', 'vjp'),
    'jnp.where',
  ),
  'rrelu_train_key': Path(
    ('jaxrelu.rrelu',), _rrelu, ('fwd', 'vjp'), 'jnp.where + uniform'
  ),
  'alpha_dropout': Path(
    # alpha_dropout_affine: the (a, b) each training call computes.
    ('jaxrelu.alpha_dropout', 'jaxrelu.alpha_dropout_affine'),
    _alpha_dropout,
    ('fwd', 'vjp'),
    'jnp.where + bernoulli',
  ),
  'linen.PReLU': Path(
    ('jaxrelu.linen.PReLU',),
    _linen_path('PReLU'),
    ('value_and_grad',),
    'flax.linen.PReLU',
  ),
  'linen.RReLU': Path(
    ('jaxrelu.linen.RReLU',),
    _linen_path('RReLU'),
    ('value_and_grad',),
    note=_NO_FLAX_RRELU,
  ),
  'linen.AlphaDropout': Path(
    ('jaxrelu.linen.AlphaDropout',),
    _linen_path('AlphaDropout'),
    ('value_and_grad',),
    'flax.linen.Dropout',
  ),
  'nnx.PReLU': Path(
    ('jaxrelu.nnx.PReLU',),
    _nnx_path('PReLU'),
    ('value_and_grad',),
    'flax.nnx.PReLU',
  ),
  'nnx.RReLU': Path(
    ('jaxrelu.nnx.RReLU',),
    _nnx_path('RReLU'),
    ('value_and_grad',),
    note=_NO_FLAX_RRELU,
  ),
  'nnx.AlphaDropout': Path(
    ('jaxrelu.nnx.AlphaDropout',),
    _nnx_path('AlphaDropout'),
    ('value_and_grad',),
    'flax.nnx.Dropout',
  ),
  'activation_stats_step': Path(
    ('jaxrelu.diagnostics.activation_stats',),
    _stats_step,
    ('call',),
    'plain step',
    target=1.2,
    note="target 1.20, benchmark_unit_stats' claim (issue 11): one Adam step"
    ' of a small MLP with the statistics of its rectifiers, against without',
  ),
  'recycle_units': Path(
    ('jaxrelu.diagnostics.recycle_units',),
    _recycle,
    ('call',),
    'plain step',
    target=None,
    note='one recycle_units call against one Adam step of the MLP it acts on',
  ),
}

# Public names that must have a row beyond the public functions and layers.
REQUIRED = (
  'jaxrelu.diagnostics.activation_stats',
  'jaxrelu.diagnostics.recycle_units',
)


def public_names() -> list[str]:
  """The public names the benchmark must cover: every callable of
  `jaxrelu.__all__`, every class of `jaxrelu.linen.__all__` and
  `jaxrelu.nnx.__all__`, and `REQUIRED`."""
  from jaxrelu import linen, nnx

  names = [
    f'jaxrelu.{n}' for n in jaxrelu.__all__ if callable(vars(jaxrelu)[n])
  ]
  for module in (linen, nnx):
    names += [
      f'{module.__name__}.{n}'
      for n in module.__all__
      if isinstance(vars(module)[n], type)
    ]
  return [*names, *REQUIRED]


def covered(
  activations: Mapping[str, Activation] = ACTIVATIONS,
  paths: Mapping[str, Path] = PATHS,
) -> set[str]:
  """The public names some activation row or path covers."""
  rows: Iterable = (*activations.values(), *paths.values())
  return {name for row in rows for name in row.covers}


def uncovered(names: Iterable[str] | None = None, **tables) -> list[str]:
  """The public names (default `public_names()`) that no row covers."""
  have = covered(**tables)
  return [
    n for n in (public_names() if names is None else names) if n not in have
  ]
