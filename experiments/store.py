"""The result store: one atomically published file per cell, named by its key.

Layout of an output directory::

  store.json          which binary owns the directory, and the format
  cells/<key>.json    one finished cell: {'key', 'settings', 'result', ...}

Why one file per cell (and not an append-only log or SQLite):

- Atomic per record: a cell is written to a temporary file in `cells/`,
  flushed to disk, then published with `os.link(temp, final)`, which either
  creates the final name whole or fails because it exists. A reader never
  sees a partial cell, and a writer killed at any instant leaves at most a
  stray temporary file, which readers ignore.
- Safe under concurrent writers, on one machine or on several hosts sharing
  a filesystem: two writers of the same cell race on `link`, exactly one
  wins and the other discards its copy (the contents are equal: a key names
  every setting that shapes the result). Different cells never touch the
  same file, so nothing can be lost. There is no lock to go stale.
- Nothing is ever rewritten, so no record can be duplicated, and a torn
  file (say, a copy made by a tool that is not atomic, or a filesystem that
  lost a write in a crash) is moved aside to `cells/<key>.json.corrupt` and
  computed again.
- SQLite would be simpler on one machine, but its locking is documented as
  unreliable on network filesystems, which is where a cluster sweep writes.

Files are created with mode 0666 masked by the umask (0644 by default), so
colleagues and web servers can read them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from typing import Any

FORMAT = 1
_TEMP_PREFIX = '.tmp-'


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes bytes to path so that readers see the old file or the new one.

  The data goes to a temporary file in the same directory, is flushed to
  disk, gets mode 0666 & ~umask, then is renamed over the target.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = _write_temp(directory, data)
  try:
    os.replace(tmp, path)
  except BaseException:
    _unlink_quietly(tmp)
    raise


def write_text_atomic(path: str, text: str) -> None:
  write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str, data: Any) -> None:
  write_text_atomic(path, json.dumps(data, indent=2) + '\n')


def _write_temp(directory: str, data: bytes) -> str:
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=_TEMP_PREFIX)
  try:
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
  except BaseException:
    _unlink_quietly(tmp)
    raise
  return tmp


def _unlink_quietly(path: str) -> None:
  try:
    os.unlink(path)
  except FileNotFoundError:
    pass


# Cells this process has stored, for the line an interrupted run ends with.
_CELLS_WRITTEN = 0


def cells_written() -> int:
  """How many cells this process has stored (in any store)."""
  return _CELLS_WRITTEN


class StoreError(ValueError):
  """The output directory cannot hold this binary's cells."""


class Store:
  """Finished cells of one binary in one directory.

  Args:
    directory: the output directory; created if absent.
    binary: the name of the binary that owns it. A directory made by
      another binary, or by the older single-file format, is refused with
      a StoreError naming it.
    writer: False for a process that must not touch the directory (the
      other processes of a multi-host computation): it stores and finds
      nothing.
  """

  def __init__(self, directory: str, binary: str, *, writer: bool = True):
    self.directory = directory
    self.binary = binary
    self.writer = writer
    self.cells_dir = os.path.join(directory, 'cells')
    if not writer:
      return
    marker = os.path.join(directory, 'store.json')
    if os.path.exists(os.path.join(directory, 'cells.jsonl')) and not (
      os.path.exists(marker)
    ):
      raise StoreError(
        f'--output_dir={directory} holds results in the old cells.jsonl '
        'format; use a new --output_dir'
      )
    os.makedirs(self.cells_dir, exist_ok=True)
    mine = {'binary': binary, 'format': FORMAT}
    if not os.path.exists(marker):
      self._publish(marker, (json.dumps(mine) + '\n').encode())
    try:
      with open(marker) as f:
        theirs = json.load(f)
    except (OSError, ValueError) as e:
      raise StoreError(f'--output_dir={directory}: unreadable {marker}') from e
    if theirs != mine:
      raise StoreError(
        f'--output_dir={directory} holds results of '
        f'{theirs.get("binary")!r} (format {theirs.get("format")}), not of '
        f'{binary!r}; use another --output_dir'
      )

  def path(self, key: str) -> str:
    return os.path.join(self.cells_dir, f'{key}.json')

  def _publish(self, path: str, data: bytes) -> bool:
    """Creates path with data unless it exists; True if this call made it."""
    tmp = _write_temp(os.path.dirname(path), data)
    try:
      os.link(tmp, path)
    except FileExistsError:
      return False
    except OSError:
      # A filesystem without hard links: rename is still atomic; a racing
      # writer of the same key wrote the same bytes.
      if os.path.exists(path):
        return False
      os.replace(tmp, path)
      return True
    finally:
      _unlink_quietly(tmp)
    return True

  def put(self, record: dict) -> bool:
    """Stores one cell record (it must have a 'key'); False if present."""
    if not self.writer:
      return False
    data = (json.dumps(record, allow_nan=True) + '\n').encode()
    made = self._publish(self.path(record['key']), data)
    if made:
      global _CELLS_WRITTEN
      _CELLS_WRITTEN += 1
    return made

  def get(self, key: str) -> dict | None:
    """The stored record of key, or None (a torn file is moved aside)."""
    if not self.writer:
      return None
    path = self.path(key)
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except FileNotFoundError:
      return None
    try:
      if not data.endswith(b'\n'):
        raise ValueError('no final newline')
      record = json.loads(data)
      if record.get('key') != key:
        raise ValueError('key mismatch')
    except ValueError:
      try:
        os.replace(path, path + '.corrupt')
      except FileNotFoundError:
        pass
      return None
    return record

  def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
    """The stored records among keys, by key."""
    out = {}
    for key in keys:
      record = self.get(key)
      if record is not None:
        out[key] = record
    return out

  def keys(self) -> list[str]:
    """Every stored key (files being written are not listed)."""
    if not self.writer:
      return []
    return sorted(
      name[: -len('.json')]
      for name in os.listdir(self.cells_dir)
      if name.endswith('.json') and not name.startswith(_TEMP_PREFIX)
    )
