r"""A calibrated test of SELU's self-normalization on measured statistics.

Feed it the per-layer mean and std (over units and samples) of a deep SELU
stack, for one or more seeds, with the stack's width and batch: `check`
says whether they sit at the theory's fixed point (0, 1), corrected for
finite width, and how small a deviation the data could have shown.

The test, per statistic c in {mean, std}:

- **Window.** Layers from `burn_in` (default: the second half) on, where the
  stack is stationary.
- **Prediction.** The fixed point of `jaxrelu.selu_theory`'s moment map
  (with alpha dropout where given; (0, 1) for SELU) plus the finite-width
  bias of `finite_size_model`: a first-order 1/n term (row lengths
  fluctuate) and the pooled std's second-order terms (Jensen's
  inequality), which dominate below width 64. Nothing in the prediction
  comes from the data tested; the model's uncertainty (10% of the std's
  bias, 30% of the mean's, from measured stacks) joins the standard error.
- **Dispersion.** A stack whose layer-to-layer fluctuation is more than
  twice the model's per-layer SD is not at a fixed point (it explodes or
  oscillates): FAIL, whatever its average. So are non-finite, huge
  (> 1e100) and constant statistics.
- **Noise, from the data.** Layers are serially correlated (the std is close
  to an AR(1) with coefficient d(nu~)/d(nu) = 0.78, integrated correlation
  time tau ~ 8 layers; the mean has tau ~ 1.5 though the first-order theory
  says 1). The variance of the window average is gamma_0 * tau / (S L) with
  gamma_0 the per-layer variance about each seed's average (corrected for
  that centring) and tau the larger of Geyer's initial-positive-sequence
  estimate, pooled over seeds, and the theory's (1 + J22) / (1 - J22) for
  the std, 1 for the mean. Alpha-dropout rows thus get their own noise.
- **Decision.** t = (measured - predicted) / SE against Student's t, with
  the degrees of freedom of the variance estimate (Satterthwaite: about
  N / (2K + 1 + tau) over N = S L values and K summed lags when tau is
  estimated, S (L / tau - 1) when it is the theory's floor); the two
  p-values are Holm-corrected. FAIL when a
  corrected p-value is <= `level`, or a statistic is not finite. Otherwise
  PASS if the data could have detected a relative error of `detectable`
  (default 2%) in SELU's lambda and in the weight variance with
  probability `power`, else NOT TESTABLE, with the sizes it could detect.

Calibration (BUILD_NOTES.md, "SELU's calibrated test"): the false-alarm rate
on correct SELU stacks was measured over many independent runs at depths 200
and 1000 and widths 64 to 1024.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, ndtri
from jax.typing import ArrayLike

from jaxrelu import _activations, _dropout, selu_theory

__all__ = (
  'BIAS_UNCERTAINTY',
  'FAIL',
  'NOISE_RATIO',
  'NOT_TESTABLE',
  'PARAMETERS',
  'PASS',
  'STATISTICS',
  'VERDICTS',
  'Verdict',
  'autocorrelation_time',
  'check',
  'finite_size_model',
  'sensitivities',
  'simulate',
  'stationary',
)

PASS, FAIL, NOT_TESTABLE = 'PASS', 'FAIL', 'NOT TESTABLE'
VERDICTS = (PASS, FAIL, NOT_TESTABLE)
STATISTICS = ('mean', 'std')
# Parameters whose relative error `check` reports the detectable size of.
PARAMETERS = ('scale', 'weight_variance')
# Relative uncertainty of finite_size_model's bias, added to the standard
# error. Measured at widths 16 to 1024 (benchmark_selu_test, BUILD_NOTES.md):
# the std's bias within 7%, the mean's within 30% (at most 0.0003).
BIAS_UNCERTAINTY = {'mean': 0.3, 'std': 0.1}
# Largest ratio of the measured to the predicted per-layer SD of a
# self-normalizing stack.
NOISE_RATIO = 2.0
# Statistics beyond this are an explosion (and would overflow the variance).
_EXPLODED = 1e100


# ----------------------------------------------------------------------------
# Theory: the fixed point, its sensitivities, and the finite-size model.


def _selu_layer(second, *, tau, scale, rate, dropout):
  """One layer of the pooled moment map, fed the second moment (omega = 0).

  With random zero-mean weights unit i's net input has mean mu * omega_i,
  omega_i ~ N(0, tau), so the pooled net input is N(0, tau (nu + mu^2)).
  Alpha dropout at `rate` follows when `dropout` (static) is True.
  """
  m, v = selu_theory.selu_moments(
    0.0, second, tau=tau, scale=_activations.SELU_SCALE * scale
  )
  if dropout:
    m, v = selu_theory.alpha_dropout_moments(m, v, rate)
  return m, v


@functools.partial(jax.jit, static_argnames='dropout')
def _fixed_point(tau, scale, rate, *, dropout):
  """`stationary`'s numbers: one compiled program for every parameter
  value (they are traced), so `sensitivities`' ten calls compile once."""
  kw = dict(tau=tau, scale=scale, rate=rate, dropout=dropout)

  def step(p):
    m, v = _selu_layer(p[1] ** 2 + p[0] ** 2, **kw)
    return jnp.stack([m, jnp.sqrt(v)])

  p = jax.lax.fori_loop(
    0, 2000, lambda _, p: step(p), jnp.array([0.0, 1.0], jnp.float64)
  )
  j22 = jax.jacfwd(lambda s: step(jnp.stack([p[0], s]))[1])(p[1])
  return p, j22


