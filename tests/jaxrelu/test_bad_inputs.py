"""Issue 15: every concrete bad hyperparameter or input raises a clear error.

Each test is one reproducer from the issue. The error must be ValueError or
TypeError and name the function, the argument and the offending value.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

import jaxrelu
from jaxrelu import _layers, diagnostics, initializers, selu_theory
from jaxrelu import nnx as jrn

X = jnp.array([-2.0, -1.0, 0.0, 1.0])
KEY = jax.random.key(0)


class ArrayHyperparameterTest(parameterized.TestCase):
  """A: arrays get the same range checks as scalars."""

  def test_rrelu_array_lower_below_zero(self):
    with self.assertRaisesRegex(
      ValueError, r'rrelu: lower must be in \[0, 1\].*-5\.0'
    ):
      jaxrelu.rrelu(X, deterministic=True, lower=jnp.full(4, -5.0))

  def test_rrelu_array_lower_above_upper(self):
    lower, upper = jnp.array([0.1, 0.3, 0.2, 0.2]), jnp.full(4, 0.25)
    for deterministic in (True, False):
      with self.assertRaisesRegex(
        ValueError, r'rrelu: lower must not exceed upper.*lower\[1\] = 0\.3'
      ):
        jaxrelu.rrelu(
          X, KEY, lower=lower, upper=upper, deterministic=deterministic
        )

  def test_celu_array_alpha_zero(self):
    with self.assertRaisesRegex(ValueError, r'celu: alpha must be nonzero.*0'):
      jaxrelu.celu(X, jnp.zeros(4))

  @parameterized.parameters(
    ('elu', 'alpha'), ('celu', 'alpha'), ('leaky_relu', 'negative_slope')
  )
  def test_all_nan_array_hyperparameter(self, fn, arg):
    with self.assertRaisesRegex(ValueError, f'{fn}: {arg} must be .*nan'):
      getattr(jaxrelu, fn)(X, **{arg: jnp.full(4, jnp.nan)})

  def test_alpha_dropout_array_rate_one(self):
    with self.assertRaisesRegex(
      ValueError, r'alpha_dropout: rate must be in \[0, 1\).*1\.0'
    ):
      jaxrelu.alpha_dropout(X, jnp.ones(4), KEY)

  def test_prelu_non_finite_slope(self):
    for slope in (jnp.nan, [jnp.inf], np.array([0.1, -np.inf, 0.1, 0.1])):
      with self.assertRaisesRegex(
        ValueError, r'prelu: negative_slope must be a finite number.*(nan|inf)'
      ):
        jaxrelu.prelu(X, slope)

  def test_traced_array_hyperparameters_stay_unchecked(self):
    # Documented: a traced value cannot be checked.
    y = jax.jit(lambda a: jaxrelu.celu(X, a))(jnp.zeros(4))
    np.testing.assert_array_equal(y, [0.0, 0.0, np.nan, 1.0])


class AlphaDropoutRateTest(parameterized.TestCase):
  """B: rates near 1, complex rates, alpha_dropout_affine's range."""

  def test_rate_that_rounds_to_one_in_float32(self):
    with self.assertRaisesRegex(
      ValueError, r'alpha_dropout: rate.*rounds to 1 in float32'
    ):
      jaxrelu.alpha_dropout(X, 1 - 1e-12, KEY)

  def test_complex_rate(self):
    for rate in (0.1 + 0j, jnp.array(0.1 + 0.1j)):
      with self.assertRaisesRegex(
        TypeError, r'alpha_dropout: rate must be real.*complex'
      ):
        jaxrelu.alpha_dropout(X, rate, KEY)

  @parameterized.parameters(1.0, -1.0, np.nan)
  def test_affine_bad_rate(self, rate):
    with self.assertRaisesRegex(
      ValueError, r'alpha_dropout_affine: rate must be in \[0, 1\)'
    ):
      selu_theory.alpha_dropout_affine(rate)


