r"""Does SELU self-normalize? Deep stacks of Dense + activation, against theory.

The claim (Klambauer et al. 2017): with SELU, LeCun-normal weights (variance
1/n) and standardized inputs, activations keep mean 0 and variance 1 through
arbitrarily deep stacks, and perturbed statistics are pulled back to (0, 1).

For every configuration this runs `--seeds` independent stacks (vmap) of
`--depth` layers (lax.scan, so compile time does not grow with depth) on a
batch of N(input_mean, input_var) inputs, and records per layer:

- mean and std over all units and samples, and the spread (std over units)
  of the per-unit means and stds;
- the prediction from iterating the theory's moment map
  (`jaxrelu.selu_theory`; quadrature split at the kinks for the others);
- the backward pass: the squared norm of d<h_L, r>/dh_l for a random probe r,
  against the predicted growth tau * E[f'(z)^2] per layer (1.0716 for SELU).

Each row's verdict is `jaxrelu.self_normalization.check`'s: PASS, FAIL, or
NOT TESTABLE when the run could not have seen a `--detectable` error in
lambda or the weight variance; the deviations it could see are printed
under the verdict. --scenarios adds negative controls, recovery from
perturbed inputs, and alpha versus standard dropout.

Exit status 0 when the claim (SELU under the paper's conditions) is
SUPPORTED, 1 when it is CONTRADICTED or NOT TESTABLE, 2 for a usage
error. Each configuration is a cell of `experiments.store` (a rerun
resumes). `--distributed` runs one computation over several hosts: the
batch is sharded over every global device and process 0 writes.

Usage (from the repo root; `jaxrelu-selu-deep-stack` once installed):

  python -m experiments.selu_deep_stack
  python -m experiments.selu_deep_stack --depth=1000 --width=256 --seeds=8
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
from absl import flags

from experiments import cli, sweep
from experiments.selu_deep_stack import stack as selu_stack
from experiments.selu_deep_stack.settings import Settings
from experiments.selu_deep_stack.stack import (
  ACTIVATIONS,
  DROPOUTS,
  DTYPES,
  INITS,
  USUAL_INIT,
  Config,
)

_ACTIVATIONS = flags.DEFINE_list(
  'activations',
  ['selu', 'relu', 'elu', 'leaky_relu', 'tanh'],
  f'Comma list of: {", ".join(ACTIVATIONS)}.',
)
_BATCH = flags.DEFINE_integer('batch', 256, 'Samples (>= 1).')
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address', None, 'With --distributed: host:port of process 0.'
)
_DEPTH = flags.DEFINE_integer('depth', 200, 'Layers (>= 8).')
_DETECTABLE = flags.DEFINE_float(
  'detectable',
  0.02,
  'Relative error in lambda and in the weight variance that a PASS must be '
  'able to detect (with probability 0.8); in (0, 1).',
)
_DISTRIBUTED = flags.DEFINE_boolean(
  'distributed',
  False,
  'One computation over several hosts: call jax.distributed.initialize() '
  '(with the three flags below where given, else from the cluster '
  'environment) and shard the batch over every global device; process 0 '
  'writes the results.',
)
_DROPOUT = flags.DEFINE_string('dropout', 'none', f'One of {DROPOUTS}.')
_DROPOUT_RATE = flags.DEFINE_float('dropout_rate', 0.1, 'In [0, 1).')
_DTYPE = flags.DEFINE_string('dtype', 'float32', f'One of {list(DTYPES)}.')
_INIT = flags.DEFINE_string(
  'init', 'auto', f'One of {", ".join(INITS)}; auto = usual for each.'
)
_LEVEL = flags.DEFINE_float(
  'level', 0.01, 'Family-wise false-alarm rate of each verdict, in (0, 0.5].'
)
# Inputs beyond these overflow a float32 stack's first layers (NaN moments,
# no evidence); the claims are about inputs near (0, 1).
MAX_INPUT_MEAN, MAX_INPUT_VAR = 1e3, 1e6
_INPUT_MEAN = flags.DEFINE_float(
  'input_mean',
  0.0,
  f'Input mean, in [-{MAX_INPUT_MEAN:g}, {MAX_INPUT_MEAN:g}].',
)
_INPUT_VAR = flags.DEFINE_float(
  'input_var', 1.0, f'Input variance, in (0, {MAX_INPUT_VAR:g}].'
)
_NUM_PROCESSES = flags.DEFINE_integer(
  'num_processes', None, 'With --distributed: how many processes.'
)
_OUTPUT_DIR = cli.output_dir_flag('selu_deep_stack', __name__)
_PROCESS_ID = flags.DEFINE_integer(
  'process_id', None, 'With --distributed: this process, in [0, num_processes).'
)
_SCENARIOS = flags.DEFINE_boolean(
  'scenarios', True, 'Also run negative controls, recovery and dropout.'
)
_SEED = flags.DEFINE_integer('seed', 0, 'Base PRNG seed.')
_SEEDS = flags.DEFINE_integer('seeds', 4, 'Independent stacks (>= 1).')
_WEIGHT_VAR_SCALE = flags.DEFINE_float(
  'weight_var_scale', 1.0, 'Multiplies the init variance (> 0).'
)
_WIDTH = flags.DEFINE_integer('width', 256, 'Units per layer (>= 1).')
# Bumped when the computation of a cell changes, so old cells are not reused.
VERSION = 2


# ----------------------------------------------------------------------------
# Scenarios, flags, reporting.


def scenarios(settings: Settings) -> list[Config]:
  configs = []
  for name in settings.activations:
    init = USUAL_INIT[name] if settings.init == 'auto' else settings.init
    configs.append(
      Config(
        name=f'{name} ({init})',
        activation=name,
        init=init,
        weight_var_scale=settings.weight_var_scale,
        input_mean=settings.input_mean,
        input_var=settings.input_var,
        dropout=settings.dropout,
        dropout_rate=settings.dropout_rate,
      )
    )
  if not settings.scenarios:
    return configs
  selu = functools.partial(Config, activation='selu', init='lecun_normal')
  configs += [
    selu('selu, weight var 1.1/n', weight_var_scale=1.1, role='control'),
    selu('selu, weight var 0.95/n', weight_var_scale=0.95, role='control'),
    Config('selu, torch gain 3/4', 'selu', 'torch_selu_gain', role='control'),
    Config('selu, he_normal', 'selu', 'he_normal', role='control'),
    selu('selu, input var 0.25', input_var=0.25, role='recovery'),
    selu('selu, input var 3', input_var=3.0, role='recovery'),
    selu('selu, input var 16', input_var=16.0, role='recovery'),
    selu('selu, input mean 1', input_mean=1.0, role='recovery'),
    selu(
      'selu, alpha dropout',
      dropout='alpha',
      dropout_rate=settings.dropout_rate,
      role='dropout',
    ),
    selu(
      'selu, standard dropout',
      dropout='standard',
      dropout_rate=settings.dropout_rate,
      role='dropout',
    ),
  ]
  for name in ('elu', 'relu', 'tanh'):
    if name not in settings.activations:
      configs.append(
        Config(
          f'{name} ({USUAL_INIT[name]})', name, USUAL_INIT[name], role='control'
        )
      )
  return configs


def check_flags() -> Settings:
  """Every flag, checked before any compute; UsageError on the first bad."""
  flag = {
    'activations': cli.choices(
      'activations',
      selu_stack.add_user_activations('activations', _ACTIVATIONS.value),
      ACTIVATIONS,
    ),
    **cli.values(_DEPTH, _WIDTH, _BATCH, _SEEDS),
    'init': cli.choices('init', [_INIT.value], INITS)[0],
    'weight_var_scale': cli.positive(
      'weight_var_scale', _WEIGHT_VAR_SCALE.value
    ),
    'input_mean': cli.number(
      'input_mean', _INPUT_MEAN.value, low=-MAX_INPUT_MEAN, high=MAX_INPUT_MEAN
    ),
    'input_var': cli.number(
      'input_var', _INPUT_VAR.value, low=0, high=MAX_INPUT_VAR, low_open=True
    ),
    'dropout': cli.choices('dropout', [_DROPOUT.value], DROPOUTS)[0],
    'dropout_rate': cli.fraction('dropout_rate', _DROPOUT_RATE.value),
    'dtype': cli.choices('dtype', [_DTYPE.value], list(DTYPES))[0],
    'level': cli.number(
      'level', _LEVEL.value, low=0.0, high=0.5, low_open=True
    ),
    'detectable': cli.number(
      'detectable',
      _DETECTABLE.value,
      low=0.0,
      high=1.0,
      low_open=True,
      high_open=True,
    ),
    **cli.values(_SCENARIOS, _SEED, _DISTRIBUTED),
  }
  cli.at_least(flag, ('width', 'batch', 'seeds'))
  cli.at_least(flag, ('depth',), 8)
  cluster = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  sweep.check_cluster(flag['distributed'], *cluster)
  flag = {k: tuple(v) if isinstance(v, list) else v for k, v in flag.items()}
  return Settings(**flag, placement=sweep.placement(_OUTPUT_DIR.value))


def groups(
  settings: Settings, programs: selu_stack.Programs
) -> list[sweep.Group]:
  """One cell per configuration, all seeds in one vectorized run."""
  shared = {
    'depth': settings.depth,
    'width': settings.width,
    'batch': settings.batch,
    'seeds': settings.seeds,
    'dtype': settings.dtype,
    'seed': settings.seed,
  }
  shared['version'] = VERSION
  return [
    sweep.Group(
      cfg.name,
      [
        {
          **shared,
          'config': dataclasses.asdict(cfg),
          **selu_stack.USER_SOURCES.get(cfg.activation, {}),
        }
      ],
      functools.partial(programs.run_config, cfg),
    )
    for cfg in scenarios(settings)
  ]


def main(argv: Sequence[str]) -> int:
  cli.no_arguments(argv)
  settings = check_flags()
  if settings.distributed:
    jax.distributed.initialize(
      coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value,
      process_id=_PROCESS_ID.value,
    )
  if settings.dtype == 'float64':
    jax.config.update('jax_enable_x64', True)
  sharding = selu_stack.batch_sharding(settings.batch)
  writer = jax.process_index() == 0
  outcome = sweep.run_binary(
    'selu_deep_stack',
    settings.placement,
    groups(settings, selu_stack.Programs(settings, sharding)),
    distributed=settings.distributed,
    writer=writer,
  )
  if outcome is None or not writer:
    return cli.EXIT_HELD
  results = [c['result'] for c in outcome.cells.values()]
  verdict, summary = selu_stack.claim(results, settings)
  selu_stack.write_results(outcome, settings, summary, verdict, sharding)
  sweep.require_evidence(outcome, settings.placement.store_dir)
  return cli.close(
    'selu_deep_stack',
    {
      "SELU self-normalizes under the paper's conditions": verdict
      == 'SUPPORTED'
    },
  )


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'selu_deep_stack')


if __name__ == '__main__':
  cli_main()
