"""The test run's own setup (conftest.py, pyproject's filterwarnings)."""

import os
import warnings

import binaries
import jax
from absl.testing import absltest


class SharedCompilationCacheTest(absltest.TestCase):
  def test_this_process_and_the_binaries_share_the_runs_cache(self):
    directory = os.environ['JAX_COMPILATION_CACHE_DIR']
    self.assertTrue(os.path.isdir(directory), directory)
    self.assertEqual(jax.config.jax_compilation_cache_dir, directory)
    env = binaries.binary_env('experiments.born_dead')
    self.assertEqual(env['JAX_COMPILATION_CACHE_DIR'], directory)

  def test_a_torn_cache_entry_is_not_a_test_failure(self):
    # jax warns so when an entry it reads is torn (a writer killed or still
    # writing) and compiles afresh; under `filterwarnings = error` that
    # warning would fail a test of correct code.
    with warnings.catch_warnings():
      warnings.simplefilter('error')  # what pyproject's "error" does
      with self.assertRaises(UserWarning):
        warnings.warn(
          "Error reading persistent compilation cache entry for 'x'",
          stacklevel=1,
        )
    warnings.warn(
      "Error reading persistent compilation cache entry for 'jit_f': "
      'error: Error -5 while decompressing data: truncated stream',
      stacklevel=1,
    )
    warnings.warn(
      "Error writing persistent compilation cache entry for 'f'", stacklevel=1
    )


if __name__ == '__main__':
  absltest.main()
