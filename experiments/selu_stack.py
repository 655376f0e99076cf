"""SELU's deep stack: the model, the theory's prediction, the criterion.

`experiments.selu_deep_stack` runs `Programs.run_config` for each
configuration. One configuration is `--depth` layers of Dense (random
weights drawn per layer) + activation, `--seeds` stacks vectorized; per
layer it measures the mean and std over units and samples, their spread
over units, and the backward pass (the squared norm of d<h_L, r>/dh_l for a
random probe r). `predict` iterates `jaxrelu.selu_theory`'s moment map, and
`tolerances` derives the pass band from finite-size sampling error
(`finite_size_model`, derivation in BUILD_NOTES.md).
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
from jax.scipy.special import ndtri
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxrelu
from experiments import plots
from experiments.report import fmt as _fmt
from jaxrelu import selu_theory

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  'selu': jaxrelu.selu,
  'relu': jaxrelu.relu,
  'leaky_relu': jaxrelu.leaky_relu,
  'elu': jaxrelu.elu,
  'celu': jaxrelu.celu,
  'relu6': jaxrelu.relu6,
  'tanh': jnp.tanh,
}
KINKS = {'relu6': (0.0, 6.0), 'tanh': ()}
# The recovery claim: back within 0.05 of (0, 1) within about 20 layers.
RECOVERY_WITHIN = 0.05
RECOVERY_LAYERS = 20
USUAL_INIT = {
  'selu': 'lecun_normal',
  'tanh': 'glorot_normal',
  'relu': 'he_normal',
  'leaky_relu': 'he_normal',
  'elu': 'he_normal',
  'celu': 'he_normal',
  'relu6': 'he_normal',
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
# The pass/fail tolerance, derived from finite-size sampling error.

# d(nu~)/d(nu) of the moment map at (0, 1) (selu_theory.moment_map_jacobian).
_J22 = 0.782648


def finite_size_model(width: int, batch: int) -> dict[str, float]:
  r"""Finite-width, finite-batch fluctuations of a SELU stack at (0, 1).

  Derivation (BUILD_NOTES.md has the long form). Split a layer's input
  batch into its mean vector m (over samples) and centred rows d_b, which sum
  to zero exactly. Unit i's batch mean of y = f(w_i . h_b) then gets:

  - the previous spread of unit means, passed on with gain
    chi1 = tau E[f']^2 = 0.9707;
  - fresh sampling noise (Var f - E[f']^2) / b. The linear part cancels
    because the centred rows sum to zero;
  - the nonlinearity's second-order term (E[f'']^2 / 2) c2. Here c2 is the
    variance of pairwise sample correlations, which finite width injects at
    1/n per layer and the correlation map contracts by C'(0) = chi1:
    c2 = (1/n) / (1 - chi1^2);
  - unit-to-unit variation of tau_i = |w_i|^2 (variance 2/n) through
    d(mu~)/d(nu) = E[f''] / 2.

  The spread of unit means is stationary at
  s_m^2 = injection / (1 - chi1). Per-unit second moments get the same
  terms for g = f^2, plus E[g']^2 s_m^2. Units are independent given the
  batch, so a layer's pooled mean has SD sqrt(s_m^2 / n). Its pooled
  variance has SD sqrt(s_g^2 / n), and deviations of it accumulate through
  the map with d(nu~)/d(nu) = 0.7826, so that SD is multiplied by
  1 / sqrt(1 - 0.7826^2). The pooled std's SD is half that. All
  expectations come from Stein's identities (E[f'] = E[f z],
  E[f''] = E[f (z^2 - 1)]), exact across the kink.

  Returns:
    The predicted spreads and per-layer standard deviations.
  """
  with jax.enable_x64(True):

    def e(h):
      return float(selu_theory.gaussian_expectation(h))

    f = jaxrelu.selu
    mean_f, m2, m4 = e(f), e(lambda z: f(z) ** 2), e(lambda z: f(z) ** 4)
    d1 = e(lambda z: f(z) * z)  # E[f']
    d2 = e(lambda z: f(z) * (z * z - 1))  # E[f'']
    g1 = e(lambda z: f(z) ** 2 * z)  # E[(f^2)']
    g2 = e(lambda z: f(z) ** 2 * (z * z - 1))  # E[(f^2)'']
  chi1 = d1**2
  c2 = (1.0 / width) / (1.0 - chi1**2)
  s_m2 = (
    (m2 - mean_f**2 - d1**2) / batch
    + 0.5 * d2**2 * c2
    + (0.5 * d2) ** 2 * 2.0 / width
  ) / (1.0 - chi1)
  s_g2 = (
    (m4 - m2**2 - g1**2) / batch
    + 0.5 * g2**2 * c2
    + (0.5 * g2) ** 2 * 2.0 / width
    + g1**2 * s_m2
  )
  sd_var = math.sqrt(s_g2 / width) / math.sqrt(1.0 - _J22**2)

  # Finite-width bias. Given a sample row h_b, a unit's net input is exactly
  # N(0, q_b) over random weights, q_b = |h_b|^2 / n. Row lengths vary: each
  # layer resamples them with variance (E[y^4] - 1) / n, and the length map
  # G(q) = E[f(sqrt(q) xi)^2] passes them on with slope G'(1) = J22, so
  # Var(q) = ((E[y^4] - 1) / n) / (1 - J22^2). Averaging G over rows biases
  # the pooled second moment by G''(1) Var(q) / 2 per layer, and the fixed
  # point moves by that / (1 - J22). The mean moves by
  # F'(1) * shift + F''(1) Var(q) / 2, with F(q) = E[f(sqrt(q) xi)].
  with jax.enable_x64(True):

    def smoothed(g, q):
      return float(selu_theory.gaussian_expectation(g, var=q))

    h = 1e-3
    g_q = [smoothed(lambda z: f(z) ** 2, 1 + k * h) for k in (-1, 0, 1)]
    f_q = [smoothed(f, 1 + k * h) for k in (-1, 0, 1)]
  g_curv = (g_q[2] - 2 * g_q[1] + g_q[0]) / h**2
  f_slope = (f_q[2] - f_q[0]) / (2 * h)
  f_curv = (f_q[2] - 2 * f_q[1] + f_q[0]) / h**2
  var_q = ((m4 - 1.0) / width) / (1.0 - _J22**2)
  shift = 0.5 * g_curv * var_q / (1.0 - _J22)
  return {
    'unit_mean_spread': math.sqrt(s_m2),
    'unit_second_moment_spread': math.sqrt(s_g2),
    'sd_layer_mean': math.sqrt(s_m2 / width),
    'sd_layer_std': 0.5 * sd_var,
    'bias_mean': f_slope * shift + 0.5 * f_curv * var_q,
    'bias_std': 0.5 * shift,
  }


# Family-wise false-alarm rates of the two checks.
POINTWISE_ALPHA = 1e-6
SYSTEMATIC_ALPHA = 1e-3
# Integrated autocorrelation time (layers) of the pooled std: an AR(1) with
# coefficient J22; the pooled mean is uncorrelated across layers (J11 = 0).
_TAU_STD = (1.0 + _J22) / (1.0 - _J22)


def tolerances(width: int, batch: int, depth: int, seeds: int) -> dict:
  r"""The two pass bands of a self-normalizing stack, from `finite_size_model`.

  Pointwise: every layer of every seed has |mean| <= z SD_mean and
  |std - 1| <= z SD_std. z is the two-sided Bonferroni quantile for a
  family-wise false-alarm rate of 1e-6 over the 2 * depth * seeds checks.
  This check guards against gross failures (explosion, collapse,
  transients), so a very low false-alarm rate costs it no power.

  Systematic: each seed's average over the second half of the layers,
  minus the predicted finite-width bias, lies within z' SD_avg. Here
  SD_avg = SD / sqrt(L / tau), with tau = 1 for the mean and
  (1 + J22) / (1 - J22) = 8.2 for the std, and z' is the Bonferroni
  quantile for 1e-3 over 2 * seeds checks. This catches small persistent
  offsets, such as weight variance 0.95/n (std 0.91), that pointwise noise
  would hide.
  """
  model = finite_size_model(width, batch)
  z = float(-ndtri(POINTWISE_ALPHA / (2 * 2 * depth * seeds)))
  z_sys = float(-ndtri(SYSTEMATIC_ALPHA / (2 * 2 * seeds)))
  layers = depth - depth // 2
  return {
    'point_mean': z * model['sd_layer_mean'],
    'point_std': z * model['sd_layer_std'],
    'sys_mean': z_sys * model['sd_layer_mean'] / math.sqrt(layers),
    'sys_std': z_sys * model['sd_layer_std'] * math.sqrt(_TAU_STD / layers),
    'bias_mean': model['bias_mean'],
    'bias_std': model['bias_std'],
    'sys_from_layer': depth // 2 + 1,
  }


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
  alpha_p = -jaxrelu.SELU_SCALE * jaxrelu.SELU_ALPHA

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
      a, b = selu_theory.alpha_dropout_affine(cfg.dropout_rate)
      mean_x = q * m + (1 - q) * alpha_p
      sec = q * (v + m * m) + (1 - q) * alpha_p**2
      m, v, g = a * mean_x + b, a * a * (sec - mean_x**2), g * a * a * q
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


def evaluate(cfg, runs, pred, tol: dict) -> dict:
  """Summaries and the verdict of one configuration."""
  stats = np.asarray(runs['stats'], np.float64)  # (seeds, depth, 4)
  grad = np.asarray(runs['grad_sq'], np.float64)  # (seeds, depth)
  mean, std = stats[..., 0], stats[..., 1]
  finite = bool(np.all(np.isfinite(stats[..., :2])))
  max_mean = float(np.max(np.abs(mean))) if finite else math.inf
  max_std_dev = float(np.max(np.abs(std - 1))) if finite else math.inf
  avg_mean, avg_std = mean.mean(0), std.mean(0)
  recovered_at = recovery_layer(avg_mean, avg_std, RECOVERY_WITHIN)
  if cfg.role == 'recovery':
    # Judged by the recovery claim, not the stationary band: perturbed
    # inputs leave per-unit offsets that decay only by chi1 = 0.971 a layer.
    passes = recovered_at is not None and recovered_at <= RECOVERY_LAYERS
  else:
    # Each seed's second-half average, less the predicted bias.
    half = slice(tol['sys_from_layer'] - 1, None)
    sys_mean = np.abs(mean[:, half].mean(1) - tol['bias_mean'])
    sys_std = np.abs(std[:, half].mean(1) - 1.0 - tol['bias_std'])
    systematic_ok = bool(
      np.all(sys_mean <= tol['sys_mean']) and np.all(sys_std <= tol['sys_std'])
    )
    pointwise_ok = (
      max_mean <= tol['point_mean'] and max_std_dev <= tol['point_std']
    )
    passes = finite and pointwise_ok and systematic_ok
  # Gradient growth per layer (squared norm), from the top layer down.
  with np.errstate(all='ignore'):
    log_growth = np.log(grad[:, :-1] / grad[:, 1:])
  measured_gain = (
    float(np.exp(np.nanmean(log_growth))) if grad.shape[1] > 1 else math.nan
  )
  tail = slice(max(0, mean.shape[1] - 20), None)
  return {
    'name': cfg.name,
    'role': cfg.role,
    'config': dataclasses.asdict(cfg),
    'paper_conditions': cfg.paper_conditions,
    'meets_criterion': bool(passes),
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


def verdict_table(results: list[dict], tol: dict) -> str:
  lines = [
    'Criterion (derived from finite-size sampling error, finite_size_model):'
    f' every layer of every seed within |mean| <= {tol["point_mean"]:.4f} and'
    f" |std - 1| <= {tol['point_std']:.4f}; and each seed's average over "
    f'layers >= {tol["sys_from_layer"]}, less the predicted finite-width '
    f'bias ({tol["bias_mean"]:+.4f}, {tol["bias_std"]:+.4f}), within '
    f'{tol["sys_mean"]:.4f} (mean) and {tol["sys_std"]:.4f} (std). '
    'Recovery rows: the seed-averaged mean and '
    f'std are back within {RECOVERY_WITHIN} of (0, 1) by layer '
    f'{RECOVERY_LAYERS} and stay there. Predictions: the theory moment map.',
    '',
    '| configuration | role | meets criterion | max abs mean | max abs(std-1) '
    '| 2nd-half mean, std | final mean (pred) | final std (pred) '
    '| recovery layer (pred) | grad gain/layer (pred) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for r in results:
    lines.append(
      f'| {r["name"]} | {r["role"]} '
      f'| {"PASS" if r["meets_criterion"] else "FAIL"} '
      f'| {_fmt(r["max_abs_mean"])} | {_fmt(r["max_abs_std_minus_1"])} '
      f'| {_fmt(r["second_half_mean"], ".4f")}, '
      f'{_fmt(r["second_half_std"], ".4f")} '
      f'| {_fmt(r["final_mean"])} ({_fmt(r["predicted_final_mean"])}) '
      f'| {_fmt(r["final_std"])} ({_fmt(r["predicted_final_std"])}) '
      f'| {_fmt(r["recovery_layer"], "d")} '
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


def plot(results: list[dict], out_dir: str, tol: dict) -> list[str]:
  """Writes the PNG plots atomically; returns their paths."""
  plt = plots.pyplot()
  paths = []
  groups = {
    'stats_main.png': [r for r in results if r['role'] == 'main'],
    'stats_controls.png': [r for r in results if r['role'] == 'control'],
    'stats_recovery_dropout.png': [
      r for r in results if r['role'] in ('recovery', 'dropout')
    ],
  }
  for filename, group in groups.items():
    if not group:
      continue
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for r in group:
      p = r['per_layer']
      layers = np.arange(1, len(p['mean']) + 1)
      color = plots.style(r['name'])['color']
      axes[0].plot(layers, p['mean'], color=color, label=r['name'])
      axes[0].plot(layers, p['predicted_mean'], color=color, ls='--', lw=1)
      axes[1].plot(layers, p['std'], color=color, label=r['name'])
      axes[1].plot(layers, p['predicted_std'], color=color, ls='--', lw=1)
    axes[0].axhspan(-tol['point_mean'], tol['point_mean'], color='0.85')
    axes[1].axhspan(1 - tol['point_std'], 1 + tol['point_std'], color='0.85')
    axes[0].set(
      xlabel='layer', ylabel='mean over units and samples', ylim=(-1.5, 1.5)
    )
    axes[1].set(
      xlabel='layer', ylabel='std over units and samples', yscale='log'
    )
    axes[1].legend(fontsize=7)
    fig.suptitle(
      'measured (solid) vs theory (dashed); grey = pointwise pass band'
    )
    fig.tight_layout()
    paths.append(plots.save_figure(fig, f'{out_dir}/{filename}'))
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in results:
    if r['role'] not in ('main', 'dropout'):
      continue
    g = np.asarray(r['per_layer']['grad_sq_norm'])
    ax.plot(
      np.arange(1, g.size + 1),
      g / g[-1],
      **plots.style(r['name']),
      label=r['name'],
    )
  ax.set(
    xlabel='layer', ylabel='squared gradient norm / top layer', yscale='log'
  )
  ax.legend(fontsize=7)
  ax.set_title('backward pass: gradient norm against depth')
  fig.tight_layout()
  paths.append(plots.save_figure(fig, f'{out_dir}/gradients.png'))
  return paths


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


def write_results(
  outcome,
  flag: dict,
  tol: dict,
  summary: str,
  claim_holds: bool,
  sharding: NamedSharding | None,
) -> None:
  """results.json, .csv and .md and the plots; prints what it wrote.

  Args:
    outcome: the sweep's `sweep.Outcome`.
    flag: the binary's checked flags.
    tol: `tolerances` of the run.
    summary: the claim and its verdict, in words.
    claim_holds: the verdict.
    sharding: `batch_sharding` of the run.
  """
  from experiments import report

  results = [c['result'] for c in outcome.cells.values()]
  table = verdict_table(results, tol)
  out = flag['output_dir']
  meta = report.provenance(report.flag_values(flag))
  meta['devices_used'] = len(jax.devices()) if sharding is not None else 1
  meta['processes'] = jax.process_count()
  report.write_json(
    f'{out}/results.json',
    {
      'meta': meta,
      'criterion': {
        **tol,
        'finite_size_model': finite_size_model(flag['width'], flag['batch']),
        'derivation': 'experiments/selu_deep_stack.py:finite_size_model',
      },
      'claim_holds': claim_holds,
      'missing_cells': len(outcome.missing),
      'results': results,
    },
  )
  report.write_text(f'{out}/results.csv', csv_text(results))
  report.write_text(f'{out}/results.md', f'{summary}\n\n{table}')
  paths = plot(results, out, tol) if results else []
  print(summary)
  print()
  print(table)
  print(
    f'Wrote {out}/results.json, results.csv, results.md, '
    + ', '.join(p.split('/')[-1] for p in paths)
  )


class Programs:
  """Compiled stacks by (activation, dropout): numbers alone never recompile."""

  def __init__(self, flag: dict, sharding: NamedSharding | None):
    self.flag, self.sharding, self.cache = flag, sharding, {}
    self.seed_keys = jax.random.split(
      jax.random.key(flag['seed']), flag['seeds']
    )

  def run_config(self, cfg: Config, tol: dict) -> list[dict]:
    flag, program_key = self.flag, (cfg.activation, cfg.dropout)
    params = jax.tree.map(jnp.float32, stack_params(cfg, flag['width']))
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
            depth=flag['depth'],
            width=flag['width'],
            batch=flag['batch'],
            dtype=DTYPES[flag['dtype']],
            sharding=self.sharding,
          ),
          in_axes=(0, None),
        ),
        # Every process gets the (small) statistics whole.
        out_shardings=replicated,
      )
      start = time.perf_counter()
      self.cache[program_key] = fn.lower(self.seed_keys, params).compile()
      compile_s = time.perf_counter() - start
    start = time.perf_counter()
    runs = jax.block_until_ready(
      self.cache[program_key](self.seed_keys, params)
    )
    run_s = time.perf_counter() - start
    logging.info('%s: compile %.1fs, run %.1fs', cfg.name, compile_s, run_s)
    pred = predict(cfg, flag['depth'], flag['width'])
    result = evaluate(cfg, runs, pred, tol)
    result['timing'] = {'compile_seconds': compile_s, 'run_seconds': run_s}
    return [result]
