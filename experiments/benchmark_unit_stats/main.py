r"""Overhead of collecting unit statistics inside a jitted training step.

Claim (issue 11): a jitted SGD step of the MLP of benchmark_activations that
also collects `jaxrelu.diagnostics.activation_stats` for every rectifier
(and folds them into a running total, the streaming form) costs at most
1.2x the plain step.

Method: the plain step and the step with statistics are compiled once each,
plus an A/A control (the plain step jitted a second time, whose ratio to the
plain step is the noise floor). Each repeat times every variant once, in an
order rotated by one per repeat, each sample running --steps chained steps;
the reported ratio is the median over repeats of the per-repeat ratio. The
compiled temporary memory of both programs is recorded too.

Usage (from the repo root):

  python -m experiments.benchmark_unit_stats
  python -m experiments.benchmark_unit_stats --layers=2 --width=64 \
      --batch=8 --steps=2 --repeats=3 --activations=relu

Writes results.json (with flags and versions) and results.md to
--output_dir, atomically. Exit status 0 when every activation met the
target (--target, default the claim's 1.2), 1 when one did not, 2 for a
bad flag.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from absl import flags, logging

import jaxrelu
from experiments import cli, dense_mlp, report
from experiments.report import fmt
from jaxrelu import diagnostics

Act = Callable[[jax.Array], jax.Array]

ACTIVATIONS: dict[str, Act] = {
  'relu': jaxrelu.relu,
  'jax.nn.relu': jax.nn.relu,
  'leaky_relu': jaxrelu.leaky_relu,
  'elu': jaxrelu.elu,
  'selu': jaxrelu.selu,
}
TARGET = 1.2
_LR = 0.01

_ACTIVATIONS = flags.DEFINE_list(
  'activations',
  ['relu', 'jax.nn.relu'],
  "Activations to measure: the rows, or a user's rectifier "
  'package.module:function[rectifier=true;label=NAME;...].',
)
_BATCH = flags.DEFINE_integer('batch', 1024, 'Batch size.', lower_bound=1)
_LAYERS = flags.DEFINE_integer(
  'layers', 16, 'Hidden Dense + activation layers.', lower_bound=1
)
_OUTPUT_DIR = cli.output_dir_flag('benchmark_unit_stats', __name__)
_REPEATS = flags.DEFINE_integer(
  'repeats', 15, 'Timed repeats per variant.', lower_bound=3
)
_STEPS = flags.DEFINE_integer(
  'steps', 10, 'Chained training steps per timed sample.', lower_bound=1
)
_TARGET = flags.DEFINE_float(
  'target',
  TARGET,
  'Largest stats/plain time ratio that meets the claim.',
  lower_bound=1.0,
)
_WIDTH = flags.DEFINE_integer('width', 2048, 'MLP width.', lower_bound=1)


def _stats(fn, act: Act):
  """`activation_stats` of fn, with act declared a rectifier when it is a
  user's (jitted, see `with_users`)."""
  user = (act,) if hasattr(act, 'lower') else ()
  return diagnostics.activation_stats(fn, rectifiers=user)


def with_users(values) -> tuple[list[str], dict[str, Act]]:
  """--activations' names, and the activations with users' added: a
  user's must be declared a rectifier (`rectifier=true`), else the tracer
  would count none of its units; it is jitted with its hyperparameters
  fixed, and the tracer counts it by that function."""
  acts = dict(ACTIVATIONS)
  items = cli.activation_items('activations', values, tuple(ACTIVATIONS))
  for name, spec in items:
    if spec is None:
      continue
    cli.require(
      spec.rectifier,
      f'--activations: {name} is not declared a rectifier (add '
      '[rectifier=true]); the tracer counts the units of rectifiers only',
    )
    hyper = {h.name: h.default for h in spec.hyperparameters}
    acts[name] = jax.jit(functools.partial(spec.fn, **hyper))
  names = [name for name, _ in items]
  return cli.choices('activations', names, list(acts)), acts


