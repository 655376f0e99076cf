"""The experiments' MLP and its trainer, and their activations.

The engine's model core, shared by `experiments.dying_relu` and
`experiments.compare_variants`; each binary's own task and cells live in
its package.

`VARIANTS` are the activations the experiments run: every activation of
`jaxrelu.registry` by its name, then the controls (fixed-slope leaky
ReLUs, per-channel PReLU, SELU without dropout).

`train_seed` trains a plain MLP (no normalization, no skip connections)
and records curves of every metric. One compiled program trains every
activation of a run (cfg['activations'], default all of ACTIVATIONS): the
activation is an unbatched index into `lax.switch` over them, so the
program runs one branch and compiles once per depth. A cell's results do
not depend on the run's other activations (`branches`).
The learning rate and the hidden-bias init are traced arguments, so every
cell of a grid runs the same program, each cell on its own (`by_cell`:
the same bits whatever the grid around it and the device count).
"""

from __future__ import annotations

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrelu
from experiments import cli
from jaxrelu import diagnostics, initializers, registry


@dataclasses.dataclass(frozen=True)
class Variant:
  """An activation as the experiments' MLP runs it.

  Attributes:
    name: its name in the experiments (flags, cells, reports).
    base: its activation in `jaxrelu.registry`.
    fixed: hyperparameters held at these values (else the defaults; celu's
      alpha comes from the binaries' --celu_alpha).
    per_channel: a learnable slope per unit (else one per layer).
    dropout: alpha dropout in training, at the run's rate (selu only).
    user: a user's activation (`registry.from_path`), whose spec stands
      in for the registry's; `base` is then its name.
  """

  name: str
  base: str
  fixed: tuple[tuple[str, float], ...] = ()
  per_channel: bool = False
  dropout: bool = True
  user: registry.Activation | None = None

  @property
  def spec(self) -> registry.Activation:
    return self.user if self.user is not None else registry.get(self.base)


RRELU_EVAL_SLOPE = (1 / 8 + 1 / 3) / 2  # jaxrelu.rrelu's default bounds
# The experiments' controls beyond the registry's activations, each listed
# after its base. Fixed-slope leaky ReLUs: 0.25 is PReLU's initial slope
# (He et al. 2015), so prelu - leaky_relu_0.25 isolates what learning the
# slope adds; 0.229 is RReLU's evaluation slope ((1/8 + 1/3) / 2), so
# rrelu - leaky_relu_0.229 isolates the randomness; 0.182 is Xu et al.
# 2015's "very leaky" 1/5.5.
_CONTROLS = {
  'leaky_relu': tuple(
    Variant(f'leaky_relu_{name}', 'leaky_relu', (('negative_slope', slope),))
    for name, slope in (
      ('0.25', 0.25),
      ('0.229', RRELU_EVAL_SLOPE),
      ('0.182', 1 / 5.5),
    )
  ),
  'prelu': (Variant('prelu_channel', 'prelu', per_channel=True),),
  'selu': (Variant('selu_no_dropout', 'selu', dropout=False),),
}
# Every activation of the registry by its own name, then its controls.
VARIANTS = {
  v.name: v
  for name in registry.ACTIVATIONS
  for v in (Variant(name, name), *_CONTROLS.get(name, ()))
}
ACTIVATIONS = tuple(VARIANTS)


def activation_names(flag_name: str, values) -> list[str]:
  """A binary's --activations: built-in names, or a user's activation as
  ``package.module:function`` (optionally ``[label=NAME;rectifier=true;
  HYPERPARAMETER=VALUE;...]`` after it), resolved and checked before any
  compute (`jaxrelu.registry.from_path`) and added to VARIANTS under its
  label. Returns the names; cli.UsageError (one line) for a bad one.

  A run's users' activations are those of its flags alone: any added by
  an earlier call (an earlier run in the same process) are dropped.
  """
  global ACTIVATIONS
  for name in user_activations():
    del VARIANTS[name]
  ACTIVATIONS = tuple(VARIANTS)
  items = cli.activation_items(flag_name, values, ACTIVATIONS)
  for label, spec in items:
    if spec is not None:
      hyper = tuple((h.name, h.default) for h in spec.hyperparameters)
      VARIANTS[label] = Variant(label, label, hyper, user=spec)
  ACTIVATIONS = tuple(VARIANTS)
  return [label for label, _ in items]


