"""Interleaved timing: ratios of programs measured in one loop, with A/A.

Every repeat times each variant once, in an order rotated by one each
repeat, so drift and load hit all variants alike; a ratio is the median of
the per-repeat ratios. A second copy of the baseline (the A/A control) in
the same loop gives the noise floor: its ratio to the baseline would be 1.000
on a quiet machine.
"""

from __future__ import annotations

import functools
import itertools
import re
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from absl import logging

from experiments.benchmark_activations import memory
from experiments.benchmark_activations import paths as benchmark_paths
from experiments.report import fmt, markdown_table
from experiments.report import verdict_text as report_verdict


def _calls_per_repeat(seconds_per_call: float, min_seconds: float) -> int:
  return max(1, round(min_seconds / max(seconds_per_call, 1e-9)))


def time_interleaved(
  programs: dict[str, Callable],
  args: Sequence,
  repeats: int,
  min_seconds: float = 0.01,
) -> dict[str, list[float]]:
  """Seconds per call of each program, {name: [one value per repeat]}.

  Each program is compiled and run twice first. A repeat of a program runs
  it enough times back to back to last about `min_seconds` (small arrays
  take microseconds, below the clock's resolution for one call).
  """
  names = list(programs)
  slowest = 0.0
  for name in names:
    jax.block_until_ready(programs[name](*args))
    start = time.perf_counter()
    jax.block_until_ready(programs[name](*args))
    slowest = max(slowest, time.perf_counter() - start)
  return _rotated(
    programs, args, repeats, _calls_per_repeat(slowest, min_seconds)
  )


def _rotated(
  programs: dict[str, Callable], args: Sequence, repeats: int, calls: int
) -> dict[str, list[float]]:
  """Seconds per call, each repeat running every program `calls` times.

  The order is rotated by one each repeat, so drift hits all alike.
  """
  names = list(programs)
  times: dict[str, list[float]] = {n: [] for n in names}
  for r in range(repeats):
    for name in names[r % len(names) :] + names[: r % len(names)]:
      program = programs[name]
      start = time.perf_counter()
      for _ in range(calls):
        out = program(*args)
      jax.block_until_ready(out)
      times[name].append((time.perf_counter() - start) / calls)
  return times


def time_eager(
  calls: dict[str, Callable[[], jax.Array]], rounds: int, per_round: int
) -> dict[str, list[float]]:
  """Seconds per eager call of each thunk, {name: [one value per round]}.

  Eager calls of a small array cost dispatch, not compute: each round calls
  every thunk `per_round` times back to back, in rotated order, and waits
  for the last result.
  """
  for thunk in calls.values():
    jax.block_until_ready(thunk())
  return _rotated(calls, (), rounds, per_round)


def median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
  """Median over repeats of the per-repeat ratio a / b."""
  return statistics.median(x / y for x, y in zip(a, b, strict=True))


def verdict(
  value: float | None, target: float | None, aa: float | None = None
) -> str:
  """'ok' within target; 'noise' if over it by at most the A/A factor aa."""
  if value is None or target is None:
    return ''
  if value <= target:
    return 'ok'
  if aa is not None and value <= target * max(aa, 1 / aa):
    return 'noise'
  return 'MISS'


def same_program(f: Callable, g: Callable, *args) -> bool:
  """Whether f and g compile to the same optimised program.

  Compares the opcodes of every instruction in every computation (fusion
  bodies included), in order; names, layouts and metadata are ignored, and
  so is a compare's direction (x > 0 or x >= 0 at a kink: the same cost).
  """

  def ops(fn):
    text = jax.jit(fn).lower(*args).compile().as_text()
    return re.findall(r' = \S+ (\w[\w-]*)\(', text)

  return ops(f) == ops(g)


def compare(
  times: dict[str, list[float]],
  target: float,
  ours: str = 'jaxrelu',
  baseline: str = 'jax.nn',
  control: str = 'A/A',
) -> dict:
  """Ratio of ours to the baseline, its A/A control and the verdict.

  Without a baseline in `times`, ratio, A/A and verdict are None, None, ''.
  """
  row = {'ratio': None, 'aa': None, 'verdict': ''}
  if baseline in times:
    row['ratio'] = median_ratio(times[ours], times[baseline])
    row['aa'] = median_ratio(times[control], times[baseline])
    row['verdict'] = verdict(row['ratio'], target, row['aa'])
  return row


