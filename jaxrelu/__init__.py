"""jaxrelu: exact, memory-lean rectifier activations for JAX.

Flax layers live in `jaxrelu.linen` and `jaxrelu.nnx`, SELU's theory in
`jaxrelu.selu_theory`, the description of every activation in
`jaxrelu.registry` (import them by name).
"""

from jaxrelu._activations import SELU_ALPHA as SELU_ALPHA
from jaxrelu._activations import SELU_SCALE as SELU_SCALE
from jaxrelu._activations import celu as celu
from jaxrelu._activations import elu as elu
from jaxrelu._activations import leaky_relu as leaky_relu
from jaxrelu._activations import prelu as prelu
from jaxrelu._activations import relu as relu
from jaxrelu._activations import relu6 as relu6
from jaxrelu._activations import rrelu as rrelu
from jaxrelu._activations import selu as selu
from jaxrelu._dropout import alpha_dropout as alpha_dropout
from jaxrelu.selu_theory import alpha_dropout_affine as alpha_dropout_affine

__version__ = '0.1.0'

__all__ = (
  'SELU_ALPHA',
  'SELU_SCALE',
  'alpha_dropout',
  'alpha_dropout_affine',
  'celu',
  'elu',
  'leaky_relu',
  'prelu',
  'relu',
  'relu6',
  'rrelu',
  'selu',
)