@functools.lru_cache(maxsize=64)
def stationary(
  *, scale: float = 1.0, weight_variance: float = 1.0, dropout_rate: float = 0.0
) -> dict[str, float]:
  """Fixed point of the pooled moment map and its std-std slope J22.

  Args:
    scale: SELU's lambda, relative to the paper's (1.0 = 1.0507...).
    weight_variance: n * Var(w), relative to LeCun's 1/n.
    dropout_rate: alpha-dropout rate after each activation (0 = none).

  Returns:
    {'mean', 'std', 'j22'}: the attracting fixed point, and d(std')/d(std)
    of the map there (the std's lag-1 autocorrelation in a deep stack).
  """
  with jax.enable_x64(True):
    p, j22 = _fixed_point(
      *(jnp.float64(v) for v in (weight_variance, scale, dropout_rate)),
      dropout=dropout_rate > 0,
    )
    return {'mean': float(p[0]), 'std': float(p[1]), 'j22': float(j22)}


@functools.lru_cache(maxsize=64)
def sensitivities(dropout_rate: float = 0.0) -> dict[str, dict[str, float]]:
  """d(fixed-point statistic) / d(relative parameter error), by parameter.

  Returns:
    {parameter: {'mean': ..., 'std': ...}} for 'scale' (lambda) and
    'weight_variance', by central differences of `stationary` (step 1e-4).
  """
  h = 1e-4
  out = {}
  for name in PARAMETERS:
    hi = stationary(**{name: 1.0 + h}, dropout_rate=dropout_rate)
    lo = stationary(**{name: 1.0 - h}, dropout_rate=dropout_rate)
    out[name] = {c: (hi[c] - lo[c]) / (2 * h) for c in STATISTICS}
  return out


