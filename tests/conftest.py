"""Session-wide test settings.

The experiments' trainers compiled in the test processes use LLVM -O1,
as do the experiment binaries the tests start (`binaries.binary_env`):
their small programs are compile-bound, and -O1 compiles them about 3.5x
faster than XLA's default -O3. Both sides of every comparison a test
makes between experiment runs are then compiled alike. The library's own
functions keep XLA's defaults.
"""

import binaries

from experiments import model

model.COMPILER_OPTIONS['xla_backend_optimization_level'] = (
  binaries.FAST_COMPILE_LEVEL
)