def user_activations() -> tuple[str, ...]:
  """The users' activations added so far (`activation_names`)."""
  return tuple(n for n, v in VARIANTS.items() if v.user is not None)


def source_settings(activation: str) -> dict:
  """What a cell's settings add for its activation: for a user's, the
  sha256 of its module's source (so a changed function gives new keys);
  nothing for a built-in (the experiments' own source digest covers it)."""
  variant = VARIANTS[activation]
  if variant.user is None:
    return {}
  return {
    **cli.source_hash(variant.user.fn),
    'activation_hyperparameters': dict(variant.fixed),
  }


OPTIMIZERS = ('sgd', 'adam')
PRELU_INIT = 0.25  # a learnable slope's initial value (He et al. 2015)
# XLA options the trainers are compiled with (`jax.jit`'s
# compiler_options); none by default. The test suite sets LLVM -O1 here
# (tests/conftest.py), as for the binaries it starts: its small programs
# are compile-bound.
COMPILER_OPTIONS: dict[str, object] = {}


def _hyperparameters(variant: Variant, celu_alpha: float) -> dict:
  """The fixed hyperparameters a variant's function is called with."""
  out = dict(variant.fixed)
  if variant.base == 'celu':
    out['alpha'] = celu_alpha
  return out


def _init_args(activation: str, celu_alpha: float):
  """(name, param) for `initializers.for_activation`."""
  variant = VARIANTS[activation]
  if registry.get(variant.base).learnable:
    return variant.base, PRELU_INIT
  values = list(_hyperparameters(variant, celu_alpha).values())
  return variant.base, (values[0] if values else None)


def gains(celu_alpha: float) -> dict[str, float]:
  """Each activation's weight gain, from `jaxrelu.initializers.gain` (a
  user's: from its spec, by quadrature)."""
  return _gains(celu_alpha, ACTIVATIONS)


@functools.cache
def _gains(celu_alpha: float, names: tuple[str, ...]) -> dict[str, float]:
  # Cached: the exponential units' gains come from quadrature.
  return {a: _gain(a, celu_alpha) for a in names}


def _gain(activation: str, celu_alpha: float) -> float:
  variant = VARIANTS[activation]
  if variant.user is not None:
    return variant.user.gain(**dict(variant.fixed))
  return initializers.gain(*_init_args(activation, celu_alpha))


def _kernel_inits(data, gain):
  """(input layer's, hidden layers') kernel initializers for `gain`.

  Truncated-normal variance scaling with `gain` squared; the input layer's
  is drawn at the padded width, rescaled to the dataset's true fan-in, and
  zero on rows of padded features.
  """
  unit = jax.nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal')
  features = data['x_train'].shape[-1]
  real = jnp.arange(features) < data['inputs']

  def hidden(key, shape, dtype=jnp.float32):
    return gain * unit(key, shape, dtype)

  def first(key, shape, dtype=jnp.float32):
    w = hidden(key, shape, dtype) * jnp.sqrt(features / data['inputs'])
    return jnp.where(real[:, None], w, 0.0)

  return first, hidden


