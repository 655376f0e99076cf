r"""Speed and memory of jaxrelu's activations against jax.nn.

For each activation: forward, vjp (forward + backward) and jvp time on one
array, interleaved with jax.nn's counterpart (where one exists), with
jaxrelu.leaky_relu (for prelu and rrelu, whose target is stated against it)
and with a copy kernel (``x * 2``, the memory-bandwidth floor). Reported as
median ratios over repeats, each repeat timing every variant once in rotated
order so that drift and noise hit all of them alike. Also: residual bytes per
element saved for the backward pass, and the compiled temporary memory of a
jitted training step of an MLP.

Usage (from the repo root; `jaxrelu-benchmark-activations` once installed):

  python -m experiments.benchmark_activations
  python -m experiments.benchmark_activations --size=1048576 --repeats=5 \
      --activations=relu,elu --mlp_layers=2 --mlp_width=256 --mlp_batch=64

Writes results.json (with flags and versions) and results.md to --output_dir,
atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from absl import flags, logging

import jaxrelu
from experiments import cli, report
from experiments.report import fmt as _fmt
from jaxrelu import _residuals

Fn = Callable[[jax.Array], jax.Array]

_KEY = jax.random.key(0)
# Residuals are traced on a slice of this many elements (bytes scale with it).
_RESIDUAL_ELEMENTS = 2**16


@dataclasses.dataclass(frozen=True)
class Activation:
  ours: Fn
  jax_nn: Fn | None = None
  # Target ratios against jax.nn for forward and vjp (issue 2, section 4).
  vs_jax_nn_target: float | None = 1.0
  # prelu (scalar) and rrelu (eval) are held to 1.1x of jaxrelu.leaky_relu.
  vs_leaky_target: float | None = None
  residual_target: float | None = None


ACTIVATIONS: dict[str, Activation] = {
  'relu': Activation(jaxrelu.relu, jax.nn.relu, residual_target=1),
  'relu6': Activation(jaxrelu.relu6, jax.nn.relu6, residual_target=1),
  'leaky_relu': Activation(
    jaxrelu.leaky_relu, jax.nn.leaky_relu, residual_target=1
  ),
  'prelu': Activation(
    lambda x: jaxrelu.prelu(x, jnp.asarray(0.25, x.dtype)),
    vs_jax_nn_target=None,
    vs_leaky_target=1.1,
    residual_target=4,
  ),
  'prelu_channel': Activation(
    lambda x: jaxrelu.prelu(x, jnp.linspace(0.1, 0.3, x.shape[-1])),
    vs_jax_nn_target=None,
    residual_target=4,
  ),
  'rrelu_eval': Activation(
    functools.partial(jaxrelu.rrelu, deterministic=True),
    vs_jax_nn_target=None,
    vs_leaky_target=1.1,
    residual_target=1,
  ),
  'rrelu_train': Activation(
    lambda x: jaxrelu.rrelu(x, _KEY),
    vs_jax_nn_target=None,
    residual_target=4,
  ),
  'elu': Activation(jaxrelu.elu, jax.nn.elu, residual_target=4),
  'celu': Activation(jaxrelu.celu, jax.nn.celu, residual_target=4),
  'selu': Activation(jaxrelu.selu, jax.nn.selu, residual_target=4),
}
MODES = ('fwd', 'vjp', 'jvp')
DTYPES = {
  'float32': jnp.float32,
  'bfloat16': jnp.bfloat16,
  'float16': jnp.float16,
  'float64': jnp.float64,
}

_SIZE = flags.DEFINE_integer(
  'size', 16 * 2**20, 'Elements in the timed array.', lower_bound=1024
)
_DTYPE = flags.DEFINE_enum('dtype', 'float32', list(DTYPES), 'Array dtype.')
_ACTIVATIONS = flags.DEFINE_list(
  'activations', list(ACTIVATIONS), 'Activations to measure.'
)
_REPEATS = flags.DEFINE_integer(
  'repeats', 15, 'Timed repeats per variant and mode.', lower_bound=3
)
_OUTPUT_DIR = flags.DEFINE_string(
  'output_dir', 'results/benchmark', 'Where results.json/.md go.'
)
_MLP = flags.DEFINE_boolean(
  'mlp', True, 'Also measure the compiled memory of an MLP training step.'
)
_MLP_LAYERS = flags.DEFINE_integer(
  'mlp_layers', 16, 'Hidden layers of the MLP step.', lower_bound=1
)
_MLP_WIDTH = flags.DEFINE_integer(
  'mlp_width', 2048, 'MLP width.', lower_bound=1
)
_MLP_BATCH = flags.DEFINE_integer(
  'mlp_batch', 1024, 'MLP batch size.', lower_bound=1
)


def _programs(fn: Fn) -> dict[str, Callable]:
  """The three timed programs of one function, jitted."""
  return {
    'fwd': jax.jit(fn),
    'vjp': jax.jit(lambda x, ct: jax.vjp(fn, x)[1](ct)[0]),
    'jvp': jax.jit(lambda x, t: jax.jvp(fn, (x,), (t,))),
  }


def _args(mode: str, x: jax.Array, v: jax.Array) -> tuple[jax.Array, ...]:
  return (x,) if mode == 'fwd' else (x, v)


def time_interleaved(
  variants: dict[str, Fn], x: jax.Array, v: jax.Array, repeats: int
) -> dict[str, dict[str, list[float]]]:
  """Seconds per call, {mode: {variant: [t_0, ..., t_repeats-1]}}.

  Each repeat times every variant once, in an order rotated by one each
  repeat, after a compile-and-warm-up call of each.
  """
  names = list(variants)
  times: dict[str, dict[str, list[float]]] = {}
  for mode in MODES:
    progs = {n: _programs(variants[n])[mode] for n in names}
    args = _args(mode, x, v)
    for n in names:
      for _ in range(2):
        jax.block_until_ready(progs[n](*args))
    times[mode] = {n: [] for n in names}
    for r in range(repeats):
      order = names[r % len(names) :] + names[: r % len(names)]
      for n in order:
        start = time.perf_counter()
        jax.block_until_ready(progs[n](*args))
        times[mode][n].append(time.perf_counter() - start)
  return times


def median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
  """Median over repeats of the per-repeat ratio a/b."""
  return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _verdict(
  value: float | None, target: float | None, aa: float | None = None
) -> str:
  """'ok' within target; 'noise' if over it by no more than the A/A gap."""
  if value is None or target is None:
    return ''
  if value <= target:
    return 'ok'
  if aa is not None and value <= target * max(aa, 1 / aa):
    return 'noise'
  return 'MISS'


def _same_program(f: Fn, g: Fn, x: jax.Array) -> bool:
  """Whether f and g compile to the same optimised forward program."""

  def ops(fn):
    # Opcodes of every instruction in every computation (fusion bodies
    # included), in order; names, layouts and metadata are ignored.
    text = jax.jit(fn).lower(x).compile().as_text()
    return re.findall(r' = \S+ (\w[\w-]*)\(', text)

  return ops(f) == ops(g)


def run(
  names: Sequence[str],
  size: int,
  dtype,
  repeats: int,
  mlp: tuple[int, int, int],
) -> dict:
  """Measures every named activation; returns a JSON-ready dict."""
  x = jax.random.normal(jax.random.key(1), (size // 1024, 1024), dtype)
  v = jax.random.normal(jax.random.key(2), x.shape, dtype)
  x_small = x.reshape(-1)[:_RESIDUAL_ELEMENTS].reshape(-1, 1024)
  copy = lambda x: x * 2
  rows = {}
  for name in names:
    spec = ACTIVATIONS[name]
    logging.info('timing %s', name)
    variants = {'jaxrelu': spec.ours, 'copy': copy}
    if spec.jax_nn is not None:
      variants['jax.nn'] = spec.jax_nn
      # A/A control: the same function jitted again. Its ratio to jax.nn is
      # the noise floor of this row; it would be 1.000 on a quiet machine.
      variants['jax.nn (A/A)'] = lambda x, f=spec.jax_nn: f(x)
    if spec.vs_leaky_target is not None:
      variants['jaxrelu.leaky_relu'] = jaxrelu.leaky_relu
    times = time_interleaved(variants, x, v, repeats)
    row: dict = {'median_seconds': {}, 'ratio': {}, 'aa_ratio': {}}
    for mode in MODES:
      t = times[mode]
      row['median_seconds'][mode] = {
        n: statistics.median(v) for n, v in t.items()
      }
      row['ratio'][mode] = {
        n: median_ratio(t['jaxrelu'], v)
        for n, v in t.items()
        if n not in ('jaxrelu', 'jax.nn (A/A)')
      }
      if 'jax.nn' in t:
        row['aa_ratio'][mode] = median_ratio(t['jax.nn (A/A)'], t['jax.nn'])
    if spec.jax_nn is not None:
      row['identical_fwd_program'] = _same_program(spec.ours, spec.jax_nn, x)
    row['residual_bytes_per_element'] = {
      'jaxrelu': _residuals.residual_bytes_per_element(spec.ours, x_small),
      'jax.nn': None
      if spec.jax_nn is None
      else _residuals.residual_bytes_per_element(spec.jax_nn, x_small),
    }
    layers, width, batch = mlp
    if layers:
      logging.info('compiling the MLP step for %s', name)
      row['mlp_temp_bytes'] = {
        'jaxrelu': _residuals.mlp_temp_bytes(
          spec.ours, layers, width, batch, dtype
        ),
        'jax.nn': None
        if spec.jax_nn is None
        else _residuals.mlp_temp_bytes(
          spec.jax_nn, layers, width, batch, dtype
        ),
      }
    row['targets'] = _targets(spec, row)
    rows[name] = row
  return rows


def _targets(spec: Activation, row: dict) -> dict[str, str]:
  """Pass/miss against the issue's targets, for the targets that apply."""
  out = {}
  for mode in ('fwd', 'vjp'):
    ratios = row['ratio'][mode]
    if spec.vs_jax_nn_target is not None and 'jax.nn' in ratios:
      out[f'{mode}_vs_jax_nn'] = _verdict(
        ratios['jax.nn'], spec.vs_jax_nn_target, row['aa_ratio'][mode]
      )
      if mode == 'fwd' and row.get('identical_fwd_program'):
        # The same compiled program: any timing gap is noise by construction.
        out['fwd_vs_jax_nn'] = 'ok'
    if spec.vs_leaky_target is not None:
      out[f'{mode}_vs_leaky_relu'] = _verdict(
        ratios['jaxrelu.leaky_relu'], spec.vs_leaky_target
      )
  if spec.residual_target is not None:
    # Allow two saved scalars (a slope, a literal): 8 bytes in all.
    out['residual'] = _verdict(
      row['residual_bytes_per_element']['jaxrelu'],
      spec.residual_target + 8 / _RESIDUAL_ELEMENTS,
    )
  mlp = row.get('mlp_temp_bytes')
  if mlp and mlp['jax.nn'] is not None:
    out['mlp_temp_vs_jax_nn'] = _verdict(mlp['jaxrelu'], mlp['jax.nn'])
  return out


