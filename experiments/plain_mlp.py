"""Plain MLPs whose activation is chosen at run time, trained vectorized.

Used by `experiments.compare_variants`. One compiled program trains every
activation in ACTIVATIONS: the activation is an unbatched index into
`lax.switch`, so the program runs one branch and compiles once per depth.
"""

from __future__ import annotations

import functools
import json
import zlib

import jax
import jax.numpy as jnp
import optax

import jaxrelu
from experiments.uci import PARTS
from jaxrelu import initializers

ACTIVATIONS = (
  'relu',
  'leaky_relu',
  'prelu',
  'prelu_channel',
  'rrelu',
  'elu',
  'celu',
  'relu6',
  'selu',
  'selu_no_dropout',
)
OPTIMIZERS = ('sgd', 'adam')
PRELU_INIT = 0.25


def _init_args(activation: str, celu_alpha: float):
  """(name, param) for `initializers.for_activation`."""
  if activation in ('prelu', 'prelu_channel'):
    return 'prelu', PRELU_INIT
  if activation == 'celu':
    return 'celu', celu_alpha
  if activation == 'selu_no_dropout':
    return 'selu', None
  return activation, None


@functools.cache
def gains(celu_alpha: float) -> dict[str, float]:
  """Each activation's weight gain, from `jaxrelu.initializers.gain`.

  Cached: the exponential units' gains come from quadrature.
  """
  return {a: initializers.gain(*_init_args(a, celu_alpha)) for a in ACTIVATIONS}


def init_params(key, data, gain, *, depth, width):
  """Plain MLP parameters; hidden-to-hidden layers stacked for `lax.scan`.

  Hidden weights are truncated-normal variance scaling with `gain` squared,
  which is exactly `initializers.for_activation` for the activation whose
  gain this is. The key is split the same way for every activation, so seed
  s starts from the same noise, scaled by each activation's gain: the
  comparisons are paired. The input layer is drawn at the padded width and
  rescaled to the dataset's true fan-in; rows of padded features are zero.
  PReLU slopes (one per unit; the shared variant reads column 0) start at
  0.25 and stay there for the other activations, which do not read them.
  """
  unit = jax.nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal')
  init = lambda k, shape: gain * unit(k, shape)
  k_in, k_hidden, k_out = jax.random.split(key, 3)
  features = data['x_train'].shape[-1]
  classes = data['class_mask'].shape[-1]
  real = jnp.arange(features) < data['inputs']
  w_in = init(k_in, (features, width)) * jnp.sqrt(features / data['inputs'])
  return {
    'w_in': jnp.where(real[:, None], w_in, 0.0),
    'b_in': jnp.zeros((width,)),
    'w_hidden': jax.vmap(lambda k: init(k, (width, width)))(
      jax.random.split(k_hidden, depth - 1)
    ),
    'b_hidden': jnp.zeros((depth - 1, width)),
    'w_out': jax.nn.initializers.lecun_normal()(k_out, (width, classes)),
    'b_out': jnp.zeros((classes,)),
    'slopes': jnp.full((depth, width), PRELU_INIT),
  }


def _activation(name, *, train, rate, celu_alpha):
  """f(z, slopes, key) for one activation; slopes are one layer's row."""
  if name == 'prelu':
    return lambda z, s, k: jaxrelu.prelu(z, s[:1])
  if name == 'prelu_channel':
    return lambda z, s, k: jaxrelu.prelu(z, s)
  if name == 'rrelu':
    return lambda z, s, k: jaxrelu.rrelu(z, k, deterministic=not train)
  if name == 'celu':
    return lambda z, s, k: jaxrelu.celu(z, celu_alpha)
  if name == 'selu' and train and rate > 0:
    return lambda z, s, k: jaxrelu.alpha_dropout(jaxrelu.selu(z), rate, k)
  fn = jaxrelu.selu if name == 'selu_no_dropout' else getattr(jaxrelu, name)
  return lambda z, s, k: fn(z)