def init_params(key, data, gain, bias_init=0.0, *, depth, width):
  """Plain MLP parameters; hidden-to-hidden layers stacked for `lax.scan`.

  Hidden weights are truncated-normal variance scaling with `gain` squared,
  which is exactly `initializers.for_activation` for the activation whose
  gain this is. The key is split the same way for every activation, so seed
  s starts from the same noise, scaled by each activation's gain: the
  comparisons are paired. The input layer is drawn at the padded width and
  rescaled to the dataset's true fan-in; rows of padded features are zero.
  PReLU slopes (one per unit; the shared variant reads column 0) start at
  0.25 and stay there for the other activations, which do not read them.
  Hidden biases start at `bias_init`, the read-out's at 0.
  """
  first, init = _kernel_inits(data, gain)
  k_in, k_hidden, k_out = jax.random.split(key, 3)
  features = data['x_train'].shape[-1]
  classes = data['class_mask'].shape[-1]
  return {
    'w_in': first(k_in, (features, width)),
    'b_in': jnp.full((width,), bias_init, jnp.float32),
    'w_hidden': jax.vmap(lambda k: init(k, (width, width)))(
      jax.random.split(k_hidden, depth - 1)
    ),
    'b_hidden': jnp.full((depth - 1, width), bias_init, jnp.float32),
    'w_out': jax.nn.initializers.lecun_normal()(k_out, (width, classes)),
    'b_out': jnp.zeros((classes,)),
    'slopes': jnp.full((depth, width), PRELU_INIT),
  }


def _activation(name, *, train, rate, celu_alpha):
  """f(z, slopes, key) for one activation; slopes are one layer's row.

  From the registry: a learnable activation takes the layer's slopes (its
  first alone, unless per channel), a random one the key (and draws only
  in training); the others run at their fixed hyperparameters.
  """
  variant = VARIANTS[name]
  spec = variant.spec
  if spec.learnable:
    if variant.per_channel:
      return lambda z, s, k: spec.fn(z, s)
    return lambda z, s, k: spec.fn(z, s[:1])
  if spec.random:
    return lambda z, s, k: spec.fn(z, k, deterministic=not train)
  hyper = _hyperparameters(variant, celu_alpha)
  fn = functools.partial(spec.fn, **hyper) if hyper else spec.fn
  if variant.base == 'selu' and variant.dropout and train and rate > 0:
    return lambda z, s, k: jaxrelu.alpha_dropout(fn(z), rate, k)
  return lambda z, s, k: fn(z)


