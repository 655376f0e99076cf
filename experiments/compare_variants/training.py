"""experiments.compare_variants' training: its blocks, groups and cells.

A *block* is one training protocol: an optimizer, its learning rates and
the depths it trains. compare_variants has two (`blocks`): the main one
(every activation at every depth, one optimizer and learning rate) and
the SELU paper's protocol (plain SGD at each of several learning rates, at
one depth; the rate, and for SELU the alpha-dropout rate, are chosen on
the validation split afterwards, in `experiments.compare_variants.claims`).

A cell is one (dataset, activation, depth, optimizer, learning rate): every
repeated split of the dataset (`data.split_seeds`) times every seed. A
group is the cells of one (block, activation, depth, pad group), trained
by one compiled program that runs each cell on its own (`model.by_cell`:
a cell's splits and seeds vectorized, cells spread over the local
devices), so a cell's numbers do not depend on the group around it. The
program depends on the pad group's shapes, the depth and the optimizer
only: the activation is an unbatched `lax.switch` index (over the run's
activations) and the learning rate a traced argument, so every
activation reuses it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from experiments import model
from experiments.compare_variants import datasets as data
from experiments.compare_variants.settings import Settings


def blocks(settings: Settings) -> list[dict]:
  """The training protocols of a run: name, optimizer, learning rates,
  depths. The SELU block is absent when --sgd_learning_rates is empty."""
  out = [
    {
      'name': 'main',
      'optimizer': settings.optimizer,
      'learning_rates': [settings.learning_rate],
      'depths': settings.depths,
    }
  ]
  if settings.sgd_learning_rates:
    out.append(
      {
        'name': 'selu_protocol',
        'optimizer': 'sgd',
        'learning_rates': settings.sgd_learning_rates,
        'depths': [settings.sgd_depth],
      }
    )
  return out


def keys(seed: int, dataset: str, depth: int, split: int, seeds: int):
  """Per-seed keys of one (dataset, depth, split): paired by construction.

  They depend on nothing else, so seed s of a split starts from the same
  noise (scaled by each activation's gain) and draws the same minibatches
  and dropout/RReLU noise for every activation, optimizer and learning
  rate.
  """
  tag = zlib.crc32(json.dumps(['variants', dataset, depth, split]).encode())
  return jax.random.split(jax.random.fold_in(jax.random.key(seed), tag), seeds)


@functools.cache
def _program(depth: int, cfg_json: str):
  """One cell of one depth and config as a `model.by_cell` program of
  ((keys, data, learning rate), (activation index, gain)): its networks
  (splits x seeds, a key and data each) on one vmapped axis."""
  cfg = {
    **json.loads(cfg_json),
    'parts': data.PARTS,
    'dead_part': 0,  # units are judged on the training part
    'act_means': True,
  }

  def cell(own, shared):
    keys, rows, learning_rate = own
    act_index, gain = shared
    return jax.vmap(
      lambda key, row: model.train_seed(
        key, row, act_index, gain, learning_rate, depth=depth, cfg=cfg
      )
    )(keys, rows)

  return cell


def train_cells(
  settings: Settings, optimizer: str, activation: str, depth: int, cells: list
) -> list[dict]:
  """One group: its cells, (dataset, learning rate) pairs of one pad group.

  Returns:
    Per cell: its training-set size and each curve of `model.train_seed`,
    of shape (splits, seeds, records + 1, ...), rounded to 6 decimals.
  """
  splits = data.split_seeds(settings.split_seed, settings.splits)
  seeds = settings.seeds
  datasets = list(dict.fromkeys(d for d, _ in cells))
  by_split = [data.padded(tuple(datasets), s) for s in splits]
  rows, key_list = [], []
  for ds, _ in cells:
    for i, split in enumerate(splits):
      key_list.append(keys(settings.seed, ds, depth, split, seeds))
      rows += [(i, datasets.index(ds))] * seeds
  n = len(rows)
  batch = {
    k: np.stack([by_split[i][k][d] for i, d in rows]) for k in by_split[0]
  }
  cfg = {
    'width': settings.width,
    'steps': settings.steps,
    'batch': settings.batch,
    'record_every': settings.record_every,
    'optimizer': optimizer,
    'momentum': 0.0,  # plain SGD
    'alpha_dropout_rate': settings.alpha_dropout_rate,
    'celu_alpha': settings.celu_alpha,
    'activations': settings.activations,  # the switch's branches
  }
  per_cell = len(splits) * seeds
  own = (
    jnp.concatenate(key_list).reshape(len(cells), per_cell),
    jax.tree.map(
      lambda v: v.reshape(len(cells), per_cell, *v.shape[1:]), batch
    ),
    jnp.asarray([lr for _, lr in cells], jnp.float32),
  )
  program = _program(depth, json.dumps(cfg, sort_keys=True))
  shared = (
    model.branch_index(cfg, activation),
    jnp.float32(model.gains(settings.celu_alpha)[activation]),
  )
  # (cells, networks, ...) -> (cells * networks, ...), as before.
  out = jax.tree.map(
    lambda a: a.reshape(n, *a.shape[2:]),
    model.by_cell(
      program,
      own,
      shared,
      lower='--splits, --seeds, --batch, --width or --depths',
    ),
  )
  del out['born_dead']
  shared = out.pop('slope_shared')
  if activation == 'prelu':
    out['slope_mean'], out['slope_std'] = shared, np.zeros_like(shared)
  elif activation != 'prelu_channel':
    del out['slope_mean'], out['slope_std']
  records = []
  for c, (ds, _) in enumerate(cells):
    record = {'train_size': int(by_split[0]['train_size'][datasets.index(ds)])}
    for name, value in out.items():
      part = value[c * per_cell : (c + 1) * per_cell].astype(np.float64)
      part = part.reshape(len(splits), seeds, *part.shape[1:])
      record[name] = np.round(part, 6).tolist()
    records.append(record)
  return records


def groups(settings: Settings, version: int) -> list[tuple]:
  """compare_variants' groups: (label, settings, compute).

  One group per (block, depth, activation, pad group), computed by
  `train_cells`. A cell's settings hold `Settings.config`, its dataset,
  activation, depth, optimizer and learning rate, the versions of
  scikit-learn (it splits every dataset) and of the package that carries
  the dataset, and `version`. A cell two blocks both name (the same
  optimizer, rate and depth) is trained once, in the first.
  """
  config = settings.config()
  shared = {
    'config': config,
    'sklearn': importlib.metadata.version('scikit-learn'),
    'version': version,
  }
  seen, out = set(), []
  for block in blocks(settings):
    opt = block['optimizer']
    for depth in block['depths']:
      for act in settings.activations:
        for pad, members in data.PAD_GROUPS.items():
          cells = [
            (ds, lr)
            for ds in settings.datasets
            if ds in members
            for lr in block['learning_rates']
            if (ds, act, depth, opt, lr) not in seen
          ]
          if not cells:
            continue
          seen.update((ds, act, depth, opt, lr) for ds, lr in cells)
          keyed = [
            {
              **shared,
              'dataset': ds,
              'activation': act,
              **model.source_settings(act),
              'depth': depth,
              'optimizer': opt,
              'learning_rate': lr,
              **(
                {'carrier': importlib.metadata.version(data.CARRIERS[ds])}
                if ds in data.CARRIERS
                else {}
              ),
            }
            for ds, lr in cells
          ]
          compute = functools.partial(
            train_cells, settings, opt, act, depth, cells
          )
          label = f'{block["name"]} {opt} {act} depth {depth} {pad}'
          out.append((label, keyed, compute))
  return out
