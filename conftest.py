"""Test-session setup (this file's presence puts the repo root on sys.path).

Every test and every binary a test starts shares one persistent XLA
compilation cache, made fresh for the session: a program compiled once is
loaded, not compiled again, by the resumed, split and repeated runs of the
end-to-end tests. The cached executable is the same program, so results do
not change; only the time to the first step does.
"""

import atexit
import os
import shutil
import tempfile

if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='jaxrelu-test-xla-cache-')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