def forward(
  params,
  x,
  rows,
  act_index,
  *,
  rate,
  celu_alpha,
  key=None,
  derivative=False,
  means=False,
  activations=ACTIVATIONS,
):
  """Logits, and each hidden unit's largest pre-activation over `rows`.

  `act_index` picks the activation from `activations` (names of
  ACTIVATIONS) with `lax.switch`. It is never batched, so the switch stays
  a conditional that runs one branch (with one activation alone, jax
  inlines it: `branches` never passes one), and one compiled program
  serves every activation. With a key, the network runs in training mode
  (random RReLU slopes, alpha dropout); without one, in evaluation mode.
  With `derivative`, also each hidden unit's mean absolute derivative
  |f'(z)| over `rows` (a forward-mode JVP through the activation's own
  rule, so relu'(0) = 0 as jaxrelu documents): the fraction of the
  gradient a unit passes back, on average. With `means` (not with
  `derivative`), also, per hidden layer, the mean over its live units of
  each unit's |mean activation| over `rows`, divided by their RMS
  activation there: 0 when every unit is centred on zero, 1 when every
  unit is constant; whatever the scale, and units of opposite sign do not
  cancel. Units at zero on every row (dead ReLUs) are left out, so the
  number does not move with the dead fraction.
  """
  depth = params['b_hidden'].shape[0] + 1
  train = key is not None
  keys = jax.random.split(key, depth) if train else None
  fns = [
    _activation(a, train=train, rate=rate, celu_alpha=celu_alpha)
    for a in activations
  ]
  count = rows.sum()

  def over_rows(v):  # mean over `rows`, per unit
    return jnp.sum(jnp.where(rows[:, None], v, 0.0), 0) / count

  def layer(h, xs):
    w, b, s, k = xs
    z = h @ w + b
    top = jnp.max(jnp.where(rows[:, None], z, -jnp.inf), axis=0)
    act = lambda z, s, k: jax.lax.switch(act_index, fns, z, s, k)
    if derivative:
      h, slope = jax.jvp(lambda z: act(z, s, k), (z,), (jnp.ones_like(z),))
      # |f'|: a learned PReLU slope may turn negative and still pass it.
      return h, (top, over_rows(jnp.abs(slope)))
    # Rematerialized: otherwise the backward pass keeps the union of every
    # branch's residuals.
    h = jax.checkpoint(act)(z, s, k)
    if not means:
      return h, top
    # The live units' mean |mean| over rows, in units of their RMS
    # activation (0: every unit zero-centred; 1: every unit constant).
    # Units at zero on every row (dead ReLUs) are left out of both.
    square = over_rows(h * h)
    live = square > 0
    n_live = jnp.maximum(live.sum(), 1)
    m = jnp.sum(jnp.where(live, jnp.abs(over_rows(h)), 0.0)) / n_live
    rms = jnp.sqrt(jnp.sum(square) / n_live)
    return h, (top, jnp.where(rms > 0, m / jnp.where(rms > 0, rms, 1.0), 0.0))

  first = lambda a: None if a is None else a[0]
  rest = lambda a: None if a is None else a[1:]
  slopes = params['slopes']
  h, top = layer(x, (params['w_in'], params['b_in'], slopes[0], first(keys)))
  h, tops = jax.lax.scan(
    layer,
    h,
    (params['w_hidden'], params['b_hidden'], slopes[1:], rest(keys)),
  )
  logits = h @ params['w_out'] + params['b_out']
  stack = lambda a, b: jnp.concatenate([a[None], b])
  if derivative or means:
    return logits, stack(top[0], tops[0]), stack(top[1], tops[1])
  return logits, stack(top, tops)


def branches(cfg: dict) -> tuple[str, ...]:
  """The activations a `train_seed` program switches between.

  cfg['activations'] (default: all of ACTIVATIONS), in ACTIVATIONS' order,
  and with a second one when it names one alone: jax inlines a one-branch
  switch, and XLA then fuses the activation with its neighbours and
  rounds differently. As a conditional, a branch has computed the same
  bits whatever the other branches (measured, not guaranteed by XLA:
  tests/experiments/dying_relu/test_dying_units.py, BranchSetTest), so
  a cell's numbers do not depend on the run's other activations.
  """
  chosen = set(cfg.get('activations', ACTIVATIONS))
  if len(chosen) == 1:
    chosen.add('leaky_relu' if 'relu' in chosen else 'relu')
  return tuple(a for a in ACTIVATIONS if a in chosen)


def branch_index(cfg: dict, activation: str) -> jax.Array:
  """`train_seed`'s act_index of `activation` under cfg."""
  names = branches(cfg)
  if activation not in names:
    raise ValueError(
      f"activation {activation!r} not in cfg['activations'] {names}."
    )
  return jnp.int32(names.index(activation))


def optimizer(
  name: str, learning_rate, momentum: float = 0.0
) -> optax.GradientTransformation:
  """optax's own optimizer, its learning rate injected as a hyperparameter.

  The learning rate may then be traced (and vmapped over cells): the
  update is optax.adam's, or optax.sgd's (plain without momentum),
  unchanged. Only the learning rate is injected: Adam's b1, b2 and eps
  stay Python floats, as in optax.adam itself (as float32 arrays, 1 - b1
  rounds differently and the updates move in the last bits).
  """
  if name == 'adam':
    adam = optax.inject_hyperparams(
      optax.adam, static_args=('b1', 'b2', 'eps', 'eps_root')
    )
    return adam(learning_rate=learning_rate)
  sgd = optax.inject_hyperparams(optax.sgd, static_args=('momentum',))
  return sgd(learning_rate=learning_rate, momentum=momentum or None)


