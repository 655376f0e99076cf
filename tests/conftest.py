"""Session-wide test settings.

The experiments' trainers compiled in the test processes use
`binaries.FAST_COMPILE` (LLVM -O1, XLA:CPU's IR emitters, no expensive
LLVM passes), as do the experiment binaries the tests start
(`binaries.binary_env`): their small programs are compile-bound. Both
sides of every comparison a test makes between experiment runs are then
compiled alike. The library's own functions keep XLA's defaults.

Every process of the run (pytest's workers and the binaries the tests
start) shares one persistent compilation cache, a fresh directory removed
at the end: a program one process compiled is loaded by the next (a
binary's resumed run, the wheel's console scripts, a worker's programs
the other worker compiled too). A cached executable is the one XLA would
compile again: the cache key holds the program, its compile options,
XLA_FLAGS and the jax version. Only programs that took 0.3 s or more to
compile are stored (writing the rest costs more than it saves).
"""

import atexit
import os
import shutil
import tempfile

# Before jax is imported, so that a run without pytest-xdist has it too;
# the workers inherit it from the main process.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix='jaxrelu-tests-xla-cache-')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.3')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import binaries

from experiments import model

model.COMPILER_OPTIONS.update(binaries.FAST_COMPILE)
