"""warns_once: assertWarnsRegex for this suite.

unittest's assertWarns reads every module's __warningregistry__, and
mpmath's deprecated modules warn on that attribute (an error under the
suite's filterwarnings = error), so it fails in a worker that imported
mpmath.
"""

import contextlib
import re
import warnings


@contextlib.contextmanager
def warns_once(test, pattern):
  """Records warnings; exactly one UserWarning must match `pattern`.

  Yields the list of caught warnings, left holding that one.
  """
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    yield caught
  matching = [
    w
    for w in caught
    if issubclass(w.category, UserWarning)
    and re.search(pattern, str(w.message))
  ]
  test.assertLen(matching, 1, [str(w.message) for w in caught])
  caught[:] = matching