@dataclasses.dataclass(frozen=True)
class _Seed:
  """What one seed's training reads: its data, activation and settings.

  The pieces of `train_seed`: `metrics` (one record), `loss` (one
  minibatch), `step` (one optimizer update) and `records` (record, revive,
  train, over the whole run).
  """

  data: dict
  act_index: jax.Array
  cfg: dict
  input_shift: jax.Array | None

  @property
  def units(self) -> bool:
    return self.cfg.get('unit_stats', False)

  @property
  def act_means(self) -> bool:
    return self.cfg.get('act_means', False) and not self.units

  def forward_args(self) -> dict:
    return dict(
      rate=self.cfg['alpha_dropout_rate'],
      celu_alpha=self.cfg['celu_alpha'],
      activations=branches(self.cfg),
    )

  def shift(self, x):
    return x if self.input_shift is None else x + self.input_shift

  def xent(self, logits, labels):
    """Per-row cross-entropy and correctness, padded classes masked."""
    logits = jnp.where(self.data['class_mask'], logits, -1e9)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels), (
      jnp.argmax(logits, -1) == labels
    )

  def metrics(self, params) -> dict:
    """One record: every metric of `train_seed` at these parameters."""
    data, cfg = self.data, self.cfg
    part = data['part_eval']
    judged = part == cfg['dead_part']
    x, model = self.shift(data['x_eval']), self.forward_args()
    if self.units:
      logits, top, slope = forward(
        params, x, judged, self.act_index, derivative=True, **model
      )
    elif self.act_means:
      logits, top, act_mean = forward(
        params, x, judged, self.act_index, means=True, **model
      )
    else:
      logits, top = forward(params, x, judged, self.act_index, **model)
    loss, correct = self.xent(logits, data['y_eval'])
    out = {}
    for i, name in enumerate(cfg['parts']):
      weight = (part == i) / jnp.sum(part == i)
      out[f'{name}_loss'] = jnp.sum(weight * loss)
      out[f'{name}_acc'] = jnp.sum(weight * correct)
    # Never positive on the whole judged part: dead for relu and relu6.
    out['dead'] = jnp.mean(top <= 0.0, axis=-1)  # (depth,)
    if self.units:
      out['dead_units'] = top <= 0.0
      out['unit_slope'] = slope
    if self.act_means:
      out['act_mean'] = act_mean
    first = logits[jnp.argmax(judged)]
    out['born_dead'] = jnp.all(
      jnp.where(judged[:, None], logits == first, True)
    )
    out['slope_mean'] = params['slopes'].mean(-1)
    out['slope_std'] = params['slopes'].std(-1)
    out['slope_shared'] = params['slopes'][:, 0]  # what prelu reads
    return out

  def loss(self, params, xb, yb, key):
    """The mean training loss of one minibatch (training mode)."""
    every_row = jnp.ones(xb.shape[:1], bool)
    logits, _ = forward(
      params, xb, every_row, self.act_index, key=key, **self.forward_args()
    )
    return self.xent(logits, yb)[0].mean()

  def step(self, tx, carry, key):
    """One update of (params, opt_state) on a random minibatch."""
    params, opt_state = carry
    data = self.data
    k_batch, k_noise = jax.random.split(key)
    idx = jax.random.randint(
      k_batch, (self.cfg['batch'],), 0, data['train_size']
    )
    grads = jax.grad(self.loss)(
      params, self.shift(data['x_train'][idx]), data['y_train'][idx], k_noise
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None


def train_seed(
  key,
  data,
  act_index,
  gain,
  learning_rate,
  bias_init=0.0,
  *,
  depth,
  cfg,
  init_scale=None,
  input_shift=None,
  revive=None,
):
  """One seed on one (padded) dataset: curves of every metric.

  Args:
    key: the seed's key (init noise, minibatches, RReLU/dropout noise).
    data: one dataset as `experiments.compare_variants.datasets` makes
      it: training rows and the evaluation rows, each tagged with its
      part (an index into
      cfg['parts']).
    act_index: index into `branches(cfg)` (unbatched: one branch runs).
    gain: the hidden weights' init gain.
    learning_rate, bias_init: traced; may be vmapped.
    depth: hidden layers.
    cfg: width, steps, batch, record_every, optimizer ('sgd' or 'adam'),
      momentum (for sgd), alpha_dropout_rate, celu_alpha, activations
      (optional, see `branches`: the names `act_index` picks from; fewer
      compile faster), parts (names of the evaluation parts), dead_part
      (the part units are judged on) and
      unit_stats (default False: record the per-unit outputs below) and
      act_means (default False: record 'act_mean' below).
    init_scale: traced or None (1): multiplies `gain` (a bad init).
    input_shift: traced or None (0): added to every input feature, in
      training and evaluation (data whose pre-activations start shifted).
    revive: traced or None (never): where positive, ReDo revival at every
      record: the units found dead there (never positive on the dead_part)
      get fresh incoming weights and their bias init, zero outgoing weights
      and zeroed optimizer moments (`jaxrelu.diagnostics.recycle_units`).

  Returns:
    Every `record_every` steps, and before the first: loss and accuracy on
    each evaluation part (evaluation mode), the fraction of hidden units
    never positive on the dead_part (per layer), whether the output is
    constant there (born dead), and the PReLU slopes per layer (mean and
    std over units); with unit_stats, per unit (depth, width), whether it
    is never positive there ('dead_units') and its mean absolute derivative
    there ('unit_slope'); with act_means, each hidden layer's mean
    |unit mean| over its RMS activation there ('act_mean', (depth,); see
    `forward`). Each of shape (records + 1, ...).
  """
  seed = _Seed(data, act_index, cfg, input_shift)
  k_init, k_train = jax.random.split(key)
  # Revival's own stream: fold_in(key, 2) is neither split above.
  k_revive = jax.random.fold_in(key, 2)
  if init_scale is not None:
    gain = gain * init_scale
  params = init_params(
    k_init, data, gain, bias_init, depth=depth, width=cfg['width']
  )
  tx = optimizer(cfg['optimizer'], learning_rate, cfg.get('momentum', 0.0))
  records = cfg['steps'] // cfg['record_every']
  step = functools.partial(seed.step, tx)

  def record_then_train(carry, xs):
    index, k = xs
    metrics = seed.metrics(carry[0])
    if revive is not None:
      dead = metrics['dead_units'] & (revive > 0)
      # The training keys are the same with or without revival.
      k_units = jax.random.fold_in(k_revive, index)
      carry = _revive(*carry, dead, k_units, data, gain, bias_init)
    # After the last record there is nothing to train.
    carry = jax.lax.cond(
      index < records,
      lambda c: jax.lax.scan(step, c, jax.random.split(k, cfg['record_every']))[
        0
      ],
      lambda c: c,
      carry,
    )
    return carry, metrics

  _, curves = jax.lax.scan(
    record_then_train,
    (params, tx.init(params)),
    (jnp.arange(records + 1), jax.random.split(k_train, records + 1)),
  )
  return curves  # each of shape (records + 1, ...)


def _layer_view(tree):
  """A parameter-shaped tree as `recycle_units` names layers: '0' (input
  layer) to str(depth - 1), each a (kernel, bias) pair, then 'out'."""
  depth = tree['b_hidden'].shape[0] + 1
  view = {'0': (tree['w_in'], tree['b_in'])}
  for i in range(1, depth):
    view[str(i)] = (tree['w_hidden'][i - 1], tree['b_hidden'][i - 1])
  rest = {'slopes': tree['slopes']}
  if depth == 1:  # no hidden-to-hidden layer: keep the empty stacks
    rest.update(w_hidden=tree['w_hidden'], b_hidden=tree['b_hidden'])
  return {**view, 'out': (tree['w_out'], tree['b_out']), 'rest': rest}


def _stacked(view):
  """`_layer_view`'s inverse."""
  tree = dict(view['rest'])
  if 'w_hidden' not in tree:
    hidden = [view[str(i)] for i in range(1, len(view) - 2)]
    tree['w_hidden'] = jnp.stack([w for w, _ in hidden])
    tree['b_hidden'] = jnp.stack([b for _, b in hidden])
  tree['w_in'], tree['b_in'] = view['0']
  tree['w_out'], tree['b_out'] = view['out']
  return tree


def _revive(params, opt_state, dead, key, data, gain, bias_init):
  """ReDo on the stacked MLP: `recycle_units` on its per-layer view.

  dead: bool (depth, width). The revived units start as at init (the same
  kernel initializers and bias init); their optimizer moments are zeroed.
  """
  names = [str(i) for i in range(dead.shape[0])]
  first, hidden = _kernel_inits(data, gain)

  def convert(tree, is_node, fn):  # every parameter-shaped node of a tree
    return jax.tree.map(
      lambda t: fn(t) if is_node(t) else t, tree, is_leaf=is_node
    )

  new, state = diagnostics.recycle_units(
    _layer_view(params),
    dict(zip(names, dead, strict=True)),
    key,
    pairs=dict(zip(names, [*names[1:], 'out'], strict=True)),
    opt_state=convert(
      opt_state, lambda t: isinstance(t, dict) and 'w_in' in t, _layer_view
    ),
    kernel_init={name: first if name == '0' else hidden for name in names},
    bias_init=lambda k, shape, dtype=jnp.float32: jnp.full(
      shape, bias_init, dtype
    ),
    layout='in_out',
    # The bias moments too (the reference keeps them): this binary's claims
    # and stored cells were made with them zeroed.
    reset_bias_moments=True,
  )
  is_view = lambda t: isinstance(t, dict) and 'rest' in t
  return _stacked(new), convert(state, is_view, _stacked)


# Per-cell settings `train_grid` takes as traced arguments, and the value
# of each that leaves the training as it is (a baseline cell).
# A cell's treatment settings (model.KNOBS but the learning rate and bias),
# as they key stored cells, and their baseline values.
TREATMENTS = ('init_scale', 'input_shift', 'revive')
UNTREATED = (1.0, 0.0, False)


KNOBS = {
  'learning_rate': None,
  'bias_init': 0.0,
  **dict(zip(TREATMENTS, UNTREATED, strict=True)),
}


@functools.cache
def _grid_program(depth: int, cfg_json: str, knobs: tuple[str, ...]):
  """One cell of `train_grid`: its seeds, vectorized, as a `by_cell`
  program of ((keys, knob values), (data, act_index, gain)). One per
  depth, config and set of traced knobs; the activation index, gain and
  dataset are arguments, so every activation of the same shape reuses
  it."""
  cfg = json.loads(cfg_json)

  def cell(own, shared):
    keys, values = own
    data, act_index, gain = shared
    return jax.vmap(
      lambda key: train_seed(
        key, data, act_index, gain, depth=depth, cfg=cfg, **values
      )
    )(keys)

  return cell


@functools.cache
def _waves(program, devices: tuple, options_json: str):
  """`program` on one cell per device of `devices`: the same per-device
  computation whatever the number of devices (shard_map's body)."""
  mesh = jax.sharding.Mesh(np.asarray(devices), ('cells',))
  spec = jax.sharding.PartitionSpec

  def wave(own, shared):
    one = jax.tree.map(lambda a: a[0], own)
    return jax.tree.map(lambda a: a[None], program(one, shared))

  return jax.jit(
    jax.shard_map(
      wave,
      mesh=mesh,
      in_specs=(spec('cells'), spec()),
      out_specs=spec('cells'),
      check_vma=False,  # no collectives: each device computes its own cell
    ),
    compiler_options=json.loads(options_json) or None,
  )


# by_cell's compiled programs, by (program, devices, options, shapes).
_COMPILED: dict = {}


def by_cell(program, own, shared, *, lower: str = 'the sizes'):
  """`program(cell, shared)` for every cell of `own`, each on its own.

  Args:
    program: one cell's computation (a stable function: compilations are
      cached by its identity).
    own: a tree whose leaves have a leading axis of cells.
    shared: arguments every cell gets whole.
    lower: the flags that set the program's size, named when it needs more
      memory than the devices have (`cli.require_memory`: checked on XLA's
      analysis of the compiled program, before it runs).

  Returns:
    The outputs, stacked on a leading axis of cells, as NumPy.

  A cell is never vectorized with another: it runs alone on one device,
  in waves of k = min(local devices, cells) cells (the last padded with
  copies of the last cell, whose results are dropped). Its numbers are
  therefore the same bits whatever other cells its group holds and
  however many devices run it
  (tests/experiments/dying_relu/test_dying_units.py, CellTest); on 2
  cores, as fast as vectorizing the cells (dying_relu's 24-cell relu
  group: 42.9 s against 44.6 s, BUILD_NOTES.md).
  """
  cells = len(jax.tree.leaves(own)[0])
  devices = tuple(jax.local_devices()[:cells])
  k = len(devices)
  options = json.dumps(COMPILER_OPTIONS, sort_keys=True)
  pad = lambda a: jnp.concatenate([a, *[a[-1:]] * (-cells % k)])
  own = jax.tree.map(pad, own)
  wave = jax.tree.map(lambda a: a[:k], own)
  shapes = jax.tree.map(lambda a: (a.shape, str(a.dtype)), (wave, shared))
  cache_key = (program, devices, options, str(shapes))
  if cache_key not in _COMPILED:
    _COMPILED[cache_key] = cli.compile_within_memory(
      _waves(program, devices, options).lower(wave, shared),
      devices,
      'one cell' if k == 1 else f'{k} cells at once (one per device)',
      lower,
    )
  fn = _COMPILED[cache_key]
  outs = [
    fn(jax.tree.map(lambda a, i=i: a[i : i + k], own), shared)
    for i in range(0, cells + (-cells % k), k)
  ]
  return jax.tree.map(
    lambda *a: np.concatenate([np.asarray(x) for x in a])[:cells], *outs
  )


def train_grid(keys, knobs, dataset, *, activation, depth, cfg):
  """A grid of cells, each over seeds, each cell on its own (`by_cell`).

  Args:
    keys: (cells, seeds) keys.
    knobs: name -> (cells,) values, for names of KNOBS (learning_rate is
      required): `train_seed`'s traced per-cell settings. Which knobs are
      traced is part of the program (a constant rounds differently from
      a traced value): a caller picks them from a cell's own settings.
    dataset: one dataset (`experiments.compare_variants.datasets`
      layout), shared by all cells.
    activation: one of ACTIVATIONS (its weight gain from `gains`).
    depth: hidden layers.
    cfg: as `train_seed` takes it.

  Returns:
    `train_seed`'s curves, each with leading axes (cells, seeds), as NumPy.
  """
  knobs = {k: jnp.asarray(v, jnp.float32) for k, v in sorted(knobs.items())}
  program = _grid_program(depth, json.dumps(cfg, sort_keys=True), tuple(knobs))
  shared = (
    jax.tree.map(jnp.asarray, dataset),
    branch_index(cfg, activation),
    jnp.float32(gains(cfg['celu_alpha'])[activation]),
  )
  return by_cell(
    program,
    (jnp.asarray(keys), knobs),
    shared,
    lower='--seeds, --batch, --widths or --depths',
  )
