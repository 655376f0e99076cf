"""The data of the experiments: bundled UCI sets, and a teacher task.

scikit-learn's four UCI sets ship inside its wheel and load offline; the
teacher task is generated in code. Nothing is downloaded.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

DATASETS = ('digits', 'breast_cancer', 'wine', 'iris')


def load_dataset(name: str, split_seed: int) -> dict[str, np.ndarray]:
  """A bundled scikit-learn dataset, split 60/20/20 and standardized.

  The split is stratified by class and fixed by `split_seed`; the mean and
  standard deviation come from the training part only (constant features
  are centred and left unscaled).
  """
  from sklearn import datasets, model_selection

  x, y = getattr(datasets, f'load_{name}')(return_X_y=True)
  x_rest, x_test, y_rest, y_test = model_selection.train_test_split(
    x, y, test_size=0.2, stratify=y, random_state=split_seed
  )
  x_train, x_val, y_train, y_val = model_selection.train_test_split(
    x_rest, y_rest, test_size=0.25, stratify=y_rest, random_state=split_seed
  )
  mean, std = x_train.mean(0), x_train.std(0)
  std = np.where(std > 0, std, 1.0)
  scale = lambda v: ((v - mean) / std).astype(np.float32)
  return {
    'x_train': scale(x_train),
    'y_train': y_train.astype(np.int32),
    'x_val': scale(x_val),
    'y_val': y_val.astype(np.int32),
    'x_test': scale(x_test),
    'y_test': y_test.astype(np.int32),
    'classes': int(y.max()) + 1,
  }


PARTS = ('train', 'val', 'test')


def _pad_rows(a: np.ndarray, n: int) -> np.ndarray:
  return np.pad(a, [(0, n - a.shape[0])] + [(0, 0)] * (a.ndim - 1))


def pad_datasets(
  selected: Sequence[str], split_seed: int
) -> dict[str, np.ndarray]:
  """The datasets stacked on a leading axis, zero-padded to common shapes.

  One compiled program then trains every dataset at once (`vmap`), which
  divides compile time by the number of datasets. The padded shapes are
  the largest over all of DATASETS, not just the selected ones, so a
  dataset's results do not depend on which others run beside it. Padded
  features are zero, padded classes are masked out of the logits, padded
  rows are never sampled and carry zero weight in every metric.
  """
  every = {ds: load_dataset(ds, split_seed) for ds in DATASETS}
  features = max(d['x_train'].shape[1] for d in every.values())
  classes = max(d['classes'] for d in every.values())
  rows = {p: max(len(d[f'y_{p}']) for d in every.values()) for p in PARTS}
  out = {
    'x_train': [],
    'y_train': [],
    'train_size': [],
    'inputs': [],
    'class_mask': [],
    'x_eval': [],
    'y_eval': [],
    'part_eval': [],
  }
  for d in (every[ds] for ds in selected):
    x = {
      p: np.pad(d[f'x_{p}'], [(0, 0), (0, features - d['x_train'].shape[1])])
      for p in PARTS
    }
    out['x_train'].append(_pad_rows(x['train'], rows['train']))
    out['y_train'].append(_pad_rows(d['y_train'], rows['train']))
    out['train_size'].append(len(d['y_train']))
    out['inputs'].append(d['x_train'].shape[1])
    out['class_mask'].append(np.arange(classes) < d['classes'])
    out['x_eval'].append(
      np.concatenate([_pad_rows(x[p], rows[p]) for p in PARTS])
    )
    out['y_eval'].append(
      np.concatenate([_pad_rows(d[f'y_{p}'], rows[p]) for p in PARTS])
    )
    # Which part each evaluation row belongs to; -1 for padding.
    out['part_eval'].append(
      np.concatenate(
        [
          np.where(np.arange(rows[p]) < len(d[f'y_{p}']), i, -1)
          for i, p in enumerate(PARTS)
        ]
      ).astype(np.int32)
    )
  return {k: np.stack(v) for k, v in out.items()}


@functools.cache
def padded(datasets: tuple[str, ...], split_seed: int) -> dict[str, np.ndarray]:
  """`pad_datasets`, computed once per process for each selection."""
  return pad_datasets(datasets, split_seed)


def train_sizes(datasets: Sequence[str], split_seed: int) -> dict[str, int]:
  """Each dataset's number of training examples."""
  sizes = padded(tuple(datasets), split_seed)['train_size'].tolist()
  return dict(zip(datasets, sizes, strict=True))


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
  import jax
  import jax.numpy as jnp

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