def make_steps(act: Act, steps: int):
  """(plain, with_stats): each runs `steps` chained SGD steps, jitted."""

  def sgd(params, grads):
    return jax.tree.map(lambda p, g: p - _LR * g, params, grads)

  def plain(params, x, y):
    def body(params, _):
      grads = jax.grad(dense_mlp.loss, argnums=1)(act, params, x, y)
      return sgd(params, grads), None

    return jax.lax.scan(body, params, length=steps)[0]

  def with_stats(params, total, x, y):
    def body(carry, _):
      params, total = carry
      loss = _stats(lambda p: dense_mlp.loss(act, p, x, y), act)
      (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
      total = diagnostics.merge_unit_stats(total, stats)
      return (sgd(params, grads), total), None

    return jax.lax.scan(body, (params, total), length=steps)[0]

  return plain, with_stats


def program_bytes(act: Act, layers: int, width: int, batch: int) -> int:
  """Memory of the statistics step (the larger program `measure` runs),
  from XLA's analysis of it compiled from shapes alone: nothing is
  allocated. Above 2^40 bytes of parameters and inputs, those alone."""
  floor = 4 * (layers * (width * width + width) + batch * (width + 10))
  if floor >= 2**40:
    return floor
  _, with_stats = make_steps(act, 1)
  x = jax.ShapeDtypeStruct((batch, width), jnp.float32)
  y = jax.ShapeDtypeStruct((batch, 10), jnp.float32)
  params = jax.eval_shape(
    lambda: dense_mlp.init(jax.random.key(0), layers, width)
  )
  _, report_shape = jax.eval_shape(
    lambda p, x, y: _stats(lambda p: dense_mlp.loss(act, p, x, y), act)(p),
    params,
    x,
    y,
  )
  total = jax.eval_shape(diagnostics.unit_stats_init, report_shape)
  compiled = jax.jit(with_stats).lower(params, total, x, y).compile()
  return cli.compiled_bytes(compiled, jax.local_devices()[:1])


def measure(
  act: Act,
  layers: int,
  width: int,
  batch: int,
  steps: int,
  repeats: int,
  target: float = TARGET,
) -> dict:
  """Times the plain and the statistics step of one activation."""
  kx, ky, kp = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (batch, width))
  y = jax.random.normal(ky, (batch, 10))
  params = dense_mlp.init(kp, layers, width)
  plain, with_stats = make_steps(act, steps)
  _, report_shape = jax.eval_shape(
    _stats(lambda p: dense_mlp.loss(act, p, x, y), act),
    params,
  )
  total = diagnostics.unit_stats_init(report_shape)
  programs = {
    'plain': (jax.jit(plain), (params, x, y)),
    'plain (A/A)': (jax.jit(lambda *a: plain(*a)), (params, x, y)),
    'stats': (jax.jit(with_stats), (params, total, x, y)),
  }
  for fn, args in programs.values():
    for _ in range(2):  # compile, then warm up
      jax.block_until_ready(fn(*args))
  names = list(programs)
  times: dict[str, list[float]] = {n: [] for n in names}
  for r in range(repeats):
    order = names[r % len(names) :] + names[: r % len(names)]
    for n in order:
      fn, args = programs[n]
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[n].append(time.perf_counter() - start)
  ratio = lambda a, b: statistics.median(
    s / t for s, t in zip(times[a], times[b], strict=True)
  )
  final = programs['stats'][0](*programs['stats'][1])[1]
  return {
    'median_seconds_per_step': {
      n: statistics.median(t) / steps for n, t in times.items()
    },
    'ratio_stats_vs_plain': ratio('stats', 'plain'),
    'aa_ratio': ratio('plain (A/A)', 'plain'),
    'temp_bytes': {
      'plain': dense_mlp.temp_bytes(
        programs['plain'][0], *programs['plain'][1]
      ),
      'stats': dense_mlp.temp_bytes(
        programs['stats'][0], *programs['stats'][1]
      ),
    },
    'sites': len(final),
    'held': ratio('stats', 'plain') <= target,
  }


