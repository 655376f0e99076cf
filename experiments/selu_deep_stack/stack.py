"""SELU's deep stack: the model, the theory's prediction, the criterion.

`experiments.selu_deep_stack` runs `Programs.run_config` for each
configuration. One configuration is `--depth` layers of Dense (random
weights drawn per layer) + activation, `--seeds` stacks vectorized; per
layer it measures the mean and std over units and samples, their spread
over units, and the backward pass (the squared norm of d<h_L, r>/dh_l for a
random probe r). `predict` iterates `jaxrelu.selu_theory`'s moment map, and
`jaxrelu.self_normalization.check` gives each configuration its verdict:
PASS, FAIL or NOT TESTABLE, with the deviations the run could detect.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxrelu
from experiments import cli, report
from experiments.report import fmt as _fmt
from experiments.report import verdict_text
from experiments.selu_deep_stack import figures
from experiments.selu_deep_stack.settings import Settings
from jaxrelu import registry, self_normalization, selu_theory

# SELU first, then every activation of the library a stack of fixed
# layers can run (none with learnable parameters or random draws), at its
# defaults, and tanh as a smooth control.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  'selu': jaxrelu.selu,
  **{
    name: spec.fn
    for name, spec in registry.ACTIVATIONS.items()
    if not (spec.learnable or spec.random)
  },
  'tanh': jnp.tanh,
}
KINKS = {'relu6': (0.0, 6.0), 'tanh': ()}
# The recovery claim: back within 0.05 of (0, 1) within about 20 layers.
RECOVERY_WITHIN = 0.05
RECOVERY_LAYERS = 20
# Users' activations of the current run (`add_user_activations`): label ->
# its function's module and source hash, for the cells' settings.
USER_SOURCES: dict[str, dict] = {}


def add_user_activations(flag_name: str, values) -> list[str]:
  """--activations: built-in names, or users' activations
  (`cli.user_activation`), added to ACTIVATIONS (He init by default) for
  this run alone. Returns the names."""
  for label in USER_SOURCES:
    ACTIVATIONS.pop(label, None)
    USUAL_INIT.pop(label, None)
  USER_SOURCES.clear()
  items = cli.activation_items(flag_name, values, tuple(ACTIVATIONS))
  for _, spec in items:
    if spec is None:
      continue
    hyper = {h.name: h.default for h in spec.hyperparameters}
    ACTIVATIONS[spec.name] = functools.partial(spec.fn, **hyper)
    USUAL_INIT[spec.name] = 'he_normal'
    USER_SOURCES[spec.name] = {
      **cli.source_hash(spec.fn),
      'activation_hyperparameters': hyper,
    }
  return [label for label, _ in items]


# Each activation's usual init: He's for every rectifier but SELU.
USUAL_INIT = {
  **dict.fromkeys(ACTIVATIONS, 'he_normal'),
  'selu': 'lecun_normal',
  'tanh': 'glorot_normal',
}
INITS = (
  'auto',
  'lecun_normal',
  'he_normal',
  'glorot_normal',
  'torch_selu_gain',
)
DROPOUTS = ('none', 'standard', 'alpha')
DTYPES = {
  'float32': jnp.float32,
  'float64': jnp.float64,
  'bfloat16': jnp.bfloat16,
}


@dataclasses.dataclass(frozen=True)
class Config:
  """One stack configuration."""

  name: str
  activation: str
  init: str
  weight_var_scale: float = 1.0
  input_mean: float = 0.0
  input_var: float = 1.0
  dropout: str = 'none'
  dropout_rate: float = 0.1
  role: str = 'main'  # main | control | recovery | dropout

  @property
  def paper_conditions(self) -> bool:
    """SELU, LeCun weights, standardized input, no or alpha dropout."""
    return (
      self.activation == 'selu'
      and self.init == 'lecun_normal'
      and self.weight_var_scale == 1.0
      and self.input_mean == 0.0
      and self.input_var == 1.0
      and self.dropout in ('none', 'alpha')
    )


def weight_variance(init: str, activation: str, width: int) -> float:
  """n * Var(w) for each init (fan_in = fan_out = width)."""
  if init == 'lecun_normal' or init == 'glorot_normal':
    return 1.0  # glorot: 2 / (fan_in + fan_out) = 1 / n for square layers
  if init == 'he_normal':
    slope = 0.01 if activation == 'leaky_relu' else 0.0
    return 2.0 / (1.0 + slope**2)
  if init == 'torch_selu_gain':
    return (3.0 / 4.0) ** 2  # PyTorch's calculate_gain('selu') = 3/4
  raise ValueError(init)


# ----------------------------------------------------------------------------
# The stack.


def _dropout(y, key, kind: str, rate):
  if kind == 'none':
    return y
  if kind == 'alpha':
    # The functional form, with a traced rate (rate 0 is the identity).
    return jaxrelu.alpha_dropout(y, rate, key)
  keep = jax.random.bernoulli(key, 1.0 - rate, y.shape)
  return jnp.where(keep, y / (1.0 - rate), 0.0)


def stack_params(cfg: Config, width: int) -> dict[str, float]:
  """The numeric settings of a configuration, passed traced to the stack."""
  return {
    'w_std': math.sqrt(
      weight_variance(cfg.init, cfg.activation, width)
      * cfg.weight_var_scale
      / width
    ),
    'in_mean': cfg.input_mean,
    'in_std': math.sqrt(cfg.input_var),
    'rate': cfg.dropout_rate,
  }


def run_stack(
  key: jax.Array,
  params: dict[str, jax.Array],
  *,
  activation: str,
  dropout: str,
  depth: int,
  width: int,
  batch: int,
  dtype,
  sharding: NamedSharding | None,
) -> dict[str, jax.Array]:
  """One seed: per-layer statistics and squared gradient norms.

  Only the activation and the dropout kind are static, so configurations
  that differ in numbers alone share one compiled program.
  """
  act = ACTIVATIONS[activation]
  k_in, k_layers, k_probe = jax.random.split(key, 3)
  x0 = params['in_mean'] + params['in_std'] * jax.random.normal(
    k_in, (batch, width), dtype
  )
  x0 = x0.astype(dtype)
  if sharding is not None:
    x0 = jax.lax.with_sharding_constraint(x0, sharding)
  probe = jax.random.normal(k_probe, (batch, width), dtype)

  def layer(h, xs):
    k, eps = xs
    k_w, k_d = jax.random.split(k)
    w = (params['w_std'] * jax.random.normal(k_w, (width, width))).astype(dtype)
    y = _dropout(act(h @ w), k_d, dropout, params['rate']) + eps
    y32 = y.astype(jnp.float32)
    unit_mean = jnp.mean(y32, axis=0)
    unit_std = jnp.std(y32, axis=0)
    stats = jnp.stack(
      [
        jnp.mean(y32),
        jnp.std(y32),
        jnp.std(unit_mean),
        jnp.std(unit_std),
      ]
    )
    return y.astype(dtype), stats

  keys = jax.random.split(k_layers, depth)

  def loss(eps):
    out, stats = jax.lax.scan(jax.checkpoint(layer), x0, (keys, eps))
    return jnp.sum(out.astype(jnp.float32) * probe), stats

  eps = jnp.zeros((depth, batch, width), dtype)
  grads, stats = jax.grad(loss, has_aux=True)(eps)
  grad_sq = jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=(1, 2))
  return {'stats': stats, 'grad_sq': grad_sq}


def predict(cfg: Config, depth: int, width: int) -> dict[str, np.ndarray]:
  """Iterates the theory's moment map: per-layer mean, std and grad gain.

  With random zero-mean weights, unit i's net input has mean mu * omega_i,
  omega_i ~ N(0, tau), so the pooled net input over units and samples is
  N(0, tau (nu + mu^2)). The map is therefore fed the second moment
  (omega = 0, var = nu + mu^2). For SELU at (0, 1) this is the paper's map.
  """
  tau = weight_variance(cfg.init, cfg.activation, width) * cfg.weight_var_scale
  act = ACTIVATIONS[cfg.activation]
  kinks = KINKS.get(cfg.activation, (0.0,))
  q = 1.0 - cfg.dropout_rate

  def step(carry, _):
    mu, nu = carry
    second = nu + mu * mu
    if cfg.activation == 'selu':
      m, v = selu_theory.selu_moments(0.0, second, tau=tau)
      g = selu_theory.selu_backward_gain(0.0, second, tau=tau)
    else:
      m, v, g = selu_theory.activation_moments(
        act, 0.0, second, tau=tau, kinks=kinks
      )
    if cfg.dropout == 'alpha' and cfg.dropout_rate > 0:
      m, v = selu_theory.alpha_dropout_moments(m, v, cfg.dropout_rate)
      a, _ = selu_theory.alpha_dropout_affine(cfg.dropout_rate)
      g = g * a * a * q
    elif cfg.dropout == 'standard' and cfg.dropout_rate > 0:
      m, v, g = m, (v + m * m) / q - m * m, g / q
    return (m, v), (m, jnp.sqrt(v), g)

  with jax.enable_x64(True):
    init = (jnp.float64(cfg.input_mean), jnp.float64(cfg.input_var))
    _, (means, stds, gains) = jax.jit(
      lambda init: jax.lax.scan(step, init, None, length=depth)
    )(init)
    out = {
      'mean': np.asarray(means),
      'std': np.asarray(stds),
      'gain': np.asarray(gains),
    }
  # Past overflow the prediction is meaningless: mark it missing.
  bad = ~np.isfinite(out['std']) | (out['std'] > 1e15)
  for k in out:
    out[k] = np.where(bad, np.nan, out[k])
  return out


def depth_half(per_layer: np.ndarray) -> slice:
  """The second half of the layers (the last axis)."""
  return slice(per_layer.shape[-1] // 2, None)


def recovery_layer(
  mean: np.ndarray, std: np.ndarray, within: float = 0.05
) -> int | None:
  """First layer (1-based) from which mean and std stay within `within`."""
  ok = (np.abs(mean) <= within) & (np.abs(std - 1.0) <= within)
  if not ok[-1]:
    return None
  bad = np.nonzero(~ok)[0]
  return 1 if bad.size == 0 else int(bad[-1]) + 2


def evaluate(cfg, runs, pred, criterion: dict) -> dict:
  """Summaries and the verdict of one configuration.

  Args:
    cfg: the configuration.
    runs: `run_stack`'s output, vectorized over seeds.
    pred: `predict`'s output.
    criterion: {'width', 'batch', 'level', 'detectable'}.
  """
  stats = np.asarray(runs['stats'], np.float64)  # (seeds, depth, 4)
  grad = np.asarray(runs['grad_sq'], np.float64)  # (seeds, depth)
  mean, std = stats[..., 0], stats[..., 1]
  finite = bool(np.all(np.isfinite(stats[..., :2])))
  max_mean = float(np.max(np.abs(mean))) if finite else math.inf
  max_std_dev = float(np.max(np.abs(std - 1))) if finite else math.inf
  avg_mean, avg_std = mean.mean(0), std.mean(0)
  recovered_at = recovery_layer(avg_mean, avg_std, RECOVERY_WITHIN)
  # Every row gets the self-normalization test (a control should FAIL).
  check = self_normalization.check(
    mean,
    std,
    width=criterion['width'],
    batch=criterion['batch'],
    dropout_rate=cfg.dropout_rate if cfg.dropout == 'alpha' else 0.0,
    level=criterion['level'],
    detectable=criterion['detectable'],
  )
  if cfg.role == 'recovery':
    # Judged by the recovery claim, not the stationary test: perturbed
    # inputs leave per-unit offsets that decay only by chi1 = 0.971 a layer.
    ok = recovered_at is not None and recovered_at <= RECOVERY_LAYERS
    verdict = self_normalization.PASS if ok else self_normalization.FAIL
  else:
    verdict = check.verdict
  # Gradient growth per layer (squared norm), from the top layer down.
  with np.errstate(all='ignore'):
    log_growth = np.log(grad[:, :-1] / grad[:, 1:])
  finite_growth = log_growth[np.isfinite(log_growth)]
  # NaN (no warning) where no layer's growth is finite: an exploded stack.
  measured_gain = (
    float(np.exp(np.mean(finite_growth))) if finite_growth.size else math.nan
  )
  tail = slice(max(0, mean.shape[1] - 20), None)
  return {
    'name': cfg.name,
    'role': cfg.role,
    'config': dataclasses.asdict(cfg),
    'paper_conditions': cfg.paper_conditions,
    'verdict': verdict,
    'meets_criterion': verdict == self_normalization.PASS,
    'check': check.as_dict(),
    'max_abs_mean': max_mean,
    'max_abs_std_minus_1': max_std_dev,
    'second_half_mean': float(np.mean(mean[:, depth_half(mean)])),
    'second_half_std': float(np.mean(std[:, depth_half(mean)])),
    'final_mean': float(np.mean(mean[:, tail])),
    'final_std': float(np.mean(std[:, tail])),
    'predicted_final_mean': float(pred['mean'][-1]),
    'predicted_final_std': float(pred['std'][-1]),
    'recovery_layer': recovered_at,
    'predicted_recovery_layer': recovery_layer(
      pred['mean'], pred['std'], RECOVERY_WITHIN
    ),
    'grad_gain_per_layer': measured_gain,
    'predicted_grad_gain_per_layer': float(np.mean(pred['gain'])),
    'per_layer': {
      'mean': avg_mean.tolist(),
      'std': avg_std.tolist(),
      'mean_min_max': [mean.min(0).tolist(), mean.max(0).tolist()],
      'std_min_max': [std.min(0).tolist(), std.max(0).tolist()],
      'unit_mean_spread': stats[..., 2].mean(0).tolist(),
      'unit_std_spread': stats[..., 3].mean(0).tolist(),
      'grad_sq_norm': np.exp(np.mean(np.log(grad), 0)).tolist(),
      'predicted_mean': pred['mean'].tolist(),
      'predicted_std': pred['std'].tolist(),
    },
  }


def row_reason(r: dict) -> str:
  """Why a configuration got its verdict, in words.

  The stationary test's own reason (`self_normalization.Verdict.reason`);
  it measures against SELU's fixed point, which the reason says on the
  rows of other activations. Recovery rows are judged by the recovery
  claim instead, and a control's verdict says what a control should do.
  """
  if r['role'] == 'recovery':
    layer, theory = r['recovery_layer'], r['predicted_recovery_layer']
    within = f'within {RECOVERY_WITHIN} of (0, 1)'
    if r['verdict'] == self_normalization.PASS:
      return (
        f'back {within} from layer {layer} on (theory: '
        f'{theory if theory else "never"}; {RECOVERY_LAYERS} allowed)'
      )
    late = f'only from layer {layer}' if layer else 'never back'
    return f'not back {within} by layer {RECOVERY_LAYERS} ({late})'
  reason = r['check']['reason']
  if r['config']['activation'] != 'selu':
    reason = f"tested against SELU's fixed point: {reason}"
  if r['role'] == 'control':
    expected = r['verdict'] == self_normalization.FAIL
    reason += ' (a control: ' + ('as expected)' if expected else 'should fail)')
  return reason


def verdict_table(results: list[dict], criterion: dict) -> str:
  """The Markdown table of every configuration, each verdict with its
  reason; the columns of SELU's stationary test are '-' on the rows of
  other activations and where the stack exploded (no statistics)."""
  lines = [
    'Test (jaxrelu.self_normalization.check): the average over the second '
    'half of the layers, of the mean and of the std over units and samples, '
    "against SELU's fixed point plus the finite-width bias; the standard "
    'error from the data (serial correlation estimated per run), Holm over '
    f'the two, family-wise level {criterion["level"]:g}. A pass needs the '
    f'power to detect a {100 * criterion["detectable"]:g}% error in lambda '
    'and in the weight variance (probability 0.8), else it is not testable. '
    'Recovery rows: the seed-averaged mean and std are back within '
    f'{RECOVERY_WITHIN} of (0, 1) by layer {RECOVERY_LAYERS} and stay there. '
    "Theory: each activation's own moment map. The columns of SELU's test "
    'are "-" on the rows of other activations.',
    '',
    '| configuration | role | verdict | mean, std: measured '
    "| SELU's fixed point +- band: mean; std | Holm p (mean, std) "
    '| detectable lambda, weight var | recovery layer (theory) '
    '| grad gain/layer (theory) |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for r in results:
    c = r['check']
    m, d = c['measured'], c['detectable']
    stats = r['config']['activation'] == 'selu' and math.isfinite(m['mean'])
    selu = lambda cell, stats=stats: cell if stats else '| - '
    lines.append(
      f'| {r["name"]} | {r["role"]} '
      f'| {verdict_text(r["verdict"], row_reason(r))} '
      f'| {_fmt(m["mean"], ".4f")}, {_fmt(m["std"], ".4f")} '
      + selu(
        f'| {_fmt(c["predicted"]["mean"], ".4f")} +- '
        f'{_fmt(c["band"]["mean"], ".4f")}; '
        f'{_fmt(c["predicted"]["std"], ".4f")} +- '
        f'{_fmt(c["band"]["std"], ".4f")} '
      )
      + selu(
        f'| {_fmt(c["p_holm"]["mean"], ".2g")}, '
        f'{_fmt(c["p_holm"]["std"], ".2g")} '
      )
      + selu(
        f'| {_fmt(100 * d["scale"], ".2f")}%, '
        f'{_fmt(100 * d["weight_variance"], ".2f")}% '
      )
      + f'| {_fmt(r["recovery_layer"], "d")} '
      f'({_fmt(r["predicted_recovery_layer"], "d")}) '
      f'| {_fmt(r["grad_gain_per_layer"], ".4f")} '
      f'({_fmt(r["predicted_grad_gain_per_layer"], ".4f")}) |'
    )
  return '\n'.join(lines) + '\n'


def csv_text(results: list[dict]) -> str:
  buf = io.StringIO()
  fields = [
    'configuration',
    'layer',
    'mean',
    'std',
    'unit_mean_spread',
    'unit_std_spread',
    'grad_sq_norm',
    'predicted_mean',
    'predicted_std',
  ]
  writer = csv.writer(buf)
  writer.writerow(fields)
  for r in results:
    p = r['per_layer']
    for i in range(len(p['mean'])):
      writer.writerow(
        [
          r['name'],
          i + 1,
          p['mean'][i],
          p['std'][i],
          p['unit_mean_spread'][i],
          p['unit_std_spread'][i],
          p['grad_sq_norm'][i],
          p['predicted_mean'][i],
          p['predicted_std'][i],
        ]
      )
  return buf.getvalue()


def plot(results: list[dict], out_dir: str, model: dict) -> list[str]:
  """Writes the PNG plots atomically; returns the paths written.

  The drawing is `figures.selu_stack_figures` (a presentation module: a
  change to a figure keeps the stored cells).
  """
  return figures.selu_stack_figures(results, out_dir, model)


def batch_sharding(batch: int) -> NamedSharding | None:
  """The batch axis over every (global) device, when that divides evenly."""
  devices = jax.devices()
  if len(devices) > 1 and batch % len(devices) == 0:
    # Auto axes: the stack's sharding constraint lets XLA partition the rest.
    mesh = jax.make_mesh(
      (len(devices),), ('batch',), axis_types=(jax.sharding.AxisType.Auto,)
    )
    return NamedSharding(mesh, P('batch', None))
  return None


def claim(results: list[dict], settings: Settings) -> tuple[str, str]:
  """The verdict on SELU under the paper's conditions, and its summary.

  SUPPORTED when every such row passes, CONTRADICTED when one fails, else
  NOT TESTABLE; the summary gives the verdict's reason, then each such
  row's verdict, reason and detectable deviations, so a reader knows what
  a PASS rules out.
  """
  paper = [r for r in results if r['paper_conditions']]
  verdicts = [r['verdict'] for r in paper]
  failed = [r['name'] for r in paper if r['verdict'] == self_normalization.FAIL]
  if not paper:
    verdict = 'NOT TESTABLE'
    reason = ' (no selu / lecun_normal / (0, 1) configuration ran)'
  elif failed:
    verdict = 'CONTRADICTED'
    reason = (
      f": {len(failed)} of {len(paper)} configurations under the paper's "
      f'conditions fail ({", ".join(failed)})'
    )
  elif all(v == self_normalization.PASS for v in verdicts):
    verdict = 'SUPPORTED'
    reason = (
      ": the one configuration under the paper's conditions passes"
      if len(paper) == 1
      else f": all {len(paper)} configurations under the paper's conditions "
      'pass'
    )
  else:
    verdict = 'NOT TESTABLE'
    reason = (
      f' (the run could not detect a {100 * settings.detectable:g}% error '
      'in lambda or the weight variance)'
    )
  lines = [
    "Claim: SELU under the paper's conditions keeps mean 0 / std 1 through "
    f'{settings.depth} layers (width {settings.width}, batch {settings.batch}, '
    f'{settings.seeds} seeds).',
    f'Verdict: {verdict}{reason}.',
  ]
  for r in paper:
    c = self_normalization.Verdict(**r['check'])
    # A stack without statistics (it exploded) has no detectable sizes.
    finite = all(map(math.isfinite, c.detectable.values()))
    lines.append(
      f'  {r["name"]}: {verdict_text(r["verdict"], row_reason(r))}'
      + (f'; {c.detectable_text()}.' if finite else '.')
    )
  return verdict, '\n'.join(lines)


def write_results(
  outcome,
  settings: Settings,
  summary: str,
  verdict: str,
  sharding: NamedSharding | None,
) -> None:
  """results.json, .csv and .md and the plots; prints the summary.

  results.md holds the summary, the table of every configuration and the
  run's provenance; stdout the summary and each configuration's verdict
  with its reason, in lines of at most `cli.COLUMNS`.

  Args:
    outcome: the sweep's `sweep.Outcome`.
    settings: the binary's checked flags.
    summary: the claim and its verdict, in words (`claim`).
    verdict: SUPPORTED, CONTRADICTED or NOT TESTABLE.
    sharding: `batch_sharding` of the run.
  """
  results = [c['result'] for c in outcome.cells.values()]
  table = verdict_table(results, settings.criterion())
  out = settings.placement.output_dir
  meta = report.provenance(report.flag_values(settings))
  meta['devices_used'] = len(jax.devices()) if sharding is not None else 1
  meta['processes'] = jax.process_count()
  model = self_normalization.finite_size_model(settings.width, settings.batch)
  report.write_json(
    f'{out}/results.json',
    {
      'meta': meta,
      'criterion': {
        **settings.criterion(),
        'finite_size_model': model,
        'test': 'jaxrelu/self_normalization.py:check',
      },
      'verdict': verdict,
      'claim_holds': verdict == 'SUPPORTED',
      'missing_cells': len(outcome.missing),
      'results': [{**r, 'reason': row_reason(r)} for r in results],
    },
  )
  report.write_text(f'{out}/results.csv', csv_text(results))
  report.write_text(
    f'{out}/results.md',
    f'{report.missing_text(outcome)}{summary}\n\n{table}\n'
    + report.provenance_markdown(meta),
  )
  paths = plot(results, out, model) if results else []
  report.echo(
    [
      *report.missing_line(outcome, f'{out}/results.md'),
      *summary.splitlines(),
      'Every configuration:',
      *(
        f'- {r["name"]} ({r["role"]}): '
        + verdict_text(r['verdict'], row_reason(r))
        for r in results
      ),
      f'full table: {out}/results.md',
      f'Wrote {out}/results.json, results.csv, results.md'
      + ''.join(f', {p.split("/")[-1]}' for p in paths),
    ]
  )


class Programs:
  """Compiled stacks by (activation, dropout): numbers alone never recompile."""

  def __init__(self, settings: Settings, sharding: NamedSharding | None):
    self.settings, self.sharding, self.cache = settings, sharding, {}
    self.seed_keys = jax.random.split(
      jax.random.key(settings.seed), settings.seeds
    )

  def run_config(self, cfg: Config) -> list[dict]:
    settings, program_key = self.settings, (cfg.activation, cfg.dropout)
    params = jax.tree.map(jnp.float32, stack_params(cfg, settings.width))
    compile_s = 0.0
    if program_key not in self.cache:
      replicated = (
        None
        if self.sharding is None
        else NamedSharding(self.sharding.mesh, P())
      )
      fn = jax.jit(
        jax.vmap(
          functools.partial(
            run_stack,
            activation=cfg.activation,
            dropout=cfg.dropout,
            depth=settings.depth,
            width=settings.width,
            batch=settings.batch,
            dtype=DTYPES[settings.dtype],
            sharding=self.sharding,
          ),
          in_axes=(0, None),
        ),
        # Every process gets the (small) statistics whole.
        out_shardings=replicated,
      )
      start = time.perf_counter()
      devices = jax.local_devices() if self.sharding else jax.devices()[:1]
      self.cache[program_key] = cli.compile_within_memory(
        fn.lower(self.seed_keys, params),
        devices,
        f'{cfg.name}: {settings.seeds} stacks',
        '--seeds, --batch, --width or --depth',
      )
      compile_s = time.perf_counter() - start
    start = time.perf_counter()
    runs = jax.block_until_ready(
      self.cache[program_key](self.seed_keys, params)
    )
    run_s = time.perf_counter() - start
    logging.info('%s: compile %.1fs, run %.1fs', cfg.name, compile_s, run_s)
    pred = predict(cfg, settings.depth, settings.width)
    result = evaluate(cfg, runs, pred, settings.criterion())
    result['timing'] = {'compile_seconds': compile_s, 'run_seconds': run_s}
    return [result]