# The timed programs of one function, jitted; each takes (x, v).
MODES = ('fwd', 'value_and_grad', 'vjp', 'jvp')


def programs(fn: Callable) -> dict[str, Callable]:
  """fwd; value_and_grad of sum(f(x) * v); pure vjp (cotangent v); jvp."""
  return {
    'fwd': jax.jit(lambda x, v: fn(x)),
    'value_and_grad': jax.jit(
      lambda x, v: jax.value_and_grad(lambda x: jnp.sum(fn(x) * v))(x)
    ),
    'vjp': jax.jit(lambda x, v: jax.vjp(fn, x)[1](v)[0]),
    'jvp': jax.jit(lambda x, v: jax.jvp(fn, (x,), (v,))),
  }


def speed_rows(
  pairs: dict[str, tuple[Callable, Callable | None]],
  sizes: Sequence[int],
  dtypes: Sequence,
  repeats: int,
  min_seconds: float,
) -> list[dict]:
  """One row per (dtype, size, name, mode): ours against the baseline.

  `pairs` maps a name to (ours, baseline or None). Each mode's programs
  are timed in one interleaved loop: ours, the baseline, its A/A copy, and
  a copy kernel (x * 2, the memory-bandwidth floor).
  """
  rows = []
  for dtype, size, name in itertools.product(dtypes, sizes, pairs):
    logging.info('timing %s, %d %s', name, size, jnp.dtype(dtype).name)
    x, v = _inputs(size, dtype)  # one pair for the four modes
    for mode in MODES:
      rows.append(_speed_row(pairs, name, x, v, mode, repeats, min_seconds))
  return rows


