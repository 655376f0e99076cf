r"""Dying ReLU: what kills units, and what saves them, measured in training.

Claims under test, each reported with its seed spread:

1. A high learning rate raises the dead fraction of ReLU.
2. Bias -1 leaves whole layers dead from the start.
3. A small positive bias (0.01) helps. CS231n calls this unclear; we report
   what we measure.
4. Leaky, parametric, randomized and exponential variants have no dead
   units. For them we count units that are *never positive* on the probe
   set; unlike dead ReLUs, these still pass gradient.

MLPs (`--depths` x `--widths`, initialised by `jaxrelu.initializers` for
their activation, biases set to each of `--bias_inits`) are trained with
optax (`--optimizer`, `--learning_rates`) on a classification task labelled
by a seeded random teacher network: data generated in code, nothing
downloaded. Learning rates, bias inits and seeds share shapes, so they run
vectorized (`vmap`) in one compiled program per (activation, depth, width,
optimizer) group. When several devices are present, the vectorized axis is
spread over them.

The model is `experiments.model`'s MLP and trainer (plain SGD or Adam); a
cell is one (activation, depth, width, learning rate, bias init) over all
seeds, stored by `experiments.store` under a key of every setting, so a
rerun resumes and `--num_tasks`/`--report_only` split the sweep (see
`experiments.sweep`). Outputs: `cells/`, `cells.csv`, `summary.json`,
`report.md`, `dead_heatmaps.png` and `dead_vs_step.png`. Exit status: 0
when claims 1, 2 and 4 held, 1 when one did not, 2 for a usage error.

Usage (from the repo root; `jaxrelu-dying-relu` once installed):

  python -m experiments.dying_relu
  python -m experiments.dying_relu --learning_rates=0.01,1.0 --steps=1000
"""

from __future__ import annotations

import functools
import json
import math
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments import cli, data, model, plots, sweep
from experiments import report as report_lib

ACTIVATIONS = ('relu', 'leaky_relu', 'prelu', 'rrelu', 'elu', 'selu', 'celu')
OPTIMIZERS = ('sgd', 'adam')

_LRS = flags.DEFINE_list(
  'learning_rates', ['0.01', '0.1', '0.3', '1.0'], 'LRs.'
)
_BIASES = flags.DEFINE_list('bias_inits', ['-1', '0', '0.01'], 'Bias inits.')
_ACTS = flags.DEFINE_list('activations', list(ACTIVATIONS), 'Activations.')
_DEPTHS = flags.DEFINE_list('depths', ['4'], 'Hidden layers.')
_WIDTHS = flags.DEFINE_list('widths', ['128'], 'Units per hidden layer.')
_OPTIMIZER = flags.DEFINE_string('optimizer', 'sgd', f'One of {OPTIMIZERS}.')
_STEPS = flags.DEFINE_integer('steps', 300, 'Training steps.')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds per cell.')
_BATCH = flags.DEFINE_integer('batch', 128, 'Minibatch size.')
_RECORD_EVERY = flags.DEFINE_integer('record_every', 25, 'Steps per record.')
_SEED = flags.DEFINE_integer('seed', 0, 'Base PRNG seed.')
_OUTPUT_DIR = flags.DEFINE_string(
  'output_dir', 'results/dying_relu', 'Where results go.'
)

# Bumped when the computation of a cell changes, so old cells are not reused.
VERSION = 2


def seed_tag(activation, depth, width, optimizer, lr, bias) -> str:
  """What a cell's seed keys are folded from (not its store key)."""
  return json.dumps([activation, depth, width, optimizer, lr, bias])


def _stable_int(text: str) -> int:
  return zlib.crc32(text.encode())


