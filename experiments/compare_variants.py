r"""The ReLU variants compared on real data: four claims from the literature.

Claims under test, each with its seed spread and a paired test:

1. ELU converges faster and generalizes better than ReLU (Clevert et al.
   2016).
2. PReLU beats a fixed leaky slope, and its learned slopes shrink with depth
   (He et al. 2015).
3. RReLU regularizes on small data: a smaller train-test gap and a better
   test accuracy than a fixed leaky slope (Xu et al. 2015).
4. SELU trains deep plain feed-forward nets, where the others need
   normalization (Klambauer et al. 2017).

Data: scikit-learn's bundled UCI sets (digits, breast cancer, wine, iris),
which ship inside the wheel and load offline. Each is split once, stratified
60/20/20 into train/validation/test by `--split_seed`, and standardized with
the training statistics. Nothing is downloaded.

Models: plain MLPs (no normalization, no skip connections) with `--depths`
hidden layers of `--width` units. Hidden weights are truncated-normal
variance scaling with each activation's `jaxrelu.initializers.gain` (what
`initializers.for_activation` draws: He for the rectifiers, the unit-scale
rule for elu/celu, LeCun for selu); LeCun-normal read-out; zero biases.
`selu` gets alpha dropout (`--alpha_dropout_rate`) after every hidden
layer, as Klambauer et al. used it; `selu_no_dropout` is the same network
without it, which separates SELU from its regularizer. PReLU slopes start
at 0.25 (He et al.), one per layer (`prelu`) or per unit (`prelu_channel`).

Budget: every activation gets the same optimizer (`--optimizer`, default
Adam), learning rate, steps and minibatches. One compiled program per depth
trains every activation (`experiments.model`: the activation is an unbatched
`lax.switch` index) on every dataset and seed at once (`vmap`; datasets
padded to common shapes by `data.pad_datasets`). Hidden layers run under
`lax.scan`. Seed s draws the same initial noise and the same minibatches
for every activation (its key depends on dataset, depth and seed only), so
comparisons between activations are paired.

Measured per seed, every `--record_every` steps: loss and accuracy on the
full train, validation and test sets (evaluation mode), and the fraction of
hidden units never positive on the training set (dead, for relu and relu6).
Reported: test accuracy at the checkpoint of least validation loss (early
stopping; the headline), final test accuracy, the train-test gap, steps to
reach `--target_loss` on the training set, dead fractions, learned PReLU
slopes per layer. Each claim is decided by a two-sided Wilcoxon signed-rank
test on the paired per-seed differences, pooled over datasets and depths
(alpha 0.05, no correction for multiple tests; every p-value is printed).

A group is one (activation, depth) over all datasets; a cell is one
dataset of it, stored by `experiments.store` under a key of every setting,
so a rerun resumes and `--num_tasks`/`--report_only` split the sweep.
Outputs: `cells/`, `results.csv`, `summary.json`, `report.md`,
`accuracy_vs_depth.png`, `loss_curves.png` and `prelu_slopes.png`. Exit
status: 0 when every claim was SUPPORTED, 1 otherwise, 2 for a usage
error.

Usage (from the repo root; `jaxrelu-compare-variants` once installed):

  python -m experiments.compare_variants
  python -m experiments.compare_variants --datasets=iris \
      --activations=relu,elu --depths=2,8
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from absl import flags

from experiments import cli, data, model, plots, stats, sweep
from experiments import report as report_lib
from experiments.model import ACTIVATIONS, OPTIMIZERS, PRELU_INIT

# Claim 3 is about small data: training sets under this many examples.
SMALL_TRAIN = 1000
ALPHA = 0.05
# Bumped when the computation of a cell changes, so old cells are not reused.
VERSION = 1

_ACTS = flags.DEFINE_list(
  'activations', list(ACTIVATIONS), f'Any of {",".join(ACTIVATIONS)}.'
)
_DROPOUT = flags.DEFINE_float(
  'alpha_dropout_rate', 0.05, 'Alpha dropout rate for selu, in [0, 1).'
)
_BATCH = flags.DEFINE_integer('batch', 64, 'Minibatch size.')
_CELU_ALPHA = flags.DEFINE_float('celu_alpha', 1.0, 'CELU alpha, > 0.')
_DATASETS = flags.DEFINE_list(
  'datasets', list(data.DATASETS), f'Any of {",".join(data.DATASETS)}.'
)
_DEPTHS = flags.DEFINE_list('depths', ['2', '8', '16', '32'], 'Hidden layers.')
_LR = flags.DEFINE_float('learning_rate', 0.001, 'Learning rate for all.')
_OPTIMIZER = flags.DEFINE_string(
  'optimizer', 'adam', f'One of {OPTIMIZERS} (sgd: momentum 0.9).'
)
_OUTPUT_DIR = cli.output_dir_flag('compare_variants', __name__)
_RECORD_EVERY = flags.DEFINE_integer('record_every', 20, 'Steps per record.')
_SEED = flags.DEFINE_integer('seed', 0, 'Base PRNG seed for training.')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds per group (vectorized).')
_SPLIT_SEED = flags.DEFINE_integer('split_seed', 0, 'Seed of the data split.')
_STEPS = flags.DEFINE_integer('steps', 400, 'Training steps.')
_TARGET = flags.DEFINE_float(
  'target_loss', 0.1, 'Training loss that counts as converged.'
)
_WIDTH = flags.DEFINE_integer('width', 32, 'Units per hidden layer.')


def claims(table: stats.CurveTable) -> report_lib.Claims:
  """Each claim's paired tests and verdict, in the report's words."""
  acts, c = list(table.flag['activations']), report_lib.Claims(ALPHA)
  # Claim 3 on the small datasets; claim 4 at the deepest depth only.
  small, deep = table.smaller_than(SMALL_TRAIN), table.depths[-1:]
  c.add('### 1. ELU vs ReLU (Clevert et al. 2016)\n')
  if {'elu', 'relu'} <= set(acts):
    c.paired(
      'elu_converges_faster',
      table.test('elu', 'relu', 'steps_to_target'),
      -1,
      f'Steps to training loss {table.flag["target_loss"]:g}, ELU - ReLU '
      '(never reached counts as one record past the budget)',
    )
    c.paired(
      'elu_generalizes_better',
      table.test('elu', 'relu', 'test_acc'),
      +1,
      'Early-stopped test accuracy, ELU - ReLU',
    )
  else:
    c.add('- Needs elu and relu in --activations.')
  c.add('\n### 2. PReLU vs a fixed leaky slope (He et al. 2015)\n')
  variants = [a for a in ('prelu', 'prelu_channel') if a in acts]
  for variant in variants if 'leaky_relu' in acts else []:
    c.paired(
      f'{variant}_beats_leaky_relu',
      table.test(variant, 'leaky_relu', 'test_acc'),
      +1,
      f'Early-stopped test accuracy, {variant} (slopes learned from '
      f'{PRELU_INIT}) - leaky_relu (slope 0.01)',
    )
  for variant in variants:
    if halves := table.slope_halves(variant, PRELU_INIT):
      moved = halves[2]
      c.paired(
        f'{variant}_slopes_shrink_with_depth',
        stats.paired_test(*halves[:2]),
        -1,
        f'Learned {variant} slope, deeper half - shallower half of each '
        'network (depths >= 4; the slopes moved a mean '
        f'{moved.mean():.3f}, at most {moved.max():.3f}, from their initial '
        f'{PRELU_INIT})',
      )
  c.add('\n### 3. RReLU on small data (Xu et al. 2015)\n')
  if {'rrelu', 'leaky_relu'} <= set(acts) and small:
    c.add(
      f'Small datasets (under {SMALL_TRAIN} training examples): '
      f'{", ".join(small)}. Measured at the end of training, without early '
      'stopping (itself a regularizer). The comparator is leaky_relu '
      '(slope 0.01); RReLU evaluates with slope (1/8 + 1/3) / 2.\n'
    )
    c.paired(
      'rrelu_smaller_gap',
      table.test('rrelu', 'leaky_relu', 'gap', datasets=small),
      -1,
      'Train - test accuracy gap, RReLU - leaky_relu',
    )
    c.paired(
      'rrelu_better_test_accuracy',
      table.test('rrelu', 'leaky_relu', 'final_test_acc', datasets=small),
      +1,
      'Final test accuracy, RReLU - leaky_relu',
    )
  else:
    c.add('- Needs rrelu, leaky_relu and a small dataset.')
  c.add(
    f'\n### 4. SELU in deep plain nets (Klambauer et al. 2017), depth '
    f'{deep[0]}\n'
  )
  selus = [a for a in ('selu', 'selu_no_dropout') if a in acts]
  others = [a for a in acts if a not in ('selu', 'selu_no_dropout')]
  for selu in selus:
    tests = {o: table.test(selu, o, 'test_acc', depths=deep) for o in others}
    for other, t in tests.items():
      c.add(
        f'- Early-stopped test accuracy, {selu} - {other}: {stats.describe(t)}.'
      )
    r = stats.against_all(tests, 'relu', ALPHA, depth=deep[0])
    c.verdicts[f'{selu}_trains_deep_nets'] = r
    c.add(
      f'- **{selu}**: SUPPORTED if it beats relu at depth {deep[0]} and '
      'nothing beats it there; CONTRADICTED if anything beats it. It beats: '
      f'{", ".join(r["beats"]) or "none"}; beaten by: '
      f'{", ".join(r["beaten_by"]) or "none"}. **{r["verdict"]}.**\n'
    )
  if len(selus) == 2:
    c.add(
      '- selu and selu_no_dropout are the same network and initialization; '
      'they differ only by alpha dropout in training.'
    )
  if not selus or not others:
    c.add('- Needs selu or selu_no_dropout, and another activation.')
  return c


def check_flags() -> dict:
  """Every flag, checked before any compute; UsageError on the first bad."""
  flag = {
    'datasets': cli.choices('datasets', _DATASETS.value, data.DATASETS),
    'activations': cli.choices('activations', _ACTS.value, ACTIVATIONS),
    'depths': cli.integers('depths', _DEPTHS.value),
    **cli.values(_WIDTH, _SEEDS, _STEPS, _BATCH, _RECORD_EVERY),
    'learning_rate': cli.positive('learning_rate', _LR.value),
    'optimizer': cli.choices('optimizer', [_OPTIMIZER.value], OPTIMIZERS)[0],
    'target_loss': cli.positive('target_loss', _TARGET.value),
    'alpha_dropout_rate': cli.fraction('alpha_dropout_rate', _DROPOUT.value),
    'celu_alpha': cli.positive('celu_alpha', _CELU_ALPHA.value),
    **cli.values(_SPLIT_SEED, _SEED),
  }
  cli.record_schedule(flag, 'width', 'seeds', 'batch')
  return {**flag, **sweep.placement(_OUTPUT_DIR.value)}


def write(flag: dict, outcome: sweep.Outcome) -> dict:
  """Report, CSV, summary and figures of the stored cells; the verdicts."""
  flag['train_sizes'] = data.train_sizes(flag['datasets'], flag['split_seed'])
  table = stats.CurveTable(outcome.by('dataset', 'activation', 'depth'), flag)
  c = claims(table)
  text = report_lib.write_variants(outcome, table, c.lines, c.verdicts)
  plots.variant_figures(table)
  print(text)
  return c.verdicts


def main(argv: Sequence[str]) -> int:
  groups = functools.partial(model.dataset_groups, version=VERSION)
  verdicts = sweep.run_and_report(
    argv, 'compare_variants', check_flags, groups, write
  )
  held = verdicts is None or all(
    v['verdict'] == 'SUPPORTED' for v in verdicts.values()
  )
  return cli.EXIT_HELD if held else cli.EXIT_NOT_HELD


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'compare_variants')


if __name__ == '__main__':
  cli_main()
