r"""Speed and memory of jaxrelu's activations against jax.nn.

Speed: for each activation, array size and dtype, the forward pass,
`jax.value_and_grad` of sum(f(x) * v), the pure vjp (cotangent only) and the
jvp, each timed in one interleaved loop with jax.nn's counterpart, a second
jit of that counterpart (the A/A control: the noise floor) and a copy kernel
(x * 2, the memory-bandwidth floor). prelu and rrelu's evaluation mode are
compared with jax.nn.leaky_relu at the same slope. Eager: the per-call time
of un-jitted calls on a small array, against jax.nn's, with an A/A control.
Memory: residual bytes per element saved for the backward pass, and the
compiled temporary memory of a jitted MLP training step.

Paths (issue 34): the other public paths (prelu with learnable scalar and
per-channel slopes, rrelu and alpha_dropout in training, each Flax layer's
training step, activation_stats inside a training step, recycle_units per
call), each in one interleaved loop with its natural reference (a jnp
formula, Flax's PReLU and Dropout, the plain step), an A/A copy of it and a
copy kernel, judged against the paths' own A/A noise band; misses re-timed
as above (paths.py: the table, and what each path
covers).

Targets (issue 15): every speed ratio at or below 1.00 within its A/A noise,
every eager ratio at most 1.10 (a row that misses is timed once more, with
twice the repeats, and judged on that; the first pass is kept), residuals
as stated per activation, and MLP temporary memory at most jax.nn's. Exit
status 1 when one is missed.

Usage (from the repo root; `jaxrelu-benchmark-activations` once installed):

  python -m experiments.benchmark_activations
  python -m experiments.benchmark_activations --sizes=1024,1048576 \
      --dtypes=float32 --activations=relu,elu --repeats=5 --mlp_layers=2 \
      --paths=prelu_learnable,nnx.PReLU

Writes results.json (with flags and versions) and results.md to --output_dir,
atomically.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from absl import flags

import jaxrelu
from experiments import cli, report
from experiments.benchmark_activations import memory, timing
from experiments.benchmark_activations import paths as benchmark_paths

Fn = Callable[[jax.Array], jax.Array]

# Residuals are traced on a slice of this many elements (bytes scale with it).
_RESIDUAL_ELEMENTS = 2**16

# The activations and the other public paths (prelu's learnable slopes,
# rrelu and alpha_dropout in training, the Flax layers' training steps,
# the diagnostics in a training step): `paths`, which a test reads.
ACTIVATIONS = benchmark_paths.ACTIVATIONS
PATHS = benchmark_paths.PATHS
# Eager calls with a hyperparameter given: (ours, jax.nn's), on x.
EAGER_EXPLICIT: dict[str, tuple[Fn, Fn]] = {
  'leaky_relu(x, 0.2)': (
    lambda x: jaxrelu.leaky_relu(x, 0.2),
    lambda x: jax.nn.leaky_relu(x, 0.2),
  ),
  'elu(x, 2.0)': (lambda x: jaxrelu.elu(x, 2.0), lambda x: jax.nn.elu(x, 2.0)),
  'celu(x, 2.0)': (
    lambda x: jaxrelu.celu(x, 2.0),
    lambda x: jax.nn.celu(x, 2.0),
  ),
}
DTYPES = {
  'float32': jnp.float32,
  'bfloat16': jnp.bfloat16,
  'float16': jnp.float16,
  'float64': jnp.float64,
}
EAGER_TARGET = 1.1

_SIZES = flags.DEFINE_list(
  'sizes',
  [str(2**k) for k in (10, 16, 20, 24)],
  'Elements in the timed arrays: multiples of 1024.',
)
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Dtypes.')
_ACTIVATIONS = flags.DEFINE_list(
  'activations',
  list(ACTIVATIONS),
  "Activations to measure: any of the rows, or a user's "
  'package.module:function[label=NAME;HYPERPARAMETER=VALUE] (timed and '
  'measured with no reference to judge it against).',
)
_PATHS = flags.DEFINE_list(
  'paths',
  list(PATHS),
  'Other public paths to time against their references (empty: none).',
)
_REPEATS = flags.DEFINE_integer('repeats', 15, 'Timed repeats (>= 3).')
_MIN_SECONDS = flags.DEFINE_float(
  'min_repeat_seconds', 0.01, 'Each repeat of a program lasts at least this.'
)
_EAGER_CALLS = flags.DEFINE_integer(
  'eager_calls', 2000, 'Eager calls per round (0: no eager table).'
)
_OUTPUT_DIR = flags.DEFINE_string(
  'output_dir', 'results/benchmark', 'Where results.json/.md go.'
)
_MLP_LAYERS = flags.DEFINE_integer(
  'mlp_layers', 16, 'Hidden layers of the MLP step (0: no MLP memory).'
)
_MLP_WIDTH = flags.DEFINE_integer('mlp_width', 2048, 'MLP width.')
_MLP_BATCH = flags.DEFINE_integer('mlp_batch', 1024, 'MLP batch size.')


def with_users(values: Sequence[str]) -> tuple[list[str], dict]:
  """--activations' names, and the rows with users' activations added
  (`cli.user_activation`): timed with no baseline, their memory measured
  against no target."""
  rows = dict(ACTIVATIONS)
  items = cli.activation_items('activations', values, tuple(ACTIVATIONS))
  for name, spec in items:
    if spec is not None:
      hyper = {h.name: h.default for h in spec.hyperparameters}
      rows[name] = benchmark_paths.Activation(
        functools.partial(spec.fn, **hyper), None
      )
  names = [name for name, _ in items]
  return cli.choices('activations', names, tuple(rows)), rows


def eager_pairs(
  names: Sequence[str], rows: Mapping = ACTIVATIONS
) -> dict[str, tuple[Fn, Fn]]:
  """Eager calls on x: (ours, jax.nn's), for those with a counterpart."""
  # As a layer holds them.
  slopes = benchmark_paths.channel_slopes(jnp.zeros((1024,)))
  pairs = {n: (rows[n].ours, rows[n].baseline) for n in names}
  pairs['prelu_channel'] = (
    lambda x: jaxrelu.prelu(x, slopes),
    lambda x: jax.nn.leaky_relu(x, slopes),
  )
  return {
    **{n: p for n, p in pairs.items() if n in names and p[1] is not None},
    **EAGER_EXPLICIT,
  }


def memory_rows(
  names, dtype, mlp: tuple[int, int, int], rows: Mapping = ACTIVATIONS
) -> list[dict]:
  """Residual bytes per element and the MLP step's temporary memory."""
  x = jax.random.normal(jax.random.key(1), (_RESIDUAL_ELEMENTS // 1024, 1024))
  x = x.astype(dtype)
  out = []
  for name in names:
    spec = rows[name]
    both = (('jaxrelu', spec.ours), ('jax.nn', spec.baseline))
    res = {n: f and memory.residual_bytes_per_element(f, x) for n, f in both}
    temp = {
      n: memory.mlp_temp_bytes(f, *mlp, dtype) if f and mlp[0] else None
      for n, f in both
    }
    if spec.residual_target is None:  # a user's: measured, not judged
      out.append(
        {
          'activation': name,
          'residual_bytes': res,
          'mlp_temp_bytes': temp,
          'verdict': '-',
          'reason': f'{res["jaxrelu"]:.2f} residual B/el, no target',
        }
      )
      continue
    # Allow two saved scalars (a slope, a literal): 8 bytes in all.
    ok_res = res['jaxrelu'] <= spec.residual_target + 8 / _RESIDUAL_ELEMENTS
    reasons = [
      f'{res["jaxrelu"]:.2f} residual B/el '
      + ('<=' if ok_res else '>')
      + f' target {spec.residual_target:g}'
    ]
    ok = ok_res
    if temp['jaxrelu'] and temp['jax.nn']:
      ok_temp = temp['jaxrelu'] <= temp['jax.nn']
      ok = ok and ok_temp
      reasons.append(
        f'MLP temp {temp["jaxrelu"] / 2**20:.1f} MiB '
        + ('<=' if ok_temp else '>')
        + f" jax.nn's {temp['jax.nn'] / 2**20:.1f}"
      )
    out.append(
      {
        'activation': name,
        'residual_bytes': res,
        'mlp_temp_bytes': temp,
        'verdict': 'ok' if ok else 'MISS',
        'reason': ', '.join(reasons),
      }
    )
  return out


def summary(speed, eager, memory, paths=()) -> list[str]:
  """stdout's lines: each table's count of verdicts, then every row that
  is not 'ok', with its reason."""
  cells = {
    (r['activation'], r['dtype'], r['size'], r['mode']): r for r in speed
  }
  rows = {
    key: timing.speed_verdict([cells[(*key, m)] for m in timing.MODES])
    for key in dict.fromkeys(k[:3] for k in cells)
  }
  eager_rows = {r['call']: timing.eager_verdict(r, EAGER_TARGET) for r in eager}
  memory_rows = {
    r['activation']: report.verdict_text(r['verdict'], r['reason'])
    for r in memory
  }
  path_rows = {
    (r['path'], r['dtype'], r['size'], r['mode']): timing.path_verdict(r)
    for r in paths
  }
  lines = []
  for kind, verdicts in (
    ('speed (activation, dtype, size)', rows),
    ('paths (path, dtype, size, mode)', path_rows),
    ('eager calls', eager_rows),
    ('memory', memory_rows),
  ):
    if not verdicts:
      continue
    ok = sum(v.startswith(('ok', '-')) for v in verdicts.values())
    lines.append(f'{kind}: {ok} of {len(verdicts)} ok or not compared.')
    for key, v in verdicts.items():
      if not v.startswith(('ok', '-')):
        name = ', '.join(map(str, key)) if isinstance(key, tuple) else key
        lines.append(f'- {name}: {v}')
  return lines


def main(argv: Sequence[str]) -> int:
  cli.no_arguments(argv)
  names, rows = with_users(_ACTIVATIONS.value)
  path_names = cli.choices('paths', _PATHS.value, PATHS, nonempty=False)
  sizes = cli.integers('sizes', _SIZES.value, low=1024)
  bad = [s for s in sizes if s % 1024]
  cli.require(
    not bad, f'--sizes: {bad[0] if bad else 0} is not a multiple of 1024'
  )
  dtype_names = cli.choices('dtypes', _DTYPES.value, DTYPES)
  cli.require(_REPEATS.value >= 3, f'--repeats: {_REPEATS.value} is not >= 3')
  cli.number('min_repeat_seconds', _MIN_SECONDS.value, low=0, high=10)
  cli.at_least(
    {'mlp_width': _MLP_WIDTH.value, 'mlp_batch': _MLP_BATCH.value},
    ['mlp_width', 'mlp_batch'],
  )
  cli.at_least({'mlp_layers': _MLP_LAYERS.value}, ['mlp_layers'], low=0)
  cli.at_least({'eager_calls': _EAGER_CALLS.value}, ['eager_calls'], low=0)
  cli.check_every_number_flag()  # before the sizes below are multiplied
  mlp = (_MLP_LAYERS.value, _MLP_WIDTH.value, _MLP_BATCH.value)
  cli.require_memory(
    timing.peak_bytes(sizes, [DTYPES[d] for d in dtype_names], mlp),
    'the largest timed program',
    '--sizes, --mlp_layers, --mlp_width or --mlp_batch',
  )
  cli.output_dir(_OUTPUT_DIR.value)
  if 'float64' in dtype_names:
    jax.config.update('jax_enable_x64', True)
  dtypes = [DTYPES[d] for d in dtype_names]
  pairs = {n: (rows[n].ours, rows[n].baseline) for n in names}
  speed = timing.speed_rows(
    pairs, sizes, dtypes, _REPEATS.value, _MIN_SECONDS.value
  )
  timing.apply_noise_band(speed)
  timing.retime_misses(speed, pairs, _REPEATS.value, _MIN_SECONDS.value)
  paths = {n: PATHS[n] for n in path_names}
  path_rows = timing.path_rows(
    paths, sizes, dtypes, _REPEATS.value, _MIN_SECONDS.value
  )
  # The paths' own noise band: their programs are not the activations'.
  timing.apply_noise_band(path_rows)
  timing.retime_path_misses(
    path_rows, paths, _REPEATS.value, _MIN_SECONDS.value
  )
  eager = []
  if _EAGER_CALLS.value:
    eager = timing.eager_rows(
      eager_pairs(names, rows), _EAGER_CALLS.value, EAGER_TARGET
    )
  memory = memory_rows(names, dtypes[0], mlp, rows)
  meta = report.provenance(flags.FLAGS.flag_values_dict())
  keep = [f.name for f in flags.FLAGS.get_flags_for_module(__name__)]
  meta['flags'] = {k: v for k, v in meta['flags'].items() if k in keep}
  header = (
    f'## Activation benchmark: {_REPEATS.value} repeats, '
    f'{meta["devices"][0]}, {meta["date"]}'
  )
  text = timing.markdown(speed, eager, memory, header, EAGER_TARGET)
  if path_rows:
    notes = {n: p.note for n, p in paths.items()}
    text = f'{text}\n{timing.path_markdown(path_rows, notes)}\n'
  out = _OUTPUT_DIR.value
  report.write_json(
    f'{out}/results.json',
    {
      'meta': meta,
      'speed': speed,
      'paths': path_rows,
      'eager': eager,
      'memory': memory,
    },
  )
  report.write_text(
    f'{out}/results.md', f'{text}\n{report.provenance_markdown(meta)}'
  )
  report.echo(
    [
      header.removeprefix('## '),
      *summary(speed, eager, memory, path_rows),
      f'full table: {out}/results.md',
      f'Wrote {out}/results.json and results.md',
    ]
  )
  rows = (
    ('speed', speed),
    ('path', path_rows),
    ('eager', eager),
    ('memory', memory),
  )
  return cli.close(
    'benchmark_activations',
    {
      f'{kind} targets': not any('MISS' in r['verdict'] for r in table)
      for kind, table in rows
      if table
    },
  )


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'benchmark_activations')


if __name__ == '__main__':
  cli_main()