class ClearErrorTest(parameterized.TestCase):
  """C: errors that name the argument instead of a JAX internal."""

  def test_string_hyperparameter(self):
    with self.assertRaisesRegex(TypeError, r"elu: alpha must be .*'abc'"):
      jaxrelu.elu(X, 'abc')

  def test_none_input(self):
    for fn in (jaxrelu.relu, jaxrelu.relu6, jaxrelu.elu, jaxrelu.selu):
      with self.assertRaisesRegex(TypeError, r'x must be an array.*None'):
        fn(None)

  def test_none_hyperparameter(self):
    with self.assertRaisesRegex(TypeError, r'elu: alpha must be .*None'):
      jaxrelu.elu(X, None)
    with self.assertRaisesRegex(TypeError, r'prelu: negative_slope .*None'):
      jaxrelu.prelu(X, None)

  def test_rrelu_bound_shape(self):
    for deterministic in (True, False):
      with self.assertRaisesRegex(
        ValueError, r'rrelu: lower of shape \(3,\) does not broadcast'
      ):
        jaxrelu.rrelu(
          X, KEY, lower=jnp.full(3, 0.1), deterministic=deterministic
        )

  def test_rrelu_non_key(self):
    with self.assertRaisesRegex(TypeError, r'rrelu: key must be a PRNG key.*0'):
      jaxrelu.rrelu(X, 0)

  def test_traced_deterministic(self):
    with self.assertRaisesRegex(
      TypeError, r'rrelu: deterministic must be a Python bool.*static'
    ):
      jax.jit(lambda d: jaxrelu.rrelu(X, KEY, deterministic=d))(True)
    with self.assertRaisesRegex(
      TypeError, r'alpha_dropout: deterministic must be a Python bool'
    ):
      jax.jit(lambda d: jaxrelu.alpha_dropout(X, 0.1, KEY, deterministic=d))(
        True
      )

  def test_gain_rrelu_scalar_param(self):
    with self.assertRaisesRegex(
      TypeError, r'gain: param for rrelu must be a \(lower, upper\) pair.*0\.2'
    ):
      initializers.gain('rrelu', 0.2)

  def test_dead_fraction_empty_batch(self):
    with self.assertRaisesRegex(
      ValueError, r'dead_fraction: .* shape \(0, 3\) has an empty batch axis'
    ):
      diagnostics.dead_fraction([jnp.zeros((0, 3))])

  def test_tracker_update_no_leaves(self):
    with self.assertRaisesRegex(
      ValueError, r'tracker_update: preactivations has no arrays'
    ):
      diagnostics.tracker_update(diagnostics.tracker_init([]), [])

  def test_prelu_num_channels_not_int(self):
    for bad in (2.5, True, '3'):
      with self.assertRaisesRegex(
        TypeError, r'PReLU: num_channels must be a positive integer'
      ):
        _layers.check_channels('PReLU', bad, -1)
    with self.assertRaisesRegex(ValueError, r'num_channels must be >= 1.*0'):
      _layers.check_channels('PReLU', 0, -1)
    _layers.check_channels('PReLU', 3, 1)
    _layers.check_channels('PReLU', np.int64(3), -1)
    _layers.check_channels('PReLU', None, None)
    # The layer itself (its constructor's own check).
    with self.assertRaisesRegex(
      TypeError, r'PReLU: num_channels must be a positive integer.*2\.5'
    ):
      jrn.PReLU(num_channels=2.5)