def run_group(
  base_seed,
  dataset,
  lrs,
  biases,
  seeds,
  *,
  activation,
  depth,
  width,
  optimizer,
  steps,
  batch,
  record_every,
):
  """All (lr, bias, seed) of one group, vectorized; per-cell records."""
  grid = [(lr, b) for lr in lrs for b in biases]
  lr_arr = jnp.array([g[0] for g in grid], jnp.float32)
  bias_arr = jnp.array([g[1] for g in grid], jnp.float32)
  keys = jnp.stack(
    [
      jax.random.split(
        jax.random.fold_in(
          jax.random.key(base_seed),
          _stable_int(seed_tag(activation, depth, width, optimizer, lr, b)),
        ),
        seeds,
      )
      for lr, b in grid
    ]
  )  # (cells, seeds)
  cfg = {
    'width': width,
    'steps': steps,
    'batch': batch,
    'record_every': record_every,
    'optimizer': optimizer,
    'momentum': 0.0,  # plain SGD
    'alpha_dropout_rate': 0.0,
    'celu_alpha': 1.0,
    'parts': data.TEACHER_PARTS,
    'dead_part': 0,  # units are judged on the probe set
  }
  out = model.train_grid(
    keys,
    lr_arr,
    bias_arr,
    dataset,
    activation=activation,
    depth=depth,
    cfg=cfg,
  )
  records = []
  for i in range(len(grid)):
    dead = out['dead'][i]  # (seeds, records + 1, depth)
    loss = out['probe_loss'][i][:, 1:]  # after each chunk of training
    # A seed diverged if its loss went non-finite; its dead fraction then
    # measures divergence, not dying units.
    ok = np.isfinite(loss).all(-1)
    final_dead = dead[ok, -1].mean(-1) if ok.any() else np.full(1, np.nan)
    records.append(
      {
        'dead_per_layer': dead.tolist(),
        'accuracy': out['probe_acc'][i].tolist(),
        'loss': loss.tolist(),
        'born_dead': out['born_dead'][i][:, 0].tolist(),
        # Learned PReLU slope of each hidden layer, per seed.
        'final_slopes': (
          out['slope_shared'][i][:, -1].tolist()
          if activation == 'prelu'
          else []
        ),
        'finite_seeds': ok.tolist(),
        'final_dead_mean': float(final_dead.mean()),
        'final_dead_std': float(final_dead.std()),
        'initial_dead_mean': float(dead[:, 0].mean()),
        'initial_full_layer_dead': float((dead[:, 0] == 1.0).any(-1).mean()),
        'final_accuracy_mean': float(out['probe_acc'][i][:, -1].mean()),
        'final_loss_mean': float(loss[ok, -1].mean()) if ok.any() else None,
        'diverged': int((~ok).sum()),
      }
    )
  return records


# ----------------------------------------------------------------------------
# Report.


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
  """Mean and standard error of the per-seed difference a - b."""
  d = np.asarray(a) - np.asarray(b)
  se = d.std(ddof=1) / math.sqrt(d.size) if d.size > 1 else math.nan
  return float(d.mean()), float(se)


def _final_dead(cell) -> np.ndarray:
  """Per-seed final dead fraction (mean over layers), finite seeds only."""
  ok = np.asarray(cell['finite_seeds'])
  return np.asarray(cell['dead_per_layer'])[ok, -1].mean(-1)


def _stable(cell) -> bool:
  """A cell counts for the claims only if no seed diverged."""
  return cell is not None and cell['diverged'] == 0