def row_verdict(row: dict, target: float = TARGET) -> str:
  """An activation's verdict on the target, with its reason."""
  ratio = fmt(row['ratio_stats_vs_plain'])
  if row['held']:
    return f'ok: stats / plain {ratio} <= {target:g}'
  return f'MISS: stats / plain {ratio} > {target:g}'


def markdown(rows: dict, header: str, target: float = TARGET) -> str:
  table = [
    (
      name,
      row['sites'],
      fmt(row['median_seconds_per_step']['plain'] * 1e3, '.2f'),
      fmt(row['median_seconds_per_step']['stats'] * 1e3, '.2f'),
      fmt(row['ratio_stats_vs_plain']),
      fmt(row['aa_ratio']),
      f'{fmt(row["temp_bytes"]["plain"] / 2**20, ".1f")}, '
      f'{fmt(row["temp_bytes"]["stats"] / 2**20, ".1f")}',
      row_verdict(row, target),
    )
    for name, row in rows.items()
  ]
  columns = (
    'activation',
    'sites',
    'plain ms/step',
    'stats ms/step',
    'stats / plain',
    'A/A',
    'temp MiB (plain, stats)',
    'target',
  )
  return (
    f'{header}\n\nMedian over repeats of the per-repeat time ratio (target <= '
    f'{target}). A/A: the plain step jitted twice, the noise floor (1.000 on '
    'a quiet machine). Temp: compiled temporary memory.\n\n'
    + report.markdown_table(columns, table)
  )


def main(argv: Sequence[str]) -> int:
  cli.no_arguments(argv)
  names, acts = with_users(_ACTIVATIONS.value)
  # absl's lower_bound lets inf and nan through: 'held' against inf
  # would hold whatever the timings.
  target = cli.number('target', _TARGET.value, low=1.0)
  cli.check_every_number_flag()  # before the sizes below are multiplied
  for name in names:
    cli.require_memory(
      program_bytes(acts[name], _LAYERS.value, _WIDTH.value, _BATCH.value),
      f'the statistics step of {name}',
      '--layers, --width or --batch',
    )
  out_dir = cli.output_dir(_OUTPUT_DIR.value)
  rows = {}
  for name in names:
    logging.info('timing %s', name)
    rows[name] = measure(
      acts[name],
      _LAYERS.value,
      _WIDTH.value,
      _BATCH.value,
      _STEPS.value,
      _REPEATS.value,
      target,
    )
  meta = report.provenance(
    cli.values(
      _ACTIVATIONS,
      _LAYERS,
      _WIDTH,
      _BATCH,
      _STEPS,
      _REPEATS,
      _TARGET,
      _OUTPUT_DIR,
    )
  )
  header = (
    f'## Unit-statistics overhead: MLP {_LAYERS.value} x {_WIDTH.value}, '
    f'batch {_BATCH.value}, {_STEPS.value} steps x {_REPEATS.value} '
    f'repeats, {meta["devices"][0]}, {meta["date"]}'
  )
  table = markdown(rows, header, target)
  report.write_json(f'{out_dir}/results.json', {'meta': meta, 'results': rows})
  report.write_text(
    f'{out_dir}/results.md', f'{table}\n{report.provenance_markdown(meta)}'
  )
  missed = [n for n, row in rows.items() if not row['held']]
  ratios = ', '.join(
    f'{n} {fmt(row["ratio_stats_vs_plain"])}x' for n, row in rows.items()
  )
  verdict = (
    f'NOT SUPPORTED: {", ".join(missed)} above it ({ratios})'
    if missed
    else f"SUPPORTED: every activation's stats step within it ({ratios})"
  )
  report.echo(
    [
      header.removeprefix('## '),
      *(f'- {n}: {row_verdict(row, target)}' for n, row in rows.items()),
      f'Claim (stats step <= {target:g}x plain step): {verdict}.',
      f'full table: {out_dir}/results.md',
      f'Wrote {out_dir}/results.json and results.md',
    ]
  )
  return cli.close(
    'benchmark_unit_stats',
    {f'{name} stats step <= {target}x': r['held'] for name, r in rows.items()},
  )


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'benchmark_unit_stats')


if __name__ == '__main__':
  cli_main()
