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

import hashlib
import json
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterable
from typing import Any

from absl import logging

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


# A temporary cell file lives while one cell is written (milliseconds); one
# older than this was left by a killed writer.
STALE_TEMP_SECONDS = 600
# A writer computing a group holds a claim file and touches it this often;
# a claim untouched for CLAIM_STALE_SECONDS, or whose process on this host
# is gone, is taken over.
CLAIM_HEARTBEAT_SECONDS = 10
CLAIM_STALE_SECONDS = 120
_CLAIM_PREFIX = '.claim-'


_HELD_CLAIMS: set[str] = set()
_HEARTBEAT: list[threading.Thread] = []


def _start_heartbeat() -> None:
  """Touches every claim this process holds, every heartbeat, in a daemon
  thread (a group's compute can take longer than CLAIM_STALE_SECONDS)."""
  if _HEARTBEAT and _HEARTBEAT[0].is_alive():
    return

  def beat():
    while True:
      time.sleep(CLAIM_HEARTBEAT_SECONDS)
      for path in list(_HELD_CLAIMS):
        try:
          os.utime(path)
        except OSError:
          pass

  thread = threading.Thread(target=beat, name='claim-heartbeat', daemon=True)
  thread.start()
  _HEARTBEAT[:] = [thread]


def _claim_is_stale(path: str) -> bool:
  """Whether the claim's owner is gone: its pid is dead on this host, or
  its heartbeat stopped (the only sign from another host)."""
  try:
    age = time.time() - os.stat(path).st_mtime
    with open(path) as f:
      owner = json.load(f)
  except FileNotFoundError:
    return False  # released meanwhile: the next create decides
  except (OSError, ValueError):
    owner = None  # torn (its writer died while writing it), or unreadable
  if age > CLAIM_STALE_SECONDS:
    return True
  if not isinstance(owner, dict):
    return age > CLAIM_HEARTBEAT_SECONDS
  if owner.get('host') == socket.gethostname():
    try:
      os.kill(int(owner.get('pid')), 0)
    except ProcessLookupError:
      return True
    except (PermissionError, TypeError, ValueError, OverflowError):
      return False
  return False


def _remove_stale_temps(directory: str) -> None:
  """Removes temporary files that killed writers left in directory."""
  now = time.time()
  for entry in os.scandir(directory):
    stale_claim = entry.name.startswith(_CLAIM_PREFIX) and '.stale-' in (
      entry.name
    )
    if (entry.name.startswith(_TEMP_PREFIX) or stale_claim) and (
      entry.is_file()
    ):
      try:
        if now - entry.stat().st_mtime > STALE_TEMP_SECONDS:
          os.unlink(entry.path)
      except FileNotFoundError:
        pass


def _unlink_quietly(path: str) -> None:
  try:
    os.unlink(path)
  except FileNotFoundError:
    pass


def digest(record: dict) -> str:
  """A hash of every field of a cell record but the digest itself."""
  identity = {k: v for k, v in record.items() if k != 'digest'}
  text = json.dumps(identity, sort_keys=True, separators=(',', ':'))
  return hashlib.sha256(text.encode()).hexdigest()


def _as_json(value: Any) -> str:
  return json.dumps(value, sort_keys=True, separators=(',', ':'))


def _identity(info: os.stat_result) -> tuple:
  """What tells one file from another at the same path: inode numbers are
  reused at once, so the size and times too."""
  return (
    info.st_ino,
    info.st_dev,
    info.st_size,
    info.st_mtime_ns,
    info.st_ctime_ns,
  )