def report(cells: dict[str, dict], flag: dict) -> tuple[str, dict]:
  """Markdown report: each claim with its numbers, and plain verdicts.

  Cells where training diverged (non-finite loss) in any seed are listed
  and left out of the claims: their dead fraction measures divergence.
  """
  lrs = sorted(float(v) for v in flag['learning_rates'])
  biases = sorted(float(v) for v in flag['bias_inits'])
  lines, verdicts = [], {}

  def get(act, lr, b, depth, width):
    return cells.get((act, depth, width, lr, b))

  for depth in [int(d) for d in flag['depths']]:
    for width in [int(w) for w in flag['widths']]:
      tag = f'depth {depth}, width {width}, {flag["optimizer"]}'
      lines.append(f'## {tag}\n')
      diverged = sorted(
        (act, lr, b)
        for act in flag['activations']
        for lr in lrs
        for b in biases
        if (c := get(act, lr, b, depth, width)) and c['diverged']
      )
      if diverged:
        lines.append(
          'Diverged (non-finite loss in some seed; left out of the claims): '
          + ', '.join(f'{a} lr {lr:g} bias {b:g}' for a, lr, b in diverged)
          + '.\n'
        )
      # (1) high learning rate, among the learning rates that trained.
      b0 = 0.0 if 0.0 in biases else biases[len(biases) // 2]
      stable = [lr for lr in lrs if _stable(get('relu', lr, b0, depth, width))]
      if len(stable) > 1:
        lo = get('relu', stable[0], b0, depth, width)
        hi = get('relu', stable[-1], b0, depth, width)
        m, se = _paired(_final_dead(hi), _final_dead(lo))
        held = m > 2 * se if math.isfinite(se) else m > 0
        verdicts[f'{tag}: high lr raises ReLU dead fraction'] = bool(held)
        lines.append(
          f'1. **High learning rate.** ReLU, bias {b0:g}: dead fraction '
          f'{lo["final_dead_mean"]:.3f} +- {lo["final_dead_std"]:.3f} at lr '
          f'{stable[0]:g} vs {hi["final_dead_mean"]:.3f} +- '
          f'{hi["final_dead_std"]:.3f} at lr {stable[-1]:g}, the highest '
          f'that did not diverge (mean +- std over {lo["seeds"]} seeds; '
          f'paired difference {m:+.3f} +- {se:.3f} SE). Claim '
          f'{"HELD" if held else "DID NOT HOLD"}.'
        )
      # (2) negative bias, at initialisation.
      neg = [b for b in biases if b < 0]
      if neg and (c := get('relu', lrs[0], neg[0], depth, width)):
        frac = c['initial_full_layer_dead']
        held = frac > 0.5
        verdicts[f'{tag}: negative bias leaves whole layers dead'] = held
        lines.append(
          f'2. **Bias {neg[0]:g}.** At initialisation a whole ReLU layer is '
          f'dead in {round(frac * c["seeds"])} of {c["seeds"]} seeds (mean '
          f'dead fraction {c["initial_dead_mean"]:.3f}; born dead in '
          f'{np.mean(c["born_dead"]):.0%}). Claim '
          f'{"HELD in most seeds" if held else "DID NOT HOLD in most seeds"}.'
        )
      # (3) bias +0.01 against 0, paired by seed.
      if 0.01 in biases and 0.0 in biases:
        parts, helped, hurt = [], 0, 0
        for lr in lrs:
          a = get('relu', lr, 0.01, depth, width)
          z = get('relu', lr, 0.0, depth, width)
          if _stable(a) and _stable(z):
            m, se = _paired(_final_dead(a), _final_dead(z))
            sig = math.isfinite(se) and abs(m) > 2 * se
            helped += sig and m < 0
            hurt += sig and m > 0
            parts.append(f'lr {lr:g}: {m:+.3f} +- {se:.3f}')
        if helped and not hurt:
          verdict = 'HELPED'
        elif hurt and not helped:
          verdict = 'HURT'
        else:
          verdict = 'NO CLEAR EFFECT'
        verdicts[f'{tag}: bias 0.01 effect'] = verdict
        lines.append(
          '3. **Bias +0.01 vs 0** (paired change in the ReLU dead fraction, '
          'mean +- SE): ' + '; '.join(parts) + f'. Verdict: {verdict}.'
        )
      # (4) the variants, over the cells that trained.
      rows, all_zero = [], True
      for act in [a for a in flag['activations'] if a != 'relu']:
        trained = [
          c
          for lr in lrs
          for b in biases
          if _stable(c := get(act, lr, b, depth, width))
        ]
        if not trained:
          rows.append(f'{act}: every cell diverged')
          continue
        worst = max(c['final_dead_mean'] for c in trained)
        all_zero &= worst == 0.0
        rows.append(f'{act} {worst:.3f}')
      if rows:
        relu = [
          c['final_dead_mean']
          for lr in lrs
          for b in biases
          if _stable(c := get('relu', lr, b, depth, width))
        ]
        verdicts[f'{tag}: variants have no never-positive units'] = all_zero
        lines.append(
          '4. **Variants.** Worst final never-positive fraction over the '
          f'cells that trained: {", ".join(rows)} (ReLU dead, worst: '
          f'{max(relu or [math.nan]):.3f}). Claim "no dead units" '
          f'{"HELD" if all_zero else "DID NOT HOLD"}; never-positive units '
          'of these variants still pass gradient through their slope.'
        )
      lines.append('')
  return '\n'.join(lines) + '\n', verdicts


def index(outcome: sweep.Outcome) -> dict[tuple, dict]:
  """Stored cells by (activation, depth, width, learning rate, bias)."""
  return {
    (
      c['activation'],
      c['depth'],
      c['width'],
      c['learning_rate'],
      c['bias_init'],
    ): c
    for c in outcome.results()
  }


CSV_FIELDS = (
  'activation',
  'depth',
  'width',
  'optimizer',
  'learning_rate',
  'bias_init',
  'seeds',
  'final_dead_mean',
  'final_dead_std',
  'initial_dead_mean',
  'initial_full_layer_dead',
  'final_accuracy_mean',
  'final_loss_mean',
  'diverged',
)


def write_outputs(outcome: sweep.Outcome, flag: dict) -> dict:
  """Report, CSV, summary and plots of the stored cells; the verdicts."""
  out = flag['output_dir']
  cells = index(outcome)
  text, verdicts = report(cells, flag)
  text = sweep.missing_text(outcome) + text
  report_lib.write_text(f'{out}/report.md', '# Dying ReLU\n\n' + text)
  report_lib.write_csv(f'{out}/cells.csv', list(cells.values()), CSV_FIELDS)
  cells_per_group = len(flag['learning_rates']) * len(flag['bias_inits'])
  devices = jax.device_count()
  meta = report_lib.provenance({k: v for k, v in flag.items() if k != 'task'})
  meta['cells_sharded_over_devices'] = (
    devices if devices > 1 and cells_per_group % devices == 0 else 1
  )
  report_lib.write_json(
    f'{out}/summary.json',
    {'meta': meta, 'missing_cells': len(outcome.missing), 'verdicts': verdicts},
  )
  _plots(cells, flag)
  print(text)
  return verdicts


def _plots(cells, flag):
  out = flag['output_dir']
  lrs, biases = sorted(flag['learning_rates']), sorted(flag['bias_inits'])
  depth, width = flag['depths'][0], flag['widths'][0]
  grids = {}
  for act in flag['activations']:
    grids[act] = np.full((len(biases), len(lrs)), np.nan)
    for i, b in enumerate(biases):
      for j, lr in enumerate(lrs):
        if c := cells.get((act, depth, width, lr, b)):
          grids[act][i, j] = c['final_dead_mean']
  plots.heatmaps(
    grids,
    [f'{v:g}' for v in lrs],
    [f'{v:g}' for v in biases],
    f'{out}/dead_heatmaps.png',
    xlabel='learning rate',
    ylabel='bias init',
    label='final dead fraction',
    title='final dead (ReLU) / never-positive (variants) fraction, mean over '
    'finite seeds; white: every seed diverged',
  )
  lines = []
  for i, lr in enumerate(lrs):
    for style, b in zip(('-', '--', ':', '-.'), biases, strict=False):
      if c := cells.get(('relu', depth, width, lr, b)):
        dead = np.asarray(c['dead_per_layer'], np.float64).mean(-1)
        mean, last = plots.while_finite(dead, c['loss'])
        steps = np.arange(dead.shape[1]) * c['record_every']
        # A diverged seed stops where its loss went non-finite: a cross at
        # its last finite dead fraction, never a climb to "all dead".
        gone = last < dead.shape[1] - 1
        stops = (steps[last[gone]], dead[gone, last[gone]])
        label = f'lr {lr:g}, bias {b:g}'
        lines.append(
          plots.Line(steps, mean, label, f'C{i}', style, stops=stops)
        )
  panel = plots.Panel(
    lines,
    title='x: a seed diverged (it leaves the mean from there on)',
    xlabel='step',
    ylabel='ReLU dead fraction (mean over layers, finite seeds)',
  )
  plots.figure([panel], f'{out}/dead_vs_step.png', size=(6, 4))


def check_flags() -> dict:
  """Every flag, checked before any compute; UsageError on the first bad."""
  flag = {
    'activations': cli.choices('activations', _ACTS.value, ACTIVATIONS),
    'learning_rates': cli.floats(
      'learning_rates', _LRS.value, low=0, low_open=True
    ),
    'bias_inits': cli.floats('bias_inits', _BIASES.value),
    'depths': cli.integers('depths', _DEPTHS.value),
    'widths': cli.integers('widths', _WIDTHS.value),
    'optimizer': cli.choices('optimizer', [_OPTIMIZER.value], OPTIMIZERS)[0],
    'steps': _STEPS.value,
    'seeds': _SEEDS.value,
    'batch': _BATCH.value,
    'record_every': _RECORD_EVERY.value,
    'seed': _SEED.value,
  }
  cli.at_least(flag, ('seeds', 'batch'))
  cli.record_schedule(flag)
  return {**flag, **sweep.placement(_OUTPUT_DIR.value)}


def groups(flag: dict) -> list[sweep.Group]:
  """One group per (activation, depth, width): its lr x bias grid."""
  shared = {
    k: flag[k]
    for k in ('optimizer', 'steps', 'seeds', 'batch', 'record_every', 'seed')
  }
  shared['data'] = [
    data.TEACHER_INPUTS,
    data.TEACHER_CLASSES,
    data.TEACHER_TRAIN,
    data.TEACHER_PROBE,
  ]
  shared['version'] = VERSION
  lrs, biases = flag['learning_rates'], flag['bias_inits']
  out = []
  for act in flag['activations']:
    for depth in flag['depths']:
      for width in flag['widths']:
        settings = [
          {
            **shared,
            'activation': act,
            'depth': depth,
            'width': width,
            'learning_rate': lr,
            'bias_init': b,
          }
          for lr in lrs
          for b in biases
        ]
        compute = functools.partial(_compute, flag, act, depth, width)
        out.append(
          sweep.Group(f'{act} depth {depth} width {width}', settings, compute)
        )
  return out


@functools.cache
def _dataset(seed: int):
  return data.teacher_dataset(seed)


def _compute(flag: dict, act: str, depth: int, width: int) -> list[dict]:
  return run_group(
    flag['seed'],
    _dataset(flag['seed']),
    flag['learning_rates'],
    flag['bias_inits'],
    flag['seeds'],
    activation=act,
    depth=depth,
    width=width,
    optimizer=flag['optimizer'],
    steps=flag['steps'],
    batch=flag['batch'],
    record_every=flag['record_every'],
  )


def main(argv: Sequence[str]) -> int:
  cli.no_arguments(argv)
  flag = check_flags()
  outcome = sweep.run_binary('dying_relu', flag, groups(flag))
  if outcome is None:
    return cli.EXIT_HELD
  verdicts = write_outputs(outcome, flag)
  # Claim 3 is reported as measured (HELPED / HURT / NO CLEAR EFFECT): the
  # literature calls it unclear, so it decides no exit status.
  held = all(v for v in verdicts.values() if isinstance(v, bool))
  return cli.EXIT_HELD if held else cli.EXIT_NOT_HELD


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'dying_relu')


if __name__ == '__main__':
  cli_main()