def markdown(rows: dict, header: str) -> str:
  lines = [
    header,
    '',
    'Median over repeats of the per-repeat time ratio jaxrelu / baseline'
    ' (below 1 is faster). A/A: a second jit of jax.nn against jax.nn in'
    ' the same loop (fwd, vjp), the noise floor; 1.000 on a quiet machine.'
    ' Residual: bytes saved for the backward pass per element. MLP temp:'
    ' compiled temporary memory of one jitted SGD step. Targets: ok = met;'
    ' noise = over the target by no more than the A/A gap; same HLO = our'
    ' forward compiles to the same program as jax.nn.',
    '',
    '| activation | fwd / jax.nn | vjp / jax.nn | jvp / jax.nn | A/A '
    '| fwd / leaky | vjp / leaky | fwd / copy | vjp / copy '
    '| residual B/el (ours, jax.nn) | MLP temp MiB (ours, jax.nn) '
    '| targets |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for name, row in rows.items():
    r = row['ratio']
    res = row['residual_bytes_per_element']
    mlp = row.get('mlp_temp_bytes')
    mib = lambda b: None if b is None else b / 2**20
    notes = [f'{k} {v}' for k, v in row['targets'].items() if v != 'ok']
    verdict = 'all ok' if not notes else '; '.join(notes)
    if row.get('identical_fwd_program'):
      verdict += ' (same HLO)'
    aa = row['aa_ratio']
    aa_text = f'{_fmt(aa["fwd"])}, {_fmt(aa["vjp"])}' if aa else '-'
    lines.append(
      f'| {name} | {_fmt(r["fwd"].get("jax.nn"))} '
      f'| {_fmt(r["vjp"].get("jax.nn"))} | {_fmt(r["jvp"].get("jax.nn"))} '
      f'| {aa_text} '
      f'| {_fmt(r["fwd"].get("jaxrelu.leaky_relu"))} '
      f'| {_fmt(r["vjp"].get("jaxrelu.leaky_relu"))} '
      f'| {_fmt(r["fwd"]["copy"])} | {_fmt(r["vjp"]["copy"])} '
      f'| {_fmt(res["jaxrelu"], ".2f")}, {_fmt(res["jax.nn"], ".2f")} '
      f'| {_fmt(mib(mlp and mlp["jaxrelu"]), ".0f")}, '
      f'{_fmt(mib(mlp and mlp["jax.nn"]), ".0f")} | {verdict} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv: Sequence[str]) -> int:
  cli.no_arguments(argv)
  activations = cli.choices('activations', _ACTIVATIONS.value, ACTIVATIONS)
  cli.require(
    _SIZE.value % 1024 == 0,
    f'--size: {_SIZE.value} is not a multiple of 1024',
  )
  cli.output_dir(_OUTPUT_DIR.value)
  if _DTYPE.value == 'float64':
    jax.config.update('jax_enable_x64', True)
  dtype = DTYPES[_DTYPE.value]
  rows = run(
    activations,
    _SIZE.value,
    dtype,
    _REPEATS.value,
    (
      _MLP_LAYERS.value if _MLP.value else 0,
      _MLP_WIDTH.value,
      _MLP_BATCH.value,
    ),
  )
  meta = report.provenance(flags.FLAGS.flag_values_dict())
  meta['flags'] = {
    k: meta['flags'][k]
    for k in (
      'size',
      'dtype',
      'activations',
      'repeats',
      'output_dir',
      'mlp',
      'mlp_layers',
      'mlp_width',
      'mlp_batch',
    )
  }
  header = (
    f'## Activation benchmark: {_SIZE.value} {_DTYPE.value} elements, '
    f'{_REPEATS.value} repeats, {meta["devices"][0]}, {meta["date"]}'
  )
  table = markdown(rows, header)
  report.write_json(
    f'{_OUTPUT_DIR.value}/results.json', {'meta': meta, 'results': rows}
  )
  report.write_text(f'{_OUTPUT_DIR.value}/results.md', table)
  print(table)
  print(f'Wrote {_OUTPUT_DIR.value}/results.json and results.md')
  return 0


def cli_main() -> None:
  """Console-script entry point."""
  cli.run(main, 'benchmark_activations')


if __name__ == '__main__':
  cli_main()
