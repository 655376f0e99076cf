"""Session-wide test settings.

The experiments' trainers compiled in the test processes use
`binaries.FAST_COMPILE` (LLVM -O1, XLA:CPU's IR emitters, no expensive
LLVM passes), as do the experiment binaries the tests start
(`binaries.binary_env`): their small programs are compile-bound. Both
sides of every comparison a test makes between experiment runs are then
compiled alike. The library's own functions keep XLA's defaults.
"""

import binaries

from experiments import model

model.COMPILER_OPTIONS.update(binaries.FAST_COMPILE)
