"""dying_relu's task and its cells: Gaussian inputs labelled by a seeded
random teacher network, and the grid of MLPs trained on them."""

from __future__ import annotations

import functools
import json
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from experiments import model
from experiments.dying_relu import effects as dying_effects
from experiments.dying_relu.settings import Settings

# The teacher task of experiments.dying_relu: sizes of its parts.
TEACHER_INPUTS, TEACHER_CLASSES, TEACHER_TRAIN, TEACHER_PROBE = 16, 4, 4096, 512


# Evaluation parts: the held-out probe, then the whole training set (units
# are judged dead on it: a unit dead there gets no gradient from any step).
TEACHER_PARTS = ('probe', 'train')


@functools.cache
def teacher_dataset(seed: int) -> dict[str, np.ndarray]:
  """A classification task labelled by a seeded random teacher network.

  Inputs are N(0, I) in 16 dimensions; the label is the argmax of a random
  tanh MLP (16 -> 64 -> 4). Generated in code, nothing downloaded. The
  layout is `pad_datasets`' for one dataset, with two evaluation parts
  (TEACHER_PARTS): a held-out probe set of 512 inputs, then the 4096
  training inputs. Cached: made once per process.
  """
  k_x, k_p, k_t1, k_t2 = jax.random.split(jax.random.key(seed), 4)
  w1 = jax.random.normal(k_t1, (TEACHER_INPUTS, 64)) / np.sqrt(TEACHER_INPUTS)
  w2 = jax.random.normal(k_t2, (64, TEACHER_CLASSES)) / np.sqrt(64)
  teacher = lambda x: jnp.argmax(jnp.tanh(x @ w1 * 2.0) @ w2, -1)
  x = np.asarray(jax.random.normal(k_x, (TEACHER_TRAIN, TEACHER_INPUTS)))
  probe = np.asarray(jax.random.normal(k_p, (TEACHER_PROBE, TEACHER_INPUTS)))
  y, y_probe = np.asarray(teacher(x), np.int32), np.asarray(teacher(probe))
  return {
    'x_train': x,
    'y_train': y,
    'train_size': np.int32(TEACHER_TRAIN),
    'inputs': np.int32(TEACHER_INPUTS),
    'class_mask': np.ones(TEACHER_CLASSES, bool),
    'x_eval': np.concatenate([probe, x]),
    'y_eval': np.concatenate([y_probe.astype(np.int32), y]),
    'part_eval': np.repeat(
      np.arange(2, dtype=np.int32), [TEACHER_PROBE, TEACHER_TRAIN]
    ),
  }


def teacher_majority_rate(seed: int, part: str = 'probe') -> float:
  """The majority-class rate of a part of the teacher task: a constant
  predictor's accuracy (0.348 on the probe for seed 0)."""
  d = teacher_dataset(seed)
  labels = d['y_eval'][d['part_eval'] == TEACHER_PARTS.index(part)]
  return float(np.bincount(labels).max() / labels.size)


def teacher_cells(
  settings: Settings, activation: str, depth: int
) -> list[list]:
  """dying_relu's cells of one (optimizer, activation, depth): settings
  (KNOBS) per cell, in groups that each run as one `train_grid`.

  ReLU: the learning rates x bias inits; any other activation: the
  learning rates x its bias inits (settings.grid.variant_bias_inits, default
  all). ReLU also gets, in a
  group of its own (the treatment knobs are traced only there), the
  treatments at the reference bias: revival at every learning rate, and
  with SGD, each bad init scale and each input shift at the reference
  learning rate (`dying_effects.reference_lr`). At a cause depth (not one of
  settings.depths), ReLU with SGD only, at the reference learning rate and
  bias: the one cell the depth claim reads.
  """
  base = {k: v for k, v in model.KNOBS.items() if k != 'learning_rate'}
  lrs, biases = settings.grid.learning_rates, settings.grid.bias_inits
  b0, lr0 = (
    dying_effects.reference_bias(biases),
    dying_effects.reference_lr(lrs),
  )
  if activation != 'relu':
    biases = settings.grid.variant_bias_inits
  if depth not in settings.depths:
    if activation != 'relu' or settings.grid.optimizer != 'sgd':
      return []
    return [[{**base, 'learning_rate': lr0, 'bias_init': b0}]]
  groups = [
    [
      {**base, 'learning_rate': lr, 'bias_init': b}
      for lr in lrs
      for b in biases
    ]
  ]
  if activation != 'relu':
    return groups
  at = {**base, 'bias_init': b0}
  treated = [{**at, 'learning_rate': lr, 'revive': True} for lr in lrs]
  if settings.grid.optimizer == 'sgd':
    treated += [
      {**at, 'learning_rate': lr0, 'init_scale': v}
      for v in settings.init_scales
    ]
    treated += [
      {**at, 'learning_rate': lr0, 'input_shift': v}
      for v in settings.input_shifts
    ]
  return [*groups, treated]


