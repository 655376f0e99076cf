r"""Initializers matched to each activation, and RAI against dying ReLU.

`gain(activation)` is the factor g such that weights with variance g^2 / n
keep the second moment of the activations from layer to layer. That is the
reasoning of He et al. (2015): for a rectifier with negative slope a,
E[f(z)^2] = (1 + a^2) / 2 * E[z^2], so std = sqrt(2 / ((1 + a^2) n)) and
g = sqrt(2 / (1 + a^2)). For the exponential units there is no closed form;
we use the same rule at the unit scale, g = 1 / sqrt(E[f(z)^2]) for
z ~ N(0, 1), computed exactly by quadrature. For SELU this gives 1 (LeCun),
the self-normalizing choice.

Examples:
  >>> from jaxrelu import initializers
  >>> print(f"{initializers.gain('relu'):.6f}")
  1.414214
  >>> print(f"{initializers.gain('leaky_relu', 0.01):.5f}")
  1.41414
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrelu import _activations, registry

__all__ = (
  'ACTIVATIONS',
  'RAI_SIGMA',
  'for_activation',
  'gain',
  'rai',
)

Initializer = Callable[..., jax.Array]

# Gains of functions that are not jaxrelu's (every activation of jaxrelu
# has its own, in `jaxrelu.registry`).
_OTHERS = {
  'linear': 1.0,
  'identity': 1.0,
  'sigmoid': 1.0,
  'tanh': 5.0 / 3.0,
}
ACTIVATIONS = (*_OTHERS, *registry.ACTIVATIONS)


def _number(activation: str, value, *names: str) -> float:
  """A finite real Python number, or a clear TypeError / ValueError."""
  what = f'param for {activation}' + (f' ({names[0]})' if names else '')
  if isinstance(value, bool | complex) or not isinstance(
    value, int | float | np.integer | np.floating
  ):
    raise TypeError(
      f'gain: {what} must be a real Python number, got '
      f'{type(value).__name__} {value!r}.'
    )
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f'gain: {what} must be a finite number, got {value!r}.')
  return value


def gain(
  activation: str, param: float | tuple[float, float] | None = None
) -> float:
  r"""Recommended gain for weights feeding `activation` (std = gain / sqrt(n)).

  - linear, identity, sigmoid: 1.
  - tanh: 5/3. This is PyTorch's heuristic; the unit-scale rule below gives
    1.593.
  - relu, relu6: sqrt(2), from He et al. 2015. relu6 equals relu at the unit
    scale, except for a 6-sigma cap.
  - leaky_relu and prelu with slope a: sqrt(2 / (1 + a^2)). `param` is the
    slope; the defaults are 0.01 and 0.25.
  - rrelu with slopes a ~ U(lower, upper):
    sqrt(2 / (1 + E[a^2])), E[a^2] = (l^2 + l u + u^2) / 3. `param` is
    (lower, upper); the default is (1/8, 1/3).
  - elu, celu: 1 / sqrt(E[f(z)^2]) for z ~ N(0, 1), with `param` as alpha
    (default 1). This keeps the second moment at the unit scale.
  - selu: 1, LeCun-normal (Klambauer et al. 2017). It is what makes (0, 1)
    the fixed point. PyTorch's calculate_gain('selu') = 3/4 is chosen to
    balance gradients, and it breaks self-normalization: activations shrink
    to std ~0.2 in deep stacks (experiments/selu_deep_stack, "torch gain
    3/4").

  Raises:
    ValueError: for an unknown activation; a param for an activation that
      takes none (linear, identity, sigmoid, tanh, relu, relu6, selu); a
      non-finite slope or alpha; alpha == 0 for celu; rrelu bounds outside
      0 <= lower <= upper <= 1.
    TypeError: for a param of the wrong kind: not a real number (a string,
      bool, complex, array), or for rrelu not a (lower, upper) pair.
  """
  if activation in _OTHERS or (
    activation in registry.ACTIVATIONS
    and not registry.ACTIVATIONS[activation].hyperparameters
  ):
    if param is not None:
      takes = [n for n, s in registry.ACTIVATIONS.items() if s.hyperparameters]
      raise ValueError(
        f'gain: {activation} takes no param, got {param!r}. Pass '
        f'gain({activation!r}), or name a parameterised activation '
        f'({", ".join(takes)}).'
      )
    if activation in _OTHERS:
      return _OTHERS[activation]
    return registry.ACTIVATIONS[activation].gain()
  if activation not in registry.ACTIVATIONS:
    raise ValueError(
      f'gain: unknown activation {activation!r}; accepted: '
      f'{", ".join(ACTIVATIONS)}.'
    )
  spec = registry.ACTIVATIONS[activation]
  names = [h.name for h in spec.hyperparameters]
  if param is None:
    return spec.gain()
  if len(names) == 1:
    # A slope is named by the activation alone, as before; alpha by name.
    named = () if names[0] == 'negative_slope' else (names[0],)
    value = _number(activation, param, *named)
    if activation == 'celu' and value == 0:
      raise ValueError('gain: param for celu (alpha) must be nonzero, got 0.0.')
    return spec.gain(**{names[0]: value})
  if not isinstance(param, tuple | list) or len(param) != len(names):
    raise TypeError(
      f'gain: param for {activation} must be a '
      f'({", ".join(names)}) pair, got {param!r}.'
    )
  values = [
    _number(activation, p, n) for p, n in zip(param, names, strict=True)
  ]
  if activation == 'rrelu':
    _activations.check_rrelu_bounds(*values, 'gain')
  return spec.gain(**dict(zip(names, values, strict=True)))


def for_activation(
  activation: str,
  param: float | tuple[float, float] | None = None,
  *,
  mode: str = 'fan_in',
  distribution: str = 'truncated_normal',
  in_axis: int = -2,
  out_axis: int = -1,
) -> Initializer:
  """A `jax.nn.initializers.variance_scaling` initializer with gain^2.

  The returned function has the `jax.nn.initializers` signature
  ``init(key, shape, dtype=jnp.float_)``.

  Examples:
    >>> import jax
    >>> from jaxrelu import initializers
    >>> init = initializers.for_activation('relu', distribution='normal')
    >>> w = init(jax.random.key(0), (1000, 500))
    >>> print(f'{float(w.var() * 1000):.2f}')
    2.00
  """
  return jax.nn.initializers.variance_scaling(
    gain(activation, param) ** 2,
    mode,
    distribution,
    in_axis=in_axis,
    out_axis=out_axis,
  )


# Lu, Shin, Su & Karniadakis (2020), Dying ReLU and Initialization: the
# symmetric part's scale and the asymmetric distribution Beta(2, 1).
RAI_SIGMA = 0.6007


def rai(
  key: jax.Array, fan_in: int, fan_out: int, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
  r"""Randomized Asymmetric Initialization of a Dense layer's weight and bias.

  Weight and bias are drawn together as V = [W; b], of shape
  (fan_in + 1, fan_out), with entries N(0, sigma^2 / fan_in),
  sigma = 0.6007. Then, for every output unit (column), one entry chosen
  uniformly among its fan_in + 1 is replaced by a draw from Beta(2, 1),
  drawn as the square root of a uniform draw (exact: Beta(a, 1) has CDF
  x^a, the law of U^(1/a)), which compiles in a fifth of the time of
  `jax.random.beta`'s rejection loop.
  That entry is positive, so no unit can start dead for every input, which
  makes a born-dead network far less likely than with symmetric
  initializations (Lu et al. 2020).

  Args:
    key: a PRNG key.
    fan_in: number of inputs.
    fan_out: number of units.
    dtype: dtype of the results.

  Returns:
    (weight of shape (fan_in, fan_out), bias of shape (fan_out,)), in the
    flax / `x @ W + b` layout.
  """
  if fan_in < 1 or fan_out < 1:
    raise ValueError(
      f'rai: fan_in and fan_out must be >= 1, got {fan_in}, {fan_out}.'
    )
  k_sym, k_pick, k_asym = jax.random.split(key, 3)
  v = (
    RAI_SIGMA
    / math.sqrt(fan_in)
    * jax.random.normal(k_sym, (fan_in + 1, fan_out), jnp.float32)
  )
  rows = jax.random.randint(k_pick, (fan_out,), 0, fan_in + 1)
  # Beta(2, 1) as sqrt(U): no rejection loop to compile or run. U = 1 - u
  # for u uniform on [0, 1) lies in (0, 1], so the entry is never 0 (u is 0
  # with probability 2^-23 in float32).
  u = jax.random.uniform(k_asym, (fan_out,), jnp.float32)
  v = v.at[rows, jnp.arange(fan_out)].set(jnp.sqrt(1.0 - u))
  v = v.astype(dtype)
  return v[:-1], v[-1]
