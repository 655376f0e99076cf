"""Runs `python -m MODULE ARGS...` as if READ_ONLY_DIR were read-only media.

Usage: python tests/read_only_run.py MODULE ARGS... with READ_ONLY_DIR set.

An audit hook fails every attempt to write under READ_ONLY_DIR (create,
open for writing, rename, remove, link, change modes or times) with
EROFS, as a read-only mount would. Modes cannot stand in for one: root
writes whatever they say, and the test suite may run as root.
"""

import errno
import os
import runpy
import sys

_ROOT = ''  # set from READ_ONLY_DIR when run
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_CHANGES = {
  'os.mkdir': 1,
  'os.rename': 2,
  'os.remove': 1,
  'os.rmdir': 1,
  'os.link': 2,
  'os.symlink': 2,
  'os.truncate': 1,
  'os.chmod': 1,
  'os.chown': 1,
  'os.utime': 1,
}


def _inside(path) -> bool:
  if isinstance(path, int) or path is None:
    return False
  path = os.path.realpath(os.fsdecode(path))
  return path == _ROOT or path.startswith(_ROOT + os.sep)


def _refuse(path) -> None:
  raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))


def _hook(event: str, args: tuple) -> None:
  if event == 'open':
    path, mode, flags = args
    writes = (mode is not None and any(c in mode for c in 'wax+')) or (
      mode is None and flags & _WRITE_FLAGS
    )
    if writes and _inside(path):
      _refuse(path)
  elif event in _CHANGES:
    for path in args[: _CHANGES[event]]:
      if _inside(path):
        _refuse(path)


if __name__ == '__main__':
  _ROOT = os.path.realpath(os.environ['READ_ONLY_DIR'])
  sys.addaudithook(_hook)
  sys.path[0] = os.getcwd()  # as `python -m` has it
  module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
  runpy.run_module(module, run_name='__main__', alter_sys=True)
