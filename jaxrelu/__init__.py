"""jaxrelu: exact, memory-lean rectifier activations for JAX."""

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

__version__ = '0.1.0'

__all__ = (
  'SELU_ALPHA',
  'SELU_SCALE',
  'celu',
  'elu',
  'leaky_relu',
  'prelu',
  'relu',
  'relu6',
  'rrelu',
  'selu',
)