def _checked(
  data: bytes, key: str, binary: str, settings: dict | None
) -> tuple[dict | None, str | None]:
  """(record, None) for a good cell file's bytes, else (None, the problem)."""
  if not data.endswith(b'\n'):
    return None, 'torn (no final newline)'
  try:
    record = json.loads(data)
  except (ValueError, RecursionError):
    return None, 'not JSON'
  if not isinstance(record, dict):
    return None, f'not a cell record (a JSON {type(record).__name__})'
  if record.get('key') != key:
    return None, 'its key is not its file name'
  if record.get('binary') != binary:
    return None, f'not a cell of {binary}'
  if not isinstance(record.get('settings'), dict):
    return None, 'no settings'
  if not isinstance(record.get('result'), dict):
    return None, 'no result'
  try:
    if settings is not None and _as_json(record['settings']) != _as_json(
      settings
    ):
      return None, 'its settings are not the ones its key is derived from'
    if record.get('digest') != digest(record):
      return None, 'its content does not match its digest'
  except (TypeError, ValueError, RecursionError):
    return None, 'not a cell record'
  return record, None


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
    read_only: read the cells and never write (a --report_only run, which
      works on read-only media): nothing is created, cleaned or set aside
      (a bad cell is named in a warning and reads as absent), and `put`
      and `claim` are refused.
  """

  def __init__(
    self,
    directory: str,
    binary: str,
    *,
    writer: bool = True,
    read_only: bool = False,
  ):
    self.directory = directory
    self.binary = binary
    self.writer = writer
    self.read_only = read_only
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
    if read_only:
      if os.path.exists(marker):
        self._check_marker(marker)
      return
    os.makedirs(self.cells_dir, exist_ok=True)
    _remove_stale_temps(self.cells_dir)
    if not os.path.exists(marker):
      mine = {'binary': binary, 'format': FORMAT}
      self._publish(marker, (json.dumps(mine) + '\n').encode())
    self._check_marker(marker)

  def _check_marker(self, marker: str) -> None:
    """Refuses a directory another binary or store format made."""
    directory, binary = self.directory, self.binary
    mine = {'binary': binary, 'format': FORMAT}
    try:
      with open(marker) as f:
        theirs = json.load(f)
    except (OSError, ValueError, RecursionError) as e:
      raise StoreError(f'--output_dir={directory}: unreadable {marker}') from e
    if not isinstance(theirs, dict):
      raise StoreError(
        f'--output_dir={directory}: {marker} is not a store marker (a JSON '
        f'{type(theirs).__name__}); use another --output_dir'
      )
    if theirs.get('binary') != binary:
      raise StoreError(
        f'--output_dir={directory} holds results of '
        f'{theirs.get("binary")!r}, not of {binary!r}; use another '
        '--output_dir'
      )
    if theirs != mine:
      raise StoreError(
        f'--output_dir={directory} holds {binary!r} results in another '
        f'store format ({marker}: {json.dumps(theirs, sort_keys=True)}; '
        f'this version writes {json.dumps(mine, sort_keys=True)}); use '
        'another --output_dir'
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
    """Stores one cell record (it must have a 'key'); False if present.

    The record is stored with a digest of its content, which `get`
    checks.
    """
    if not self.writer:
      return False
    if self.read_only:
      raise StoreError(f'{self.directory} was opened read-only')
    record = {**record, 'digest': digest(record)}
    data = (json.dumps(record, allow_nan=True) + '\n').encode()
    made = self._publish(self.path(record['key']), data)
    if made:
      global _CELLS_WRITTEN
      _CELLS_WRITTEN += 1
    return made

  def get(self, key: str, settings: dict | None = None) -> dict | None:
    """The stored record of key, verified; None if absent or set aside.

    A cell path that is not a regular file (a directory, a dangling or any
    other link), a torn file, JSON that is not a cell record, a record
    whose key, binary or (when given) settings differ from the ones its
    key is derived from, or whose content does not match its digest, is
    moved to `<name>.corrupt` with a one-line warning and reads as absent,
    so the cell is computed again. Nothing that fails a check is ever
    returned.

    Args:
      key: the cell's key.
      settings: the settings the key was derived from; the stored ones must
        equal them (as JSON).
    """
    if not self.writer:
      return None
    path = self.path(key)
    try:
      info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
      return None
    if not stat.S_ISREG(info.st_mode):
      self._set_aside(path, info, 'not a regular file')
      return None
    try:
      with open(path, 'rb') as f:
        info = os.fstat(f.fileno())
        data = f.read()
    except FileNotFoundError:
      return None
    record, problem = _checked(data, key, self.binary, settings)
    if problem is not None:
      self._set_aside(path, info, problem)
      return None
    return record

  def _set_aside(self, path: str, info: os.stat_result, problem: str) -> None:
    """Moves a bad cell file to <path>.corrupt, if it is still the file read.

    A writer may have published a good cell at path since it was read
    (publishing links a new file): then it is left in place.
    """
    try:
      now = os.lstat(path)
    except FileNotFoundError:
      return
    if _identity(now) != _identity(info):
      return
    if self.read_only:
      logging.warning(
        'cell %s not used: %s (a read-only run leaves it in place)',
        os.path.basename(path),
        problem,
      )
      return
    target = path + '.corrupt'
    try:
      os.replace(path, target)
    except FileNotFoundError:
      return
    except OSError:  # e.g. a directory onto an older .corrupt file
      target = tempfile.mkdtemp(dir=self.cells_dir, prefix='.corrupt-')
      os.replace(path, os.path.join(target, os.path.basename(path)))
    logging.warning(
      'cell %s moved to %s: %s; it will be computed again',
      os.path.basename(path),
      os.path.relpath(target, self.cells_dir),
      problem,
    )

  def _claim_path(self, name: str) -> str:
    return os.path.join(self.cells_dir, f'{_CLAIM_PREFIX}{name}')

  def claim(self, name: str) -> bool:
    """Claims work item `name` for this process; False if another has it.

    A claim is a file created exclusively, with the owner's host and pid,
    kept fresh by a heartbeat while held. One whose owner is gone (a dead
    pid on this host, or no heartbeat for CLAIM_STALE_SECONDS) is taken
    over: renamed away (one taker wins the rename) and claimed afresh.
    """
    if not self.writer:
      return True
    if self.read_only:
      raise StoreError(f'{self.directory} was opened read-only')
    path = self._claim_path(name)
    for _ in range(2):
      try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        if not _claim_is_stale(path):
          return False
        try:
          os.rename(path, f'{path}.stale-{os.getpid()}-{time.time_ns()}')
        except FileNotFoundError:
          pass  # another taker renamed it first; try to create ours
        continue
      with os.fdopen(fd, 'w') as f:
        json.dump({'host': socket.gethostname(), 'pid': os.getpid()}, f)
      _HELD_CLAIMS.add(path)
      _start_heartbeat()
      return True
    return False

  def release(self, name: str) -> None:
    """Gives up a claim taken by `claim` (the cells are stored or lost)."""
    path = self._claim_path(name)
    _HELD_CLAIMS.discard(path)
    _unlink_quietly(path)

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