def forward(params, x, rows, act_index, *, rate, celu_alpha, key=None):
  """Logits, and each hidden unit's largest pre-activation over `rows`.

  `act_index` picks the activation from ACTIVATIONS with `lax.switch`. It
  is never batched, so the switch stays a conditional that runs one
  branch, and one compiled program serves every activation. With a key,
  the network runs in training mode (random RReLU slopes, alpha dropout);
  without one, in evaluation mode.
  """
  depth = params['b_hidden'].shape[0] + 1
  train = key is not None
  keys = jax.random.split(key, depth) if train else None
  branches = [
    _activation(a, train=train, rate=rate, celu_alpha=celu_alpha)
    for a in ACTIVATIONS
  ]

  def layer(h, xs):
    w, b, s, k = xs
    z = h @ w + b
    top = jnp.max(jnp.where(rows[:, None], z, -jnp.inf), axis=0)
    # Rematerialized: otherwise the backward pass keeps the union of every
    # branch's residuals.
    h = jax.checkpoint(
      lambda z, s, k: jax.lax.switch(act_index, branches, z, s, k)
    )(z, s, k)
    return h, top

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
  return logits, jnp.concatenate([top[None], tops])


def _optimizer(name: str, learning_rate: float):
  if name == 'adam':
    return optax.adam(learning_rate)
  return optax.sgd(learning_rate, momentum=0.9)


def train_seed(key, data, act_index, gain, *, depth, cfg):
  """One seed on one (padded) dataset: curves of every metric.

  Every `record_every` steps, and before the first: loss and accuracy on
  the train, validation and test parts (evaluation mode), the fraction of
  hidden units never positive on the training part (per layer), and the
  PReLU slopes per layer (mean and std over units).
  """
  model = dict(rate=cfg['alpha_dropout_rate'], celu_alpha=cfg['celu_alpha'])
  mask = data['class_mask']
  k_init, k_train = jax.random.split(key)
  params = init_params(k_init, data, gain, depth=depth, width=cfg['width'])
  tx = _optimizer(cfg['optimizer'], cfg['learning_rate'])

  def xent(logits, labels):
    logits = jnp.where(mask, logits, -1e9)  # padded classes
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels), (
      jnp.argmax(logits, -1) == labels
    )

  def evaluate(params):
    part = data['part_eval']
    logits, top = forward(params, data['x_eval'], part == 0, act_index, **model)
    loss, correct = xent(logits, data['y_eval'])
    out = {}
    for i, name in enumerate(PARTS):
      weight = (part == i) / jnp.sum(part == i)
      out[f'{name}_loss'] = jnp.sum(weight * loss)
      out[f'{name}_acc'] = jnp.sum(weight * correct)
    # Never positive on the whole training part: dead for relu and relu6.
    out['dead'] = jnp.mean(top <= 0.0, axis=-1)  # (depth,)
    out['slope_mean'] = params['slopes'].mean(-1)
    out['slope_std'] = params['slopes'].std(-1)
    out['slope_shared'] = params['slopes'][:, 0]  # what prelu reads
    return out

  def loss_fn(params, xb, yb, k):
    every_row = jnp.ones(xb.shape[:1], bool)
    logits, _ = forward(params, xb, every_row, act_index, key=k, **model)
    return xent(logits, yb)[0].mean()

  def step(carry, k):
    params, opt_state = carry
    k_batch, k_noise = jax.random.split(k)
    idx = jax.random.randint(k_batch, (cfg['batch'],), 0, data['train_size'])
    grads = jax.grad(loss_fn)(
      params, data['x_train'][idx], data['y_train'][idx], k_noise
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  records = cfg['steps'] // cfg['record_every']

  def chunk(carry, xs):
    index, k = xs
    metrics = evaluate(carry[0])
    # Record, then train; after the last record there is nothing to train.
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
    chunk,
    (params, tx.init(params)),
    (jnp.arange(records + 1), jax.random.split(k_train, records + 1)),
  )
  return curves  # each of shape (records + 1, ...)


def seed_keys(base_seed: int, dataset: str, depth: int, seeds: int):
  """Per-seed keys shared by all activations: comparisons are paired."""
  tag = zlib.crc32(json.dumps([dataset, depth]).encode())
  return jax.random.split(
    jax.random.fold_in(jax.random.key(base_seed), tag), seeds
  )