@functools.lru_cache(maxsize=256)
def finite_size_model(
  width: int, batch: int, dropout_rate: float = 0.0
) -> dict[str, float]:
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

  The spread of unit means is stationary at s_m^2 = injection / (1 - chi1).
  Per-unit second moments get the same terms for g = f^2, plus
  E[g']^2 s_m^2. Units are independent given the batch, so a layer's pooled
  mean has SD sqrt(s_m^2 / n). Its pooled variance has SD sqrt(s_g^2 / n),
  and deviations of it accumulate through the map with d(nu~)/d(nu) =
  0.7826, so that SD is multiplied by 1 / sqrt(1 - 0.7826^2). The pooled
  std's SD is half that. All expectations come from Stein's identities
  (E[f'] = E[f z], E[f''] = E[f (z^2 - 1)]), exact across the kink.

  Finite-width bias. Given a sample row h_b, a unit's net input is exactly
  N(0, q_b) over random weights, q_b = |h_b|^2 / n. Row lengths vary: each
  layer resamples them with variance (E[y^4] - 1) / n, and the length map
  G(q) = E[f(sqrt(q) xi)^2] passes them on with slope G'(1) = J22, so
  Var(q) = ((E[y^4] - 1) / n) / (1 - J22^2). Averaging G over rows biases
  the pooled second moment by G''(1) Var(q) / 2 per layer, and the fixed
  point moves by that / (1 - J22). The mean moves by
  F'(1) * shift + F''(1) Var(q) / 2, with F(q) = E[f(sqrt(q) xi)].

  The pooled std is sqrt(second moment - mean^2), so it also carries two
  second-order (1/n^2) terms, from Jensen's inequality: -E[mean^2] / 2 and
  -Var(std) / 2 (the std's own fluctuation); `bias_std` includes them.
  Without them the model was 2x off at width 16 (-0.049 against a measured
  -0.101 +- 0.002, 160 stacks); with them it is -0.098 there, and the
  std's bias is within 7% of measured stacks at widths 16 to 1024, with
  and without alpha dropout (BUILD_NOTES.md, issue 12).

  With alpha dropout every term is taken for the layer's output
  y = a (keep ? f : alpha') + b instead of f (its moments, its mean
  derivatives, E[y^4], and the map's slope J22: 0.69 at rate 0.05, 0.62
  at 0.1); the keep mask's noise enters through Var y.

  Args:
    width: units per layer n.
    batch: samples b.
    dropout_rate: alpha-dropout rate after each activation (0 = none).

  Returns:
    The predicted spreads, the per-layer standard deviations of the pooled
    mean and std, and the biases: 'bias_mean', 'bias_std', and the
    first-order part of the std's, 'bias_std_first_order'.
  """
  j22 = stationary(dropout_rate=dropout_rate)['j22']
  # Alpha dropout: y = a (keep ? f : alpha') + b, keep ~ Bernoulli(k). With
  # rate 0, (a, b, k) = (1, 0, 1) and y = f.
  k = 1.0 - dropout_rate
  alpha_p = -_activations.SELU_SCALE * _activations.SELU_ALPHA
  if dropout_rate > 0:
    a, b = (float(v) for v in selu_theory.alpha_dropout_affine(dropout_rate))
  else:
    a, b = 1.0, 0.0
  with jax.enable_x64(True):

    def e(h, q=1.0):
      return float(selu_theory.gaussian_expectation(h, var=q))

    def kept(z):
      return a * _activations.selu(z) + b

    def power(p, q=1.0):  # E[y^p] for net inputs N(0, q)
      return k * e(lambda z: kept(z) ** p, q) + (1 - k) * (a * alpha_p + b) ** p

    mean_f, m2, m4 = power(1), power(2), power(4)
    # Stein: E[h'] = E[h z], E[h''] = E[h (z^2 - 1)]; a dropped unit is
    # constant, so only kept ones contribute.
    d1 = k * e(lambda z: kept(z) * z)  # E[dy/dz]
    d2 = k * e(lambda z: kept(z) * (z * z - 1))  # E[d2y/dz2]
    g1 = k * e(lambda z: kept(z) ** 2 * z)  # E[d(y^2)/dz]
    g2 = k * e(lambda z: kept(z) ** 2 * (z * z - 1))  # E[d2(y^2)/dz2]
    h = 1e-3
    f_q = [power(1, 1 + i * h) for i in (-1, 0, 1)]
    g_q = [power(2, 1 + i * h) for i in (-1, 0, 1)]
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
  sd_mean = math.sqrt(s_m2 / width)
  sd_std = 0.5 * math.sqrt(s_g2 / width) / math.sqrt(1.0 - j22**2)
  g_curv = (g_q[2] - 2 * g_q[1] + g_q[0]) / h**2
  f_slope = (f_q[2] - f_q[0]) / (2 * h)
  f_curv = (f_q[2] - 2 * f_q[1] + f_q[0]) / h**2
  var_q = ((m4 - m2**2) / width) / (1.0 - j22**2)
  shift = 0.5 * g_curv * var_q / (1.0 - j22)
  bias_mean = f_slope * shift + 0.5 * f_curv * var_q
  first_order = 0.5 * shift
  return {
    'unit_mean_spread': math.sqrt(s_m2),
    'unit_second_moment_spread': math.sqrt(s_g2),
    'sd_layer_mean': sd_mean,
    'sd_layer_std': sd_std,
    'bias_mean': bias_mean,
    'bias_std_first_order': first_order,
    'bias_std': first_order
    - 0.5 * (sd_mean**2 + bias_mean**2)
    - 0.5 * sd_std**2,
  }


# ----------------------------------------------------------------------------
# Statistics.


def _t_sf2(t: float, df: float) -> float:
  """Two-sided p-value P(|T| >= |t|) of Student's t with df > 0."""
  with jax.enable_x64(True):
    x = df / (df + t * t)
    return float(betainc(0.5 * df, 0.5, jnp.float64(x)))


def _t_quantile(tail: float, df: float) -> float:
  """The t with P(T > t) = tail < 0.5, by bisection on `_t_sf2`."""
  two_sided = 2.0 * tail
  lo, hi = 0.0, 1.0
  while _t_sf2(hi, df) > two_sided:
    hi *= 2.0
  for _ in range(60):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if _t_sf2(mid, df) > two_sided else (lo, mid)
  return 0.5 * (lo + hi)


def _normal_quantile(p: float) -> float:
  with jax.enable_x64(True):
    return float(ndtri(jnp.float64(p)))


def _holm(p_values: dict[str, float]) -> dict[str, float]:
  """Holm-adjusted p-values (step-down, monotone, capped at 1).

  Raises:
    ValueError: for a p-value that is NaN or outside [0, 1], naming it.
  """
  for k, p in p_values.items():
    if not 0.0 <= p <= 1.0:
      raise ValueError(f'holm: p-value {k!r} must be in [0, 1], got {p!r}.')
  order = sorted(p_values, key=p_values.get)
  out, running = {}, 0.0
  for i, k in enumerate(order):
    running = max(running, min(1.0, (len(order) - i) * p_values[k]))
    out[k] = running
  return out


def autocorrelation_time(series: ArrayLike, *, min_lags: int = 10) -> float:
  """Integrated autocorrelation time of stationary series, pooled over rows.

  tau = 1 + 2 sum_k rho_k, with rho_k the lag-k autocorrelation pooled over
  the rows (each centred at its own average), summed by Geyer's initial
  positive sequence (pairs rho_{2m} + rho_{2m+1} while they stay positive),
  but always through lag `min_lags`: a weak correlation spread over several
  lags (a SELU stack's layer mean: rho_1..5 = 0.077, 0.063, 0.05, 0.03,
  0.023) would otherwise stop the sum at the first pair that noise makes
  negative, and tau would come out low.

  Centring each row at its own average biases every rho_k by about -tau / L
  (L layers), which over K summed lags is large for short rows (an AR(1)
  of tau 8.1 read as 6.2 at L = 100). With S the sum of the K estimated
  autocorrelations, the corrected estimate is
  tau = (1 + 2 S) / (1 - 2 (K - S) / L) (8.0 there; the denominator is
  floored at 1/2).

  Args:
    series: (seeds, layers), finite.
    min_lags: lags always summed (fewer where the series is shorter).

  Returns:
    tau >= 1 (1 for a series too short to estimate it, or constant).

  Raises:
    ValueError: if `series` is not a finite 2-D array.
  """
  return _autocorrelation(series, min_lags)[0]


def _autocorrelation(series: ArrayLike, min_lags: int) -> tuple[float, int]:
  """`autocorrelation_time`, and how many lags it summed."""
  x = np.asarray(series, np.float64)
  if x.ndim != 2 or not np.all(np.isfinite(x)):
    raise ValueError(
      'autocorrelation_time: series must be a finite (seeds, layers) array, '
      f'got shape {x.shape}{"" if np.all(np.isfinite(x)) else " with NaN/inf"}.'
    )
  x = x - x.mean(axis=1, keepdims=True)
  x = x / max(
    float(np.max(np.abs(x))), np.finfo(np.float64).tiny
  )  # no overflow
  n = x.shape[1]
  gamma0 = np.mean(x * x)
  if n < 4 or gamma0 == 0:
    return 1.0, 0
  total, lags = -1.0, 0  # rho_0 is counted twice below
  for m in range(0, n // 2 - 1):
    pair = 0.0
    for k in (2 * m, 2 * m + 1):
      pair += np.sum(x[:, k:] * x[:, : n - k]) / (x.size * gamma0)
    if pair <= 0 and 2 * m > min(min_lags, n // 4):
      break
    total, lags = total + 2.0 * pair, 2 * m + 1
  half_sum = (total - 1.0) / 2.0
  total = (1.0 + 2.0 * half_sum) / max(1.0 - 2.0 * (lags - half_sum) / n, 0.5)
  return max(1.0, total), lags


@dataclasses.dataclass(frozen=True)
class Verdict:
  """The outcome of `check`: the verdict and every number behind it.

  Dicts keyed by statistic ('mean', 'std') unless noted.

  Attributes:
    verdict: 'PASS', 'FAIL' or 'NOT TESTABLE'.
    reason: the verdict in one sentence.
    level: the family-wise false-alarm rate (over the two statistics).
    seeds: how many independent stacks.
    first_layer: the first layer (1-based) of the window tested.
    layers: layers in the window.
    predicted: fixed point plus finite-width bias.
    bias_uncertainty: the bias model's uncertainty (30% of the mean's
      finite-width bias, 10% of the std's), in the standard error.
    measured: average over seeds and the window.
    seed_spread: standard deviation over seeds of each seed's average (NaN
      for one seed).
    standard_error: of `measured` against `predicted`: from the data (see
      the module docstring), with `bias_uncertainty` added in quadrature.
    autocorrelation_time: tau used (layers).
    degrees_of_freedom: of the t reference (see the module docstring).
    t: (measured - predicted) / standard_error.
    p_value: two-sided raw p-values.
    p_holm: Holm-corrected p-values.
    band: half-width of the pass band around `predicted`: a statistic
      outside it makes the verdict FAIL.
    detectable: smallest deviations detected with probability `power`:
      'mean' and 'std' in the statistic's units, 'scale' (lambda) and
      'weight_variance' as relative errors.
    power: the power `detectable` refers to.
  """

  verdict: str
  reason: str
  level: float
  seeds: int
  first_layer: int
  layers: int
  predicted: dict[str, float]
  bias_uncertainty: dict[str, float]
  measured: dict[str, float]
  seed_spread: dict[str, float]
  standard_error: dict[str, float]
  autocorrelation_time: dict[str, float]
  degrees_of_freedom: dict[str, float]
  t: dict[str, float]
  p_value: dict[str, float]
  p_holm: dict[str, float]
  band: dict[str, float]
  detectable: dict[str, float]
  power: float

  @property
  def passed(self) -> bool:
    return self.verdict == PASS

  def as_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def detectable_text(self) -> str:
    """What a PASS rules out, in one line."""
    d = self.detectable
    return (
      f'detectable with probability {self.power:g} at level {self.level:g}: '
      f'lambda off by {100 * d["scale"]:.2f}%, weight variance off by '
      f'{100 * d["weight_variance"]:.2f}%, fixed point off by '
      f'{d["mean"]:.4f} (mean) / {d["std"]:.4f} (std)'
    )


def _check_real(name: str, value, accepted: str, ok) -> None:
  real = isinstance(value, numbers.Real) and not isinstance(value, bool)
  if not (real and math.isfinite(value) and ok(value)):
    raise ValueError(f'check: {name} must be {accepted}, got {value!r}.')


def _failed(base: dict, reason: str) -> Verdict:
  """A FAIL without statistics (the data are not a stationary stack's)."""
  nan = dict.fromkeys(STATISTICS, math.nan)
  return Verdict(
    verdict=FAIL,
    reason=reason,
    measured=nan,
    seed_spread=nan,
    standard_error=nan,
    autocorrelation_time=nan,
    degrees_of_freedom=nan,
    t=nan,
    p_value=dict.fromkeys(STATISTICS, 0.0),
    p_holm=dict.fromkeys(STATISTICS, 0.0),
    band=nan,
    detectable={**nan, **dict.fromkeys(PARAMETERS, math.nan)},
    **base,
  )


def _as_seeds_by_layers(name: str, x: ArrayLike) -> np.ndarray:
  a = np.asarray(x, np.float64)
  if a.ndim == 1:
    a = a[None]
  if a.ndim != 2 or a.size == 0:
    raise ValueError(
      f'check: {name} must be (layers,) or (seeds, layers) and non-empty, '
      f'got shape {np.shape(x)}.'
    )
  return a


def check(
  means: ArrayLike,
  stds: ArrayLike,
  *,
  width: int,
  batch: int,
  dropout_rate: float = 0.0,
  level: float = 0.01,
  detectable: float = 0.02,
  power: float = 0.8,
  burn_in: int | None = None,
) -> Verdict:
  r"""Do measured per-layer statistics show SELU's self-normalization?

  Args:
    means: per-layer mean over units and samples, shape (layers,) or
      (seeds, layers), layer 1 first.
    stds: per-layer std over units and samples, the same shape.
    width: units per layer (the finite-width bias and its model).
    batch: samples per layer (>= 1).
    dropout_rate: alpha-dropout rate after each activation, in [0, 1)
      (0 = none).
    level: family-wise false-alarm rate over the two statistics, in (0, 1).
    detectable: relative error in lambda and in the weight variance that a
      PASS must be able to rule out, > 0; below that power the verdict is
      NOT TESTABLE.
    power: the probability of detecting an error of size `detectable`, in
      (0, 1).
    burn_in: layers skipped before the window; default half the depth.

  Returns:
    The `Verdict`.

  Raises:
    ValueError: for a bad argument, naming it and the accepted values.

  Examples:
    >>> import numpy as np
    >>> from jaxrelu import self_normalization
    >>> rng = np.random.default_rng(0)
    >>> v = self_normalization.check(
    ...     rng.normal(0, 1e-3, (4, 200)), rng.normal(0.9, 1e-3, (4, 200)),
    ...     width=256, batch=256)
    >>> v.verdict
    'FAIL'
  """
  m, s = _as_seeds_by_layers('means', means), _as_seeds_by_layers('stds', stds)
  if m.shape != s.shape:
    raise ValueError(
      f'check: means and stds must have the same shape, got {m.shape} and '
      f'{s.shape}.'
    )
  for name, v in (('width', width), ('batch', batch)):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
      raise ValueError(f'check: {name} must be an integer >= 1, got {v!r}.')
  _check_real('dropout_rate', dropout_rate, 'in [0, 1)', lambda v: 0 <= v < 1)
  _check_real('level', level, 'in (0, 1)', lambda v: 0 < v < 1)
  _check_real('power', power, 'in (0, 1)', lambda v: 0 < v < 1)
  _check_real('detectable', detectable, '> 0 and finite', lambda v: v > 0)
  seeds, depth = m.shape
  if depth < 8:
    raise ValueError(
      f'check: means and stds need at least 8 layers, got {depth}.'
    )
  if burn_in is None:
    burn_in = depth // 2
  if (
    isinstance(burn_in, bool)
    or not isinstance(burn_in, numbers.Integral)
    or not 0 <= burn_in <= depth - 4
  ):
    raise ValueError(
      f'check: burn_in must be an integer in [0, {depth - 4}] (at least 4 '
      f'layers tested), got {burn_in!r}.'
    )
  if np.any(s < 0):
    raise ValueError('check: stds must be >= 0 (they are standard deviations).')
  window = {'mean': m[:, burn_in:], 'std': s[:, burn_in:]}
  layers = depth - burn_in
  fixed = stationary(dropout_rate=float(dropout_rate))
  model = finite_size_model(int(width), int(batch), float(dropout_rate))
  predicted = {
    'mean': fixed['mean'] + model['bias_mean'],
    'std': fixed['std'] + model['bias_std'],
  }
  # The bias model matches measured stacks within BIAS_UNCERTAINTY
  # (BUILD_NOTES.md): that much is added to the standard error.
  uncertainty = {
    'mean': BIAS_UNCERTAINTY['mean'] * abs(model['bias_mean']),
    'std': BIAS_UNCERTAINTY['std'] * abs(model['bias_std']),
  }
  base = {
    'seeds': seeds,
    'first_layer': burn_in + 1,
    'layers': layers,
    'level': level,
    'power': power,
    'predicted': predicted,
    'bias_uncertainty': uncertainty,
  }
  if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
    return _failed(base, 'a layer statistic is not finite (the stack exploded)')
  if max(np.max(np.abs(m)), np.max(s)) > _EXPLODED:
    return _failed(base, f'a layer statistic exceeds {_EXPLODED:g} (exploded)')
  tau_floor = {'mean': 1.0, 'std': (1 + fixed['j22']) / (1 - fixed['j22'])}
  tau, gamma0, se, df = {}, {}, {}, {}
  for c, x in window.items():
    estimate, lags = _autocorrelation(x, 10)
    tau[c] = max(tau_floor[c], estimate)
    # Degrees of freedom of the variance estimate (Satterthwaite): gamma_0
    # has relative variance ~2 tau / N over N = S L values, and an estimated
    # tau another ~2 (2K + 1) / N over K summed lags (Bartlett's formula for
    # a flat lag window); a floored tau is a constant.
    n_values = seeds * layers
    if estimate > tau_floor[c]:
      df[c] = n_values / (2 * lags + 1 + tau[c])
    else:
      df[c] = seeds * (layers / tau[c] - 1.0)
    df[c] = max(1.0, df[c])
    centred = x - x.mean(axis=1, keepdims=True)
    # Centring each seed at its own average removes ~tau / L of the variance.
    shrink = max(1.0 - tau[c] / layers, 1.0 / layers)
    gamma0[c] = float(np.mean(centred**2)) / shrink
    sampling = gamma0[c] * tau[c] / (seeds * layers)
    if seeds > 1:
      # The seeds' spread estimates the same variance with no assumption on
      # the serial correlation (S - 1 degrees of freedom): pooled with the
      # within-seed estimate by degrees of freedom. It catches what the
      # autocorrelation misses (the mean's slow build-up over the first
      # ~100 layers).
      between = float(np.var(np.mean(x, axis=1), ddof=1)) / seeds
      sampling = (df[c] * sampling + (seeds - 1) * between) / (
        df[c] + seeds - 1
      )
      df[c] += seeds - 1
    se[c] = math.sqrt(sampling + uncertainty[c] ** 2)
  if not all(0 < v < math.inf for v in gamma0.values()):
    return _failed(
      base,
      'a statistic does not fluctuate from layer to layer, or its variance '
      'overflows: not a random stack (a dead or constant one)',
    )
  # A stack that fluctuates far more than finite-size noise allows is not
  # at a fixed point (an explosion or oscillation), whatever its average.
  # The model's per-layer SDs are within 0.75x-1.3x of measured ones at
  # widths 16 to 1024 (BUILD_NOTES.md), so 2x is far outside them.
  noise = {'mean': model['sd_layer_mean'], 'std': model['sd_layer_std']}
  dispersion = None
  for c in STATISTICS:
    ratio = math.sqrt(gamma0[c]) / noise[c]
    if ratio > NOISE_RATIO and dispersion is None:
      dispersion = (
        f'the layer {c} fluctuates {ratio:.3g}x more than finite-size noise '
        f'allows (SD {math.sqrt(gamma0[c]):.3g}, predicted {noise[c]:.3g}): '
        'not at a fixed point'
      )
  measured = {c: float(np.mean(x)) for c, x in window.items()}
  spread = {
    c: float(np.std(np.mean(x, axis=1), ddof=1)) if seeds > 1 else math.nan
    for c, x in window.items()
  }
  t = {c: (measured[c] - predicted[c]) / se[c] for c in se}
  p = {c: _t_sf2(t[c], df[c]) for c in t}
  p_holm = _holm(p)
  # Holm's first step: FAIL iff some |t| exceeds the level / 2 quantile.
  crit = {c: _t_quantile(level / 4, df[c]) for c in t}
  band = {c: crit[c] * se[c] for c in t}
  z_power = _normal_quantile(power)
  det = {c: (crit[c] + z_power) * se[c] for c in t}
  sens = sensitivities(float(dropout_rate))
  for name in PARAMETERS:
    per_unit = max(
      abs(sens[name][c]) / det[c] if det[c] > 0 else math.inf for c in t
    )
    det[name] = 1.0 / per_unit if per_unit > 0 else math.inf
  if dispersion is not None:
    verdict, reason = FAIL, dispersion
  elif min(p_holm.values()) <= level:
    worst = min(p_holm, key=p_holm.get)
    verdict, reason = (
      FAIL,
      (
        f'the {worst} is {measured[worst]:.4f}, predicted '
        f'{predicted[worst]:.4f} +- {band[worst]:.4f} (Holm p = '
        f'{p_holm[worst]:.2g} <= {level:g})'
      ),
    )
  elif max(det[name] for name in PARAMETERS) > detectable:
    verdict, reason = (
      NOT_TESTABLE,
      (
        f'no significant deviation, but the run could not detect a '
        f'{100 * detectable:g}% error with probability {power:g}: the smallest '
        f'it could are {100 * det["scale"]:.2f}% in lambda and '
        f'{100 * det["weight_variance"]:.2f}% in the weight variance'
      ),
    )
  else:
    verdict, reason = (
      PASS,
      (
        f'mean and std within the pass band of the predicted fixed point '
        f'(Holm p = {p_holm["mean"]:.2g}, {p_holm["std"]:.2g})'
      ),
    )
  return Verdict(
    verdict=verdict,
    reason=reason,
    measured=measured,
    seed_spread=spread,
    standard_error=se,
    autocorrelation_time=tau,
    degrees_of_freedom=df,
    t=t,
    p_value=p,
    p_holm=p_holm,
    band=band,
    detectable=det,
    **base,
  )


# ----------------------------------------------------------------------------
# Simulation: the statistics `check` takes, for a stack of known setup.


@functools.partial(
  jax.jit, static_argnames=('width', 'batch', 'depth', 'dtype')
)
def _simulate(
  keys, scale, weight_variance, dropout_rate, *, width, batch, depth, dtype
):
  def one(key):
    k_in, k_layers = jax.random.split(key)
    x0 = jax.random.normal(k_in, (batch, width), dtype)
    w_std = jnp.sqrt(weight_variance / width).astype(dtype)

    def layer(h, k):
      k_w, k_d = jax.random.split(k)
      w = w_std * jax.random.normal(k_w, (width, width), dtype)
      y = scale.astype(dtype) * _activations.selu(h @ w)
      y = _dropout.alpha_dropout(y, dropout_rate, k_d)
      return y, (jnp.mean(y, dtype=jnp.float32), jnp.std(y, dtype=jnp.float32))

    _, stats = jax.lax.scan(layer, x0, jax.random.split(k_layers, depth))
    return stats

  return jax.vmap(one)(keys)


def simulate(
  key: jax.Array,
  *,
  width: int,
  batch: int,
  depth: int,
  seeds: int,
  scale: float = 1.0,
  weight_variance: float = 1.0,
  dropout_rate: float = 0.0,
  dtype=jnp.float32,
) -> tuple[np.ndarray, np.ndarray]:
  """Per-layer statistics of SELU stacks, the input `check` takes.

  Each of `seeds` stacks (keys split from `key`) is `depth` layers of
  Dense (weights N(0, weight_variance / width), drawn per layer) + SELU
  with lambda multiplied by `scale`, + alpha dropout at `dropout_rate`, on a
  (batch, width) standard-normal input. A stack with `scale` or
  `weight_variance` off 1 is a deliberately wrong SELU.

  Returns:
    (means, stds), each (seeds, depth): the mean and std of each layer's
    output over units and samples, in float64.
  """
  for name, v in (
    ('width', width),
    ('batch', batch),
    ('depth', depth),
    ('seeds', seeds),
  ):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f'simulate: {name} must be an integer >= 1, got {v!r}.')
  keys = jax.random.split(key, seeds)
  means, stds = _simulate(
    keys,
    jnp.float32(scale),
    jnp.float32(weight_variance),
    jnp.float32(dropout_rate),
    width=int(width),
    batch=int(batch),
    depth=int(depth),
    dtype=dtype,
  )
  return np.asarray(means, np.float64), np.asarray(stds, np.float64)