def _inputs(size: int, dtype) -> tuple[jax.Array, jax.Array]:
  """The timed x and cotangent/tangent v: size elements in rows of 1024."""
  x = jax.random.normal(jax.random.key(1), (size // 1024, 1024), dtype)
  return x, jax.random.normal(jax.random.key(2), x.shape, dtype)


def _speed_row(pairs, name, x, v, mode, repeats, min_seconds) -> dict:
  ours, baseline = pairs[name]
  variants = {'jaxrelu': ours, 'copy': lambda x: x * 2}
  if baseline is not None:
    variants['jax.nn'] = baseline
    variants['A/A'] = lambda x, f=baseline: f(x)
  compiled = {n: programs(f)[mode] for n, f in variants.items()}
  t = time_interleaved(compiled, (x, v), repeats, min_seconds)
  row = {
    'activation': name,
    'dtype': x.dtype.name,
    'size': x.size,
    'mode': mode,
    'seconds': statistics.median(t['jaxrelu']),
    'vs_copy': median_ratio(t['jaxrelu'], t['copy']),
    **compare(t, target=1.0),
    'same_program': baseline is not None
    and same_program(compiled['jaxrelu'], compiled['jax.nn'], x, v),
  }
  if row['same_program']:
    # One compiled program: any timing gap is noise by construction.
    row['verdict'] = 'ok'
  return row


def retime_misses(
  rows: list[dict],
  pairs: dict[str, tuple[Callable, Callable | None]],
  repeats: int,
  min_seconds: float,
) -> None:
  """Times every row judged MISS once more, in place, and judges that.

  One interleaved loop per row, with twice the repeats, in a fresh
  compile; the noise band stays the first pass's for that dtype and size.
  The first pass's ratio and A/A are kept under 'first'. A row slower than
  jax.nn by more than the noise misses twice; a row that missed once by a
  draw of the machine's noise (single rows reach 1.2 at A/A on a loaded
  2-core machine) is told apart from it.
  """
  _retime(
    rows,
    repeats,
    lambda r, x, v, n: _speed_row(
      pairs, r['activation'], x, v, r['mode'], n, min_seconds
    ),
  )


def _retime(rows: list[dict], repeats: int, row_at: Callable) -> None:
  """retime_misses' loop: row_at(row, x, v, repeats) times a row again."""
  for i, r in enumerate(rows):
    if r['verdict'] != 'MISS':
      continue
    x, v = _inputs(r['size'], jnp.dtype(r['dtype']))
    again = row_at(r, x, v, 2 * repeats)
    again['first'] = {'ratio': r['ratio'], 'aa': r['aa']}
    again['noise_band'] = r['noise_band']
    _judge(again)
    rows[i] = again


def path_rows(
  paths: dict,
  sizes: Sequence[int],
  dtypes: Sequence,
  repeats: int,
  min_seconds: float,
) -> list[dict]:
  """One row per (dtype, size, path, mode): ours against its reference.

  `paths` maps a name to a `benchmark_paths.Path`. As `speed_rows`: each
  mode's programs (`benchmark_paths.path_programs`) are timed in one
  interleaved loop: ours, the reference, its A/A copy and a copy kernel.
  """
  rows = []
  for dtype, size, name in itertools.product(dtypes, sizes, paths):
    logging.info('timing path %s, %d %s', name, size, jnp.dtype(dtype).name)
    x, v = _inputs(size, dtype)
    for mode in paths[name].modes:
      rows.append(_path_row(paths, name, x, v, mode, repeats, min_seconds))
  return rows


def _path_row(paths, name, x, v, mode, repeats, min_seconds) -> dict:
  path = paths[name]
  built = path.build(x)
  progs = lambda f: benchmark_paths.path_programs(f)[mode]
  compiled = {
    'jaxrelu': progs(built.ours),
    'copy': jax.jit(lambda x, v, d, c: x * 2),
  }
  args = {n: (x, v, built.d, built.c) for n in compiled}
  if built.reference is not None:
    compiled['jax.nn'] = progs(built.reference)
    compiled['A/A'] = progs(lambda x, d, c, f=built.reference: f(x, d, c))
    for n in ('jax.nn', 'A/A'):
      args[n] = (x, v, built.reference_d, built.c)
  # One argument tuple per program: the reference's own parameters.
  timed = {n: functools.partial(_star, f, args[n]) for n, f in compiled.items()}
  t = time_interleaved(timed, (), repeats, min_seconds)
  row = {
    'path': name,
    'reference': path.reference or None,
    'dtype': x.dtype.name,
    'size': x.size,
    'mode': mode,
    'seconds': statistics.median(t['jaxrelu']),
    'vs_copy': median_ratio(t['jaxrelu'], t['copy']),
    'target': path.target,
    **compare(t, target=path.target or 1.0),
    'same_program': False,
  }
  if path.target is None:
    row['verdict'] = ''
  return row


def _star(f, args):
  return f(*args)


def retime_path_misses(
  rows: list[dict], paths: dict, repeats: int, min_seconds: float
) -> None:
  """`retime_misses` for `path_rows`' rows."""
  _retime(
    rows,
    repeats,
    lambda r, x, v, n: _path_row(
      paths, r['path'], x, v, r['mode'], n, min_seconds
    ),
  )


def path_verdict(row: dict) -> str:
  """A path row's verdict with its reason."""
  if row['ratio'] is None:
    return '- (no reference to compare with)'
  ratio, band = fmt(row['ratio']), fmt(row.get('noise_band'))
  target = row['target']
  if target is None:
    return f'- (reported, no target): {ratio} of the reference'
  band = f'{target:.2f} x (1 + {band})' if target != 1.0 else f'1 + {band}'
  if row['verdict'] == 'ok':
    return f'ok: {ratio} <= {target:.2f}'
  if row['verdict'] == 'noise':
    return f'noise: {ratio} > {target:.2f}, within the A/A band {band}'
  return f'MISS: {ratio} > {target:.2f}, above the A/A band {band}'


def path_markdown(rows: list[dict], notes: dict[str, str]) -> str:
  """The paths' table: one line per (path, dtype, size, mode)."""
  table = [
    [
      r['path'],
      r['reference'] or '-',
      r['dtype'],
      r['size'],
      r['mode'],
      fmt(r['seconds'] * 1e6, '.1f'),
      f'{fmt(r["ratio"])} ({fmt(r["aa"])})' + _first(r),
      fmt(r['vs_copy']),
      path_verdict(r),
    ]
    for r in rows
  ]
  lines = [
    'Public paths beyond the activations, each against its reference: time'
    ' ratio ours / reference (A/A in brackets), judged as above against the'
    ' A/A noise band of the paths of that dtype and size (the target is 1.00'
    ' unless the note says otherwise).',
    '',
    markdown_table(
      [
        'path',
        'reference',
        'dtype',
        'size',
        'mode',
        'ours us',
        'ratio (A/A)',
        'ours / copy',
        'verdict',
      ],
      table,
    ),
  ]
  shown = dict.fromkeys(r['path'] for r in rows)
  lines += [f'- {n}: {notes[n]}' for n in shown if notes.get(n)]
  return '\n'.join(lines)


def apply_noise_band(rows: list[dict], quantile: float = 0.9) -> None:
  """Judges each ratio against the A/A noise of its (dtype, size), in place.

  One A/A ratio is itself one noisy draw, so a row is not judged by its
  own: the band is the `quantile` of |A/A - 1| over every row of the same
  dtype and size (every activation and mode, measured in the same
  conditions). A ratio at or below 1 is 'ok', within 1 + band 'noise',
  above it 'MISS'; one compiled program as jax.nn's stays 'ok'.
  """
  groups: dict[tuple, list[float]] = {}
  for r in rows:
    if r['aa'] is not None:
      groups.setdefault((r['dtype'], r['size']), []).append(abs(r['aa'] - 1))
  for r in rows:
    aa = sorted(groups.get((r['dtype'], r['size']), [0.0]))
    r['noise_band'] = aa[min(len(aa) - 1, int(quantile * len(aa)))]
    _judge(r)


def _judge(row: dict) -> None:
  """Judges a speed row against its noise band, in place: at or below its
  target (a path's 'target', else 1) 'ok', within target * (1 + band)
  'noise', else 'MISS'; one compiled program with jax.nn's keeps its 'ok';
  a path without a target keeps its '' (reported, not judged)."""
  target = row.get('target', 1.0)
  if (
    row['ratio'] is not None and target is not None and not row['same_program']
  ):
    row['verdict'] = verdict(row['ratio'], target, 1.0 + row['noise_band'])


def eager_rows(
  pairs: dict[str, tuple[Callable, Callable]],
  calls_per_round: int,
  target: float,
) -> list[dict]:
  """Per-call time of un-jitted calls on 1024 float32 elements."""
  x = jax.random.normal(jax.random.key(1), (1024,), jnp.float32)
  rows = []
  for call, (ours, baseline) in pairs.items():
    rows.append(_eager_row(call, ours, baseline, x, 9, calls_per_round, target))
  for i, r in enumerate(rows):
    # As retime_misses: a MISS is timed once more, with twice the rounds.
    if r['verdict'] == 'MISS':
      again = _eager_row(
        r['call'], *pairs[r['call']], x, 18, calls_per_round, target
      )
      rows[i] = {**again, 'first': {'ratio': r['ratio'], 'aa': r['aa']}}
  return rows


def _eager_row(call, ours, baseline, x, rounds, calls_per_round, target):
  thunks = {
    'jaxrelu': functools.partial(ours, x),
    'jax.nn': functools.partial(baseline, x),
    'A/A': functools.partial(baseline, x),
  }
  t = time_eager(thunks, rounds=rounds, per_round=calls_per_round)
  return {
    'call': call,
    'us_jaxrelu': statistics.median(t['jaxrelu']) * 1e6,
    'us_jax_nn': statistics.median(t['jax.nn']) * 1e6,
    **compare(t, target=target),
  }


def _pair(values: dict, spec: str, scale: float = 1.0) -> str:
  return ', '.join(
    fmt(None if v is None else v / scale, spec) for v in values.values()
  )


def _first(row: dict) -> str:
  """' [first: ratio (A/A)]' for a re-timed row, else ''."""
  if 'first' not in row:
    return ''
  return f' [first: {fmt(row["first"]["ratio"])} ({fmt(row["first"]["aa"])})]'


def speed_verdict(row: list[dict]) -> str:
  """The verdict of one (activation, dtype, size), over its modes, with
  its reason: each mode that is not 'ok' and why, else why all are."""
  if row[0]['ratio'] is None:
    return '- (no jax.nn counterpart to compare with)'
  off = []
  for r in row:
    band = f'1 + {fmt(r.get("noise_band"))}'
    if r['verdict'] == 'noise':
      off.append(
        f'{r["mode"]} noise: {fmt(r["ratio"])}, above 1 within the A/A '
        f'band {band}'
      )
    elif r['verdict'] == 'MISS':
      off.append(
        f'{r["mode"]} MISS: {fmt(r["ratio"])}, above the A/A band {band}'
      )
  if off:
    return '; '.join(off)
  same = sum(r['same_program'] for r in row)
  return 'ok: every mode at or below 1.00' + (
    f' ({same} the same program as jax.nn)' if same else ''
  )


def eager_verdict(row: dict, target: float) -> str:
  """An eager call's verdict with its reason."""
  ratio, aa = fmt(row['ratio']), fmt(row['aa'])
  if row['verdict'] == 'ok':
    return f'ok: {ratio} <= {target:.2f}'
  if row['verdict'] == 'noise':
    return f'noise: {ratio} > {target:.2f}, within its A/A {aa}'
  return f'MISS: {ratio} > {target:.2f} beyond its A/A {aa}'


def markdown(
  speed, eager, memory, header: str, eager_target: float = 1.1
) -> str:
  """The speed, eager and memory tables of benchmark_activations, each
  verdict with its reason (a memory row's own 'reason', where it has
  one)."""
  cells = {
    (r['activation'], r['dtype'], r['size'], r['mode']): r for r in speed
  }
  table = []
  for key in dict.fromkeys(k[:3] for k in cells):
    row = [cells[(*key, m)] for m in MODES]
    ratios = [
      f'{fmt(r["ratio"])} ({fmt(r["aa"])}){" =" if r["same_program"] else ""}'
      + _first(r)
      # No reference (a user's activation): its own time per call.
      if r['ratio'] is not None
      else f'{1e6 * r["seconds"]:.1f} us'
      for r in row
    ]
    table.append([*key, *ratios, fmt(row[0]['vs_copy']), speed_verdict(row)])
  eager_table = [
    [
      r['call'],
      fmt(r['us_jaxrelu'], '.2f'),
      fmt(r['us_jax_nn'], '.2f'),
      fmt(r['ratio']) + _first(r),
      fmt(r['aa']),
      eager_verdict(r, eager_target),
    ]
    for r in eager
  ]
  memory_table = [
    [
      r['activation'],
      _pair(r['residual_bytes'], '.2f'),
      _pair(r['mlp_temp_bytes'], '.1f', 2**20),
      report_verdict(r['verdict'], r.get('reason')),
    ]
    for r in memory
  ]
  return '\n'.join(
    [
      header,
      '',
      'Median over repeats of the per-repeat time ratio jaxrelu / jax.nn'
      ' (below 1 is faster), with the A/A control (a second jit of jax.nn in'
      " the same loop) in brackets; a user's activation, with no reference,"
      ' shows its own time per call. Verdicts: ok = at or below 1.00 (1.10 for'
      ' eager calls); noise = above it by no more than the A/A noise band (90th'
      ' percentile of |A/A - 1| over all rows of that dtype and size; for'
      " eager calls, the row's own A/A); = marks the same compiled program as"
      ' jax.nn (ok by construction). A row that missed was timed once more'
      ' with twice the repeats and is judged on that; [first: r (a)] is the'
      ' first pass.',
      '',
      markdown_table(
        ['activation', 'dtype', 'size', *MODES, 'fwd / copy', 'verdict'], table
      ),
      'Eager calls, 1024 float32 elements:\n',
      markdown_table(
        ['call', 'jaxrelu us', 'jax.nn us', 'ratio', 'A/A', 'verdict'],
        eager_table,
      ),
      'Memory: residual bytes per element (ours, jax.nn); MLP step temporary'
      ' MiB (ours, jax.nn):\n',
      markdown_table(
        ['activation', 'residual B/el', 'MLP temp MiB', 'verdict'], memory_table
      ),
    ]
  )


def peak_bytes(
  sizes: Sequence[int], dtypes: Sequence, mlp: tuple[int, int, int]
) -> int:
  """An upper bound on the memory of the largest program the benchmark
  runs: a timed array with its cotangent, outputs and temporaries (8
  arrays of the largest size in the widest dtype), or the MLP step (XLA's
  temporaries, from shapes alone, plus parameters in and out and the
  batch). Tested against XLA's analysis of the compiled programs."""
  itemsize = max(jnp.dtype(d).itemsize for d in dtypes)
  arrays = 8 * max(sizes) * itemsize
  layers, width, batch = mlp
  if not layers:
    return arrays
  params = layers * (width * width + width) + 10 * width + 10
  # + 64 KiB: XLA's own small buffers (the loss, constants).
  step = 4 * (2 * params + batch * (width + 10)) + 2**16
  if step < 2**40:  # else more than any machine: no need to compile it
    step += memory.mlp_temp_bytes(
      jax.nn.relu, layers, width, batch, jnp.float32
    )
  return max(arrays, step)