def teacher_groups(settings: Settings, version: int) -> list[tuple]:
  """experiments.dying_relu's groups: (label, cell settings, compute).

  The groups of `teacher_cells` for every (optimizer, activation, depth,
  width), computed by `train_teacher`. A cell's key holds the settings
  that shape it, the teacher task's sizes, its KNOBS and `version`.
  """
  shared = {
    'steps': settings.steps,
    'seeds': settings.seeds,
    'batch': settings.batch,
    'record_every': settings.record_every,
    'seed': settings.seed,
    'data': [TEACHER_INPUTS, TEACHER_CLASSES, TEACHER_TRAIN, TEACHER_PROBE],
    'version': version,
  }
  out = []
  for opt in settings.optimizers:
    part = settings.for_optimizer(opt)
    for act in settings.activations:
      for depth in sorted({*settings.depths, *settings.cause_depths}):
        for width in settings.widths:
          for n, cells in enumerate(teacher_cells(part, act, depth)):
            at = {
              'optimizer': opt,
              'activation': act,
              **model.source_settings(act),
              'depth': depth,
            }
            keyed = [{**shared, **at, 'width': width, **c} for c in cells]
            compute = functools.partial(
              train_teacher, part, act, depth, width, cells
            )
            label = f'{opt} {act} depth {depth} width {width}'
            out.append((label + (' treated' if n else ''), keyed, compute))
  return out


def teacher_keys(seed: int, depth: int, width: int, seeds: int) -> jax.Array:
  """dying_relu's per-seed keys: paired by construction.

  They depend on the base seed and the network's shape only, so seed s has
  the same weight noise, minibatch order and RReLU noise in every cell a
  claim compares: across learning rates, bias inits, treatments,
  optimizers and activations (which scale the same noise by their gain).
  """
  tag = zlib.crc32(json.dumps(['teacher', depth, width]).encode())
  return jax.random.split(jax.random.fold_in(jax.random.key(seed), tag), seeds)


def train_teacher(
  settings: Settings, activation: str, depth: int, width: int, cells: list[dict]
):
  """One group of `teacher_groups`: a record per cell (`train_grid`).

  Each cell (KNOBS settings) trains settings.seeds seeds, whose keys come
  from `teacher_keys` (the same in every cell), on
  `teacher_dataset(settings.seed)`, with plain SGD (no momentum) or
  Adam, no dropout; units are judged on the whole training set.

  Returns:
    `dying_effects.dead_cell` of each cell, in order.
  """
  seed_keys = teacher_keys(settings.seed, depth, width, settings.seeds)
  cfg = {
    'width': width,
    'steps': settings.steps,
    'batch': settings.batch,
    'record_every': settings.record_every,
    'optimizer': settings.grid.optimizer,
    'momentum': 0.0,  # plain SGD
    'alpha_dropout_rate': 0.0,
    'celu_alpha': 1.0,
    # The switch's branches: the run's activations (or, for a caller
    # without that settings, such as a test, this one; see `branches`).
    'activations': settings.activations,
    'parts': TEACHER_PARTS,
    'dead_part': 1,  # units are judged on the whole training set
    'unit_stats': True,
  }
  # The learning rate and bias are always traced; a treatment only in a
  # cell that moves it (it costs nothing elsewhere). Each cell's program
  # follows from its own settings, never from the cells beside it.
  traced = lambda c: (
    'learning_rate',
    'bias_init',
    *(k for k in model.TREATMENTS if c[k] != model.KNOBS[k]),
  )
  dataset = teacher_dataset(settings.seed)
  curves = [None] * len(cells)
  for names in dict.fromkeys(map(traced, cells)):
    at = [i for i, c in enumerate(cells) if traced(c) == names]
    out = model.train_grid(
      jnp.stack([seed_keys] * len(at)),
      {k: [float(cells[i][k]) for i in at] for k in names},
      dataset,
      activation=activation,
      depth=depth,
      cfg=cfg,
    )
    for j, i in enumerate(at):
      curves[i] = jax.tree.map(lambda a, j=j: a[j : j + 1], out)
  curves = jax.tree.map(lambda *a: np.concatenate(a), *curves)
  return [
    dying_effects.dead_cell(curves, i, activation) for i in range(len(cells))
  ]
