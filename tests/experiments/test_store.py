"""experiments.store verifies every cell it reads; a fuzz of its reader.

A stored cell is returned only when it is exactly what was stored for its
key: anything else (torn, of the wrong shape, edited, another cell's
content, not a regular file) is moved aside and reads as absent, so the
sweep computes it again. Never a traceback, never a wrong record.
"""

import copy
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile

from absl.testing import absltest

from experiments import store as store_lib
from experiments import sweep

_SETTINGS = {'activation': 'relu', 'depth': 3, 'lr': 0.1, 'version': 2}
_OTHER = {**_SETTINGS, 'lr': 0.5}
_RESULT = {'loss': [0.5, 0.25, None], 'dead': 0.125, 'held': True}


def _record(settings):
  return {
    'key': sweep.cell_key('fuzz', settings),
    'binary': 'fuzz',
    'settings': settings,
    'result': _RESULT,
    'provenance': {'commit': 'abc'},
  }


def _paths(obj, prefix=()):
  """Every path to a value inside a JSON object."""
  yield prefix
  if isinstance(obj, dict):
    for k, v in obj.items():
      yield from _paths(v, (*prefix, k))
  elif isinstance(obj, list):
    for i, v in enumerate(obj):
      yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
  if not path:
    return value
  obj = copy.deepcopy(obj)
  parent = obj
  for p in path[:-1]:
    parent = parent[p]
  parent[path[-1]] = value
  return obj


def _delete(obj, path):
  obj = copy.deepcopy(obj)
  parent = obj
  for p in path[:-1]:
    parent = parent[p]
  del parent[path[-1]]
  return obj


_VALUES = (None, 0, -1, 99999, 0.5, float('nan'), '', 'x', [], {}, [1, 2, 3])


class VerifiedReadTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir)
    self.store = store_lib.Store(self.dir, 'fuzz')
    self.record = _record(_SETTINGS)
    self.key = self.record['key']
    self.path = self.store.path(self.key)
    self.assertTrue(self.store.put(self.record))
    with open(self.path, 'rb') as f:
      self.good = f.read()
    self.stored = json.loads(self.good)

  def write(self, data: bytes):
    """Replaces the cell file with data."""
    self.clear()
    with open(self.path, 'wb') as f:
      f.write(data)

  def clear(self):
    for path in (self.path, self.path + '.corrupt'):
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
      elif os.path.lexists(path):
        os.unlink(path)

  def assert_set_aside(self, what):
    with self.assertLogs(level='WARNING') as logs:
      self.assertIsNone(self.store.get(self.key, _SETTINGS), what)
    self.assertLen(logs.output, 1)
    self.assertIn('it will be computed again', logs.output[0])
    self.assertFalse(os.path.lexists(self.path), what)
    # And the cell is computed and stored again.
    self.assertTrue(self.store.put(self.record), what)
    self.assertEqual(self.store.get(self.key, _SETTINGS), self.stored)

  def test_good_cell_reads_back(self):
    self.assertEqual(self.store.get(self.key, _SETTINGS), self.stored)
    self.assertEqual(self.stored['result'], _RESULT)

  def test_each_reproducer_is_set_aside_and_recomputed(self):
    other = _record(_OTHER)
    forged = {**other, 'key': self.key}  # another cell's content, key edited
    edited = _set(self.stored, ('settings', 'depth'), 99999)
    edited = {**edited, 'digest': store_lib.digest(edited)}  # digest redone
    for what, data in (
      ('a list', b'[1,2,3]\n'),
      ('null', b'null\n'),
      ('key only', json.dumps({'key': self.key}).encode() + b'\n'),
      ('a string', b'"cell"\n'),
      ('result a string', json.dumps(_set(self.stored, ('result',), 'x'))),
      ('another cell, key edited', json.dumps(forged).encode() + b'\n'),
      ('settings edited', json.dumps(edited).encode() + b'\n'),
      ('result removed', json.dumps(_delete(self.stored, ('result',)))),
      ('result edited', json.dumps(_set(self.stored, ('result', 'dead'), 0))),
      ('deep nesting', b'[' * 100_000 + b']' * 100_000 + b'\n'),
      ('torn', self.good[:-7]),
    ):
      if isinstance(data, str):
        data = data.encode() + b'\n'
      self.write(data)
      self.assert_set_aside(what)

  def test_directory_and_dangling_link_at_a_cell_path(self):
    # A dangling link was reported missing forever: put could not link
    # over it.
    self.clear()
    os.mkdir(self.path)
    self.assert_set_aside('a directory')
    self.clear()
    os.symlink(os.path.join(self.dir, 'nowhere'), self.path)
    self.assert_set_aside('a dangling link')

  def test_a_good_cell_published_after_a_torn_read_is_kept(self):
    # The reader saw a torn file; a writer then published the good cell
    # (a new file at the path): it must not be moved aside.
    self.write(self.good[:-3])
    with open(self.path, 'rb') as f:
      info = os.fstat(f.fileno())
    os.unlink(self.path)
    self.assertTrue(self.store.put(self.record))
    self.store._set_aside(self.path, info, 'torn')
    self.assertEqual(self.store.get(self.key, _SETTINGS), self.stored)

  def test_a_read_only_store_reads_and_never_writes(self):
    # --report_only opens the store read-only (it may be on read-only
    # media): a bad cell is named and left in place, nothing is written.
    reader = store_lib.Store(self.dir, 'fuzz', read_only=True)
    self.assertEqual(reader.get(self.key, _SETTINGS), self.stored)
    self.write(self.good[:-7])
    with self.assertLogs(level='WARNING') as logs:
      self.assertIsNone(reader.get(self.key, _SETTINGS))
    self.assertLen(logs.output, 1)
    self.assertIn('a read-only run leaves it in place', logs.output[0])
    with open(self.path, 'rb') as f:
      self.assertEqual(f.read(), self.good[:-7])
    for write in (lambda: reader.put(self.record), lambda: reader.claim('k')):
      with self.assertRaisesRegex(store_lib.StoreError, 'opened read-only'):
        write()
    # Another binary's directory is refused read-only too; an absent one
    # is empty (and not created).
    with self.assertRaisesRegex(store_lib.StoreError, "not of 'other'"):
      store_lib.Store(self.dir, 'other', read_only=True)
    absent = os.path.join(self.dir, 'absent')
    self.assertIsNone(
      store_lib.Store(absent, 'fuzz', read_only=True).get(self.key)
    )
    self.assertFalse(os.path.exists(absent))

  def test_store_marker_of_the_wrong_shape_or_format_is_named(self):
    marker = os.path.join(self.dir, 'store.json')
    for content, message in (
      # Was an AttributeError traceback.
      ('[1, 2]\n', r'is not a store marker \(a JSON list\)'),
      ('{"binary": "other", "format": 1}\n', "results of 'other', not of"),
      # Read "holds results of 'fuzz' (format 1), not of 'fuzz'".
      (
        '{"binary": "fuzz", "format": 1, "extra": 2}\n',
        "holds 'fuzz' results in another store format",
      ),
    ):
      with open(marker, 'w') as f:
        f.write(content)
      with self.assertRaisesRegex(store_lib.StoreError, message):
        store_lib.Store(self.dir, 'fuzz')

  def test_claims_share_work_and_are_taken_over_from_the_dead(self):
    other = store_lib.Store(self.dir, 'fuzz')  # a second writer
    self.assertTrue(self.store.claim('g0'))
    self.assertFalse(other.claim('g0'))  # held by a live process
    self.assertEqual(self.store.keys(), [self.key])  # claims are not cells
    self.store.release('g0')
    self.assertTrue(other.claim('g0'))
    other.release('g0')
    path = os.path.join(self.store.cells_dir, '.claim-g1')
    # A writer killed on this host: its pid is gone.
    dead = subprocess.run(
      [sys.executable, '-c', 'import os; print(os.getpid())'],
      capture_output=True,
      text=True,
      check=True,
    )
    with open(path, 'w') as f:
      json.dump({'host': socket.gethostname(), 'pid': int(dead.stdout)}, f)
    self.assertTrue(other.claim('g1'))
    other.release('g1')
    # Another host's writer: alive while its heartbeat is fresh.
    with open(path, 'w') as f:
      json.dump({'host': 'elsewhere', 'pid': 1}, f)
    self.assertFalse(other.claim('g1'))
    past = os.path.getmtime(path) - store_lib.CLAIM_STALE_SECONDS - 1
    os.utime(path, (past, past))
    self.assertTrue(other.claim('g1'))
    other.release('g1')
    self.assertEqual(
      [n for n in os.listdir(self.store.cells_dir) if n.startswith('.claim')],
      [n for n in os.listdir(self.store.cells_dir) if '.stale-' in n],
    )

  def test_stale_temporary_files_are_removed_on_start(self):
    # Killed runs left .tmp-* files that no run removed.
    old = os.path.join(self.store.cells_dir, '.tmp-killed')
    fresh = os.path.join(self.store.cells_dir, '.tmp-writing-now')
    for path in (old, fresh):
      with open(path, 'w') as f:
        f.write('{')
    past = os.path.getmtime(old) - store_lib.STALE_TEMP_SECONDS - 1
    os.utime(old, (past, past))
    store_lib.Store(self.dir, 'fuzz')
    self.assertFalse(os.path.exists(old))
    self.assertTrue(os.path.exists(fresh))  # another writer's, in flight

  def test_fuzz_of_mutated_cells(self):
    # 2,000 seeded mutations of a real cell: never a traceback, and a
    # record is returned only when it is the stored one.
    rng = random.Random(0)
    paths = [p for p in _paths(self.stored) if p]
    other = json.dumps(_record(_OTHER)).encode() + b'\n'
    returned = set_aside = 0
    logging.disable(logging.WARNING)  # 2,000 set-aside lines
    self.addCleanup(logging.disable, logging.NOTSET)
    for i in range(2000):
      kind = i % 6
      if kind == 0:  # truncate
        data = self.good[: rng.randrange(len(self.good))]
      elif kind == 1:  # flip bytes
        data = bytearray(self.good)
        for _ in range(rng.randint(1, 3)):
          data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        data = bytes(data)
      elif kind == 2:  # change a value's type
        obj = _set(self.stored, rng.choice(paths), rng.choice(_VALUES))
        data = json.dumps(obj).encode() + b'\n'
      elif kind == 3:  # delete a field
        obj = _delete(self.stored, rng.choice(paths))
        data = json.dumps(obj).encode() + b'\n'
      elif kind == 4:  # nest
        depth = rng.choice((1, 10, 1000, 50_000))
        data = b'[' * depth + self.good.strip() + b']' * depth + b'\n'
      else:  # splice in another cell's bytes
        cut = rng.randrange(len(self.good))
        data = self.good[:cut] + other[cut:]
      self.write(data)
      got = self.store.get(self.key, _SETTINGS)
      if got is None:
        set_aside += 1
        self.assertFalse(os.path.lexists(self.path), i)
      else:
        returned += 1
        self.assertEqual(got, self.stored, i)
    self.assertGreater(set_aside, 1800)
    # A flip inside the whitespace, say, leaves the same record.
    self.assertLess(returned, 200)


if __name__ == '__main__':
  absltest.main()