class SilentlyAcceptedTest(parameterized.TestCase):
  """D: inputs accepted today with wrong or surprising results."""

  def test_deterministic_must_be_bool(self):
    for bad in ('no', 0, None):
      with self.assertRaisesRegex(
        TypeError, r'rrelu: deterministic must be a Python bool'
      ):
        jaxrelu.rrelu(X, KEY, deterministic=bad)
      with self.assertRaisesRegex(
        TypeError, r'alpha_dropout: deterministic must be a Python bool'
      ):
        jaxrelu.alpha_dropout(X, 0.1, KEY, deterministic=bad)

  @parameterized.parameters(
    ('elu', 'alpha'),
    ('celu', 'alpha'),
    ('leaky_relu', 'negative_slope'),
    ('prelu', 'negative_slope'),
  )
  def test_complex_and_bool_hyperparameters(self, fn, arg):
    for bad in (1 + 0j, jnp.ones(4, jnp.complex64), True, jnp.ones(4, bool)):
      with self.assertRaisesRegex(TypeError, f'{fn}: {arg} must be real'):
        getattr(jaxrelu, fn)(X, **{arg: bad})
    # The dtype is known under jit, so a traced one is rejected too.
    with self.assertRaisesRegex(TypeError, f'{fn}: {arg} must be real'):
      jax.jit(lambda a: getattr(jaxrelu, fn)(X, **{arg: a}))(jnp.ones(4, bool))

  def test_rrelu_complex_and_bool_bounds(self):
    for bad in (0.1 + 0j, True):
      with self.assertRaisesRegex(TypeError, 'rrelu: lower must be real'):
        jaxrelu.rrelu(X, lower=bad, deterministic=True)

  def test_gain_non_finite_slope(self):
    for bad in (np.nan, np.inf):
      with self.assertRaisesRegex(
        ValueError, r'gain: param .*leaky_relu.* must be a finite'
      ):
        initializers.gain('leaky_relu', bad)

  @parameterized.parameters('relu', 'relu6', 'linear', 'tanh', 'selu')
  def test_gain_param_for_parameterless_activation(self, name):
    with self.assertRaisesRegex(
      ValueError, f'gain: {name} takes no param, got 5.0'
    ):
      initializers.gain(name, 5.0)

  def test_prelu_axis_without_num_channels(self):
    with self.assertRaisesRegex(
      ValueError, r'PReLU: axis=1 needs num_channels'
    ):
      _layers.check_channels('PReLU', None, 1)
    with self.assertRaisesRegex(
      ValueError, r'PReLU: axis=1 needs num_channels'
    ):
      jrn.PReLU(axis=1)

  def test_dead_fraction_all_nan_unit(self):
    # A unit with all-NaN pre-activations is neither dead nor alive: the
    # layer's dead fraction is NaN. A unit with some NaN is not dead.
    pre = jnp.array([[np.nan, np.nan, -1.0], [np.nan, -1.0, -2.0]])
    np.testing.assert_array_equal(
      diagnostics.dead_units([pre])[0], [False, False, True]
    )
    self.assertTrue(np.isnan(diagnostics.dead_fraction([pre])[0]))
    some_nan = jnp.array([[np.nan, 1.0], [-1.0, -1.0]])
    np.testing.assert_array_equal(diagnostics.dead_fraction([some_nan]), [0.0])

  def test_selu_moments_zero_variance(self):
    for var in (0.0, -1.0, np.nan):
      with self.assertRaisesRegex(
        ValueError, r'selu_moments: var must be finite and > 0'
      ):
        selu_theory.selu_moments(0.0, var)
    with self.assertRaisesRegex(
      ValueError, r'selu_moments: tau must be finite and > 0'
    ):
      selu_theory.selu_moments(0.0, 1.0, tau=0.0)

  def test_selu_theory_non_finite_arguments(self):
    # selu_moments(mean=nan) returned NaN moments without an error.
    for fn in (selu_theory.selu_moments, selu_theory.selu_backward_gain):
      name = fn.__name__
      for bad in (np.nan, np.inf, [0.0, np.nan]):
        for arg in ('mean', 'omega', 'alpha', 'scale'):
          kwargs = {'mean': 0.0, 'var': 1.0, arg: bad}
          with self.assertRaisesRegex(
            ValueError, rf'^{name}: {arg} must be a finite number'
          ):
            fn(**kwargs)
        with self.assertRaisesRegex(ValueError, rf'{name}: var must be finite'):
          fn(0.0, bad)
    with self.assertRaisesRegex(ValueError, 'selu_parameters: mean must be'):
      selu_theory.selu_parameters(np.nan, 1.0)
    with self.assertRaisesRegex(ValueError, 'selu_parameters: var must be'):
      selu_theory.selu_parameters(0.0, np.inf)


class ValidInputsUnchangedTest(parameterized.TestCase):
  def test_array_hyperparameters_accepted(self):
    np.testing.assert_allclose(
      jaxrelu.rrelu(
        X, lower=jnp.full(4, 0.1), upper=[0.3] * 4, deterministic=True
      ),
      jnp.where(X > 0, X, 0.2 * X),
      rtol=1e-6,
    )
    np.testing.assert_allclose(
      jaxrelu.celu(X, jnp.full(4, 2.0)), jaxrelu.celu(X, 2.0)
    )
    np.testing.assert_allclose(
      jaxrelu.prelu(X, [0.5]), jnp.where(X > 0, X, 0.5 * X)
    )
    np.testing.assert_allclose(
      jaxrelu.alpha_dropout(X, np.float32(0.1), KEY),
      jaxrelu.alpha_dropout(X, 0.1, KEY),
    )
