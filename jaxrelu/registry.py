r"""Every activation of jaxrelu, described once.

`ACTIVATIONS` maps each name to an `Activation`: the function, its
hyperparameters with their defaults and accepted values, whether the
dead-unit tracer counts its units (and the jitted cores it recognises it
by), its He-style weight gain, whether it has learnable parameters or
draws random numbers, and jax.nn's counterpart. The tables that list the
activations derive from it: the tracer's kinds (`jaxrelu.diagnostics`),
`jaxrelu.initializers.gain`, and tests that check every table covers
every activation.

Adding a built-in activation: write its function (and its jitted core) in
its module, then one `Activation` here; export it from `jaxrelu`, give the
tests' float64 reference table (tests/jaxrelu/test_activations.py, CASES)
its formula, and README's API and memory tables their rows (tests check
both against this registry). The tracer, `initializers.gain`, the
experiments' lists, plot styles and the benchmark's row derive from here.

Examples:
  >>> from jaxrelu import registry
  >>> spec = registry.get('leaky_relu')
  >>> [(h.name, h.default) for h in spec.hyperparameters]
  [('negative_slope', 0.01)]
  >>> print(f'{spec.gain():.5f}', f'{spec.gain(negative_slope=0.2):.5f}')
  1.41414 1.38675
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping

import jax

from jaxrelu import _activations

__all__ = (
  'ACTIVATIONS',
  'Activation',
  'Core',
  'Hyperparameter',
  'from_path',
  'get',
  'unit_scale_gain',
)


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
  """A keyword hyperparameter of an activation.

  Attributes:
    name: the keyword.
    default: its default (None: it must be given, as prelu's slope).
    accepted: the values accepted, in words (as errors state them).
  """

  name: str
  default: float | None
  accepted: str


@dataclasses.dataclass(frozen=True)
class Core:
  """A jitted core the dead-unit tracer recognises in a jaxpr.

  Attributes:
    name: the core function's name (as the jaxpr records it).
    kind: the kind of rectifier the tracer reports for it.
    arity: its operands: the pre-activation, then hyperparameters (and a
      key).
    primal: the jitted function itself (its custom rule included).
  """

  name: str
  kind: str
  arity: int
  primal: Callable = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Activation:
  """One activation: what every table of activations is derived from.

  Attributes:
    name: its name in `jaxrelu` (and in every experiment).
    fn: the function, ``fn(x, **hyperparameters)``.
    hyperparameters: its keyword hyperparameters, in order.
    rectifier: the dead-unit tracer counts its units (every built-in;
      the exponential units' units can be never positive too, though
      they still pass gradient there).
    cores: the jitted cores the tracer recognises it by.
    gain_fn: the weight gain for given hyperparameter values (keywords;
      the defaults when not given): std = gain / sqrt(fan_in) keeps the
      second moment from layer to layer (He et al. 2015's rule).
    learnable: it has learnable parameters (prelu's slope).
    random: it draws random numbers in training (rrelu).
    jax_nn: jax.nn's function of the same name, if any.
    style: how figures draw it: (colour, line style, marker) in
      matplotlib's terms (Okabe-Ito colours, safe for colour-blind
      readers; no 'x', '^' or 'v' markers, which figures use as marks).
    derived: the properties not declared but derived (a user's
      activation, `from_path`), for reports to say so.
    residual_bytes: bytes per float32 element its backward pass saves
      (`jax.vjp` of ``sum(fn(x))`` at its defaults; in training mode for a
      random one), as measured by the tests; None where not declared (a
      user's activation).
  """

  name: str
  fn: Callable[..., jax.Array]
  hyperparameters: tuple[Hyperparameter, ...]
  rectifier: bool
  cores: tuple[Core, ...]
  gain_fn: Callable[..., float] = dataclasses.field(repr=False)
  learnable: bool = False
  random: bool = False
  jax_nn: Callable[..., jax.Array] | None = None
  style: tuple[str, str, str] = ('#7F7F7F', '-', 'o')
  derived: tuple[str, ...] = ()
  residual_bytes: float | None = None

  def gain(self, **hyperparameters: float) -> float:
    """The weight gain at these hyperparameters (the defaults otherwise).

    Raises:
      TypeError: for a keyword that is not one of its hyperparameters.
    """
    names = [h.name for h in self.hyperparameters]
    unknown = sorted(set(hyperparameters) - set(names))
    if unknown:
      raise TypeError(
        f'{self.name}.gain: unknown hyperparameter {unknown[0]!r}; '
        f'accepted: {", ".join(names) or "none"}.'
      )
    values = {h.name: h.default for h in self.hyperparameters}
    return self.gain_fn(**{**values, **hyperparameters})


def _sloped_gain(negative_slope: float) -> float:
  """sqrt(2 / (1 + a^2)): a rectifier with negative slope a."""
  return math.sqrt(2.0 / (1.0 + negative_slope * negative_slope))


def _rrelu_gain(lower: float, upper: float) -> float:
  """sqrt(2 / (1 + E[a^2])), a ~ U(lower, upper)."""
  second_moment = (lower * lower + lower * upper + upper * upper) / 3.0
  return math.sqrt(2.0 / (1.0 + second_moment))


def unit_scale_gain(fn: Callable[[jax.Array], jax.Array]) -> float:
  """1 / sqrt(E[f(z)^2]), z ~ N(0, 1), by Gaussian quadrature in float64:
  the gain of an activation without a closed form."""
  # Imported here: the tracer reads the registry, and needs no quadrature.
  from jaxrelu import selu_theory

  # A Python constant even when called inside jit (e.g. an init under
  # trace): evaluate eagerly rather than staging the quadrature.
  with jax.ensure_compile_time_eval(), jax.enable_x64(True):
    m2 = float(selu_theory.gaussian_expectation(lambda z: fn(z) ** 2))
  return 1.0 / math.sqrt(m2)


_FINITE = 'any finite number'
_SLOPE = Hyperparameter('negative_slope', 0.01, _FINITE)
_RRELU_BOUNDS = 'in [0, 1], lower <= upper'
_A = _activations


def _core(name: str, kind: str, arity: int, primal: Callable) -> Core:
  return Core(name, kind, arity, primal)


_SPECS = (
  Activation(
    'relu',
    _A.relu,
    (),
    rectifier=True,
    cores=(_core('_relu', 'relu', 1, _A._relu_float),),
    gain_fn=lambda: math.sqrt(2.0),
    jax_nn=jax.nn.relu,
    style=('#000000', '-', 'o'),
    residual_bytes=1,
  ),
  Activation(
    'leaky_relu',
    _A.leaky_relu,
    (_SLOPE,),
    rectifier=True,
    cores=(
      _core('_prelu', 'leaky_relu', 2, _A._prelu_jit),
      _core('_leaky_relu_default', 'leaky_relu', 1, _A._leaky_relu_default_jit),
    ),
    gain_fn=_sloped_gain,
    jax_nn=jax.nn.leaky_relu,
    style=('#E69F00', '-', 's'),
    residual_bytes=1,
  ),
  Activation(
    'prelu',
    _A.prelu,
    # Required; 0.25 is He et al. 2015's initial slope (the layers').
    (Hyperparameter('negative_slope', None, _FINITE),),
    rectifier=True,
    cores=(),  # leaky_relu's core: reported as kind 'leaky_relu'
    gain_fn=lambda negative_slope: _sloped_gain(
      0.25 if negative_slope is None else negative_slope
    ),
    learnable=True,
    style=('#56B4E9', '-', 'D'),
    residual_bytes=1,
  ),
  Activation(
    'rrelu',
    _A.rrelu,
    (
      Hyperparameter('lower', _A.RRELU_LOWER, _RRELU_BOUNDS),
      Hyperparameter('upper', _A.RRELU_UPPER, _RRELU_BOUNDS),
    ),
    rectifier=True,
    cores=(
      _core('_rrelu_train', 'rrelu', 4, _A._rrelu_train),
      # In evaluation: leaky_relu at the bounds' mean.
      _core('_rrelu_eval_default', 'leaky_relu', 1, _A._rrelu_eval_default_jit),
    ),
    gain_fn=_rrelu_gain,
    random=True,
    style=('#009E73', '-', '<'),
    residual_bytes=4,
  ),
  Activation(
    'elu',
    _A.elu,
    (Hyperparameter('alpha', 1.0, _FINITE),),
    rectifier=True,
    cores=(
      _core('_elu', 'elu', 2, _A._elu_jit),
      _core('_elu_default', 'elu', 1, _A._elu_default_jit),
    ),
    gain_fn=lambda alpha: unit_scale_gain(lambda z: _A.elu(z, alpha)),
    jax_nn=jax.nn.elu,
    style=('#D55E00', '-', '*'),
    residual_bytes=4,
  ),
  Activation(
    'celu',
    _A.celu,
    (Hyperparameter('alpha', 1.0, 'any finite nonzero number'),),
    rectifier=True,
    cores=(
      _core('_celu', 'celu', 2, _A._celu_jit),
      _core('_celu_default', 'celu', 1, _A._celu_default_jit),
    ),
    gain_fn=lambda alpha: unit_scale_gain(lambda z: _A.celu(z, alpha)),
    jax_nn=jax.nn.celu,
    style=('#D55E00', ':', 'h'),
    residual_bytes=4,
  ),
  Activation(
    'relu6',
    _A.relu6,
    (),
    rectifier=True,
    cores=(_core('_relu6', 'relu6', 1, _A._relu6_float),),
    # relu's at the unit scale, but for a 6-sigma cap.
    gain_fn=lambda: math.sqrt(2.0),
    jax_nn=jax.nn.relu6,
    style=('#999999', '-', '>'),
    residual_bytes=1,
  ),
  Activation(
    'selu',
    _A.selu,
    (),
    rectifier=True,
    cores=(_core('_selu', 'selu', 1, _A._selu_jit),),
    # LeCun's: what makes (0, 1) the fixed point (Klambauer et al. 2017).
    gain_fn=lambda: 1.0,
    jax_nn=jax.nn.selu,
    style=('#CC79A7', '-', 'p'),
    residual_bytes=4,
  ),
)

ACTIVATIONS: Mapping[str, Activation] = types.MappingProxyType(
  {spec.name: spec for spec in _SPECS}
)


def from_path(
  path: str,
  *,
  label: str | None = None,
  hyperparameters: Mapping[str, float] | None = None,
  rectifier: bool = False,
) -> Activation:
  """A user's activation, given as ``'package.module:function'``.

  The function is imported and checked on a test array before anything
  else runs: it must map a float32 array to one of the same shape and
  dtype, elementwise (changing some inputs changes only those outputs).
  What is not given is derived, and the spec says so: the gain by
  quadrature (`unit_scale_gain`), no learnable parameters or random
  draws, and no rectifier for the dead-unit tracer unless `rectifier`.

  Args:
    path: ``'package.module:function'``.
    label: the name it goes by (default: `path`).
    hyperparameters: keywords the function is always called with.
    rectifier: whether the dead-unit tracer should count its units.

  Returns:
    Its `Activation` (`derived` names what was derived).

  Raises:
    ValueError: for a malformed path, a module or function that cannot be
      imported, or a function that fails the checks, in one line naming
      `path` and what is accepted.
  """
  import functools
  import importlib

  import jax.numpy as jnp
  import numpy as np

  module_name, sep, attribute = path.partition(':')
  if not sep or not module_name or not attribute.isidentifier():
    raise ValueError(
      f'activation {path!r}: expected package.module:function, a Python '
      'module path, a colon and a function name.'
    )
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # any import failure is the user's path
    raise ValueError(
      f'activation {path!r}: cannot import {module_name!r} '
      f'({type(e).__name__}: {e}).'
    ) from None
  fn = getattr(module, attribute, None)
  if not callable(fn):
    raise ValueError(
      f'activation {path!r}: {module_name} has no function {attribute!r}.'
    )
  hyper = dict(hyperparameters or {})
  call = functools.partial(fn, **hyper) if hyper else fn
  x = jnp.linspace(-3.0, 3.0, 15, dtype=jnp.float32).reshape(3, 5)
  try:
    y = np.asarray(call(x))
    changed = x.at[0].set(x[0] + 0.5)
    y_changed = np.asarray(call(changed))
  except Exception as e:  # the user's function failed on the test array
    raise ValueError(
      f'activation {path!r}: fails on a float32 test array of shape (3, 5) '
      f'({type(e).__name__}: {e}).'
    ) from None
  if y.shape != x.shape or y.dtype != x.dtype:
    raise ValueError(
      f'activation {path!r}: maps float32 (3, 5) to {y.dtype} {y.shape}; '
      'an activation keeps the shape and dtype.'
    )
  if not np.array_equal(y[1:], y_changed[1:], equal_nan=True):
    raise ValueError(
      f'activation {path!r}: is not elementwise (changing the first row of '
      'its input changed other rows of its output).'
    )
  return Activation(
    label or path,
    fn,
    tuple(Hyperparameter(k, v, 'as given') for k, v in hyper.items()),
    rectifier=rectifier,
    cores=(),
    gain_fn=lambda **h: unit_scale_gain(functools.partial(fn, **h)),
    derived=(
      'gain',
      'learnable',
      'random',
      *(() if rectifier else ('rectifier',)),
    ),
  )


def get(name: str) -> Activation:
  """The `Activation` named `name`.

  Raises:
    ValueError: for a name not in `ACTIVATIONS`, listing them.
  """
  if name not in ACTIVATIONS:
    raise ValueError(
      f'unknown activation {name!r}; accepted: {", ".join(ACTIVATIONS)}.'
    )
  return ACTIVATIONS[name]
