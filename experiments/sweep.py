"""Sweeps of keyed cells: resume, split over machines, report what is stored.

A *cell* is one fully specified computation (every setting that shapes its
numbers); its *key* is a hash of those settings, the binary's name, and the
versions of the packages that compute it. A *group* is the cells one
compiled program computes together, each cell on its own, so its numbers
do not depend on the group around it (`model.by_cell`). A sweep runs, of
the groups given to this task, those with a cell not yet in the store, and
stores each new cell once.

Split over N machines or processes with `--num_tasks=N --task_index=i` (or
under a SLURM job array, from SLURM_ARRAY_TASK_ID/COUNT): task i computes
groups i, i + N, ... into the shared `--output_dir`. Then one run with
`--report_only` builds the report from whatever is stored and lists what is
missing. Without a split, a run computes everything and reports.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from absl import flags, logging

from experiments import cli, report
from experiments.store import Store

_NUM_TASKS = flags.DEFINE_integer(
  'num_tasks',
  None,
  'Split the sweep over this many tasks (machines or processes); default 1, '
  'or SLURM_ARRAY_TASK_COUNT under a SLURM job array.',
)
_TASK_INDEX = flags.DEFINE_integer(
  'task_index',
  None,
  'This task, in [0, num_tasks); default 0, or under a SLURM job array '
  '(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP.',
)
_REPORT_ONLY = flags.DEFINE_boolean(
  'report_only',
  False,
  'Compute nothing: build the report from the stored cells, listing the '
  'missing ones.',
)
# Cells one sweep may hold: the store keeps a file per cell, and a sweep's
# groups are built (and every cell's key derived) before anything runs.
MAX_CELLS = 1_000_000

_REPORT_DIR = flags.DEFINE_string(
  'report_dir',
  None,
  'With --report_only: where the report goes (default --output_dir). The '
  'cells are read from --output_dir, which may then be read-only.',
)
_MAX_NEW_GROUPS = flags.DEFINE_integer(
  'max_new_groups',
  -1,
  'Stop after computing this many groups (-1: all); rerun to resume.',
)

# Packages whose versions change the numbers a cell holds.
# Every package whose version can change a cell's numbers (Adam's update,
# splits, data, random draws, linear algebra).
KEY_PACKAGES = (
  'jax',
  'jaxlib',
  'jaxrelu',
  'numpy',
  'ml_dtypes',
  'optax',
  'flax',
  'scipy',
  'scikit-learn',
  'mlxtend',
  'mnist1d',
)
# How often a writer looks again at groups another writer is computing.
CLAIM_POLL_SECONDS = 2.0
# Modules that only present stored numbers: editing them reuses cells. The
# engine's plots.py and report.py, and each binary's figures.py and
# tables.py.
PRESENTATION_MODULES = ('plots.py', 'report.py', 'figures.py', 'tables.py')


@dataclasses.dataclass(frozen=True)
class Task:
  index: int = 0
  count: int = 1

  def owns(self, group_index: int) -> bool:
    return group_index % self.count == self.index


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where a run keeps its cells and writes its report, and its task.

  Attributes:
    task: this process's share of the sweep.
    store_dir: the store (--output_dir).
    output_dir: the report's directory: --output_dir, or --report_dir
      under --report_only.
  """

  task: Task
  store_dir: str
  output_dir: str


def _slurm_task(env) -> tuple[int | None, int | None]:
  """(count, index) of this task in a SLURM job array, or None each.

  Task ids MIN, MIN + STEP, ..., MAX (`--array=MIN-MAX:STEP`) are tasks
  0, 1, ..., COUNT - 1. Raises UsageError for a variable that is not an
  integer, or an array whose ids are not evenly spaced (`--array=1,5,7`),
  which no task index can be read from.
  """

  def number(name: str, default: int | None = None) -> int | None:
    if name not in env:
      return default
    try:
      return int(env[name])
    except ValueError:
      raise cli.UsageError(
        f'{name}={env[name]!r} is not an integer (SLURM sets it for a job '
        'array; or give --num_tasks and --task_index)'
      ) from None

  count = number('SLURM_ARRAY_TASK_COUNT')
  task_id = number('SLURM_ARRAY_TASK_ID')
  if task_id is None:
    return count, None
  low = number('SLURM_ARRAY_TASK_MIN', 0)
  high = number('SLURM_ARRAY_TASK_MAX')
  step = number('SLURM_ARRAY_TASK_STEP', 1)
  cli.require(step >= 1, f'SLURM_ARRAY_TASK_STEP={step} is not >= 1')
  regular = (task_id - low) % step == 0 and (
    count is None or high is None or high - low == (count - 1) * step
  )
  cli.require(
    regular,
    f'SLURM job array ids from {low} to {high} in steps of {step} for '
    f'{count} tasks are not evenly spaced (task {task_id}): a task index '
    'cannot be read from them. Use --array=MIN-MAX or MIN-MAX:STEP, or '
    'give --num_tasks and --task_index',
  )
  return count, (task_id - low) // step


def task_from_flags() -> Task:
  """This process's share, from the flags or a SLURM job array."""
  count, index = _NUM_TASKS.value, _TASK_INDEX.value
  slurm_count, slurm_index = _slurm_task(os.environ)
  if count is None:
    count = slurm_count
  if index is None:
    index = slurm_index
  count = 1 if count is None else count
  index = 0 if index is None else index
  cli.require(count >= 1, f'--num_tasks: {count} is not an integer >= 1')
  cli.require(
    0 <= index < count,
    f'--task_index: {index} is not in [0, {count}) (--num_tasks={count})',
  )
  cli.require(
    _MAX_NEW_GROUPS.value >= -1,
    f'--max_new_groups: {_MAX_NEW_GROUPS.value} is not -1 or an integer >= 0',
  )
  return Task(index, count)


def check_cluster(
  distributed: bool,
  coordinator: str | None,
  num_processes: int | None,
  process_id: int | None,
) -> None:
  """The flags of one computation over several hosts (--distributed).

  The cluster flags are given only with --distributed, --process_id is in
  [0, --num_processes), and --distributed takes no --num_tasks.
  """
  cli.require(
    distributed or (coordinator, num_processes, process_id) == (None,) * 3,
    '--coordinator_address, --num_processes and --process_id need '
    '--distributed',
  )
  if num_processes is not None:
    cli.require(
      num_processes >= 1, f'--num_processes: {num_processes} is not >= 1'
    )
    cli.require(
      process_id is not None and 0 <= process_id < num_processes,
      f'--process_id: {process_id} is not in [0, {num_processes})',
    )
  cli.require(
    not (distributed and task_from_flags().count > 1),
    '--distributed runs one computation over all hosts; it takes no '
    '--num_tasks (split a sweep over hosts without --distributed)',
  )


def report_only() -> bool:
  return _REPORT_ONLY.value


@functools.cache
def source_digest(root: str | None = None) -> str:
  """A hash of the source of every module a cell's computation can run.

  Every .py file of the jaxrelu and experiments packages (subpackages
  included) but the presentation modules: a changed constant, formula or
  default anywhere in
  them gives new keys, so no cell computed by other code is reused. A
  hand-bumped VERSION is not needed for that (binaries keep theirs for
  readers of the cells). Computed once per process.

  Args:
    root: the folder holding the two packages (default: this checkout's).
  """
  if root is None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  digest = hashlib.sha256()
  for package in ('jaxrelu', 'experiments'):
    for folder, dirs, names in sorted(os.walk(os.path.join(root, package))):
      dirs.sort()
      for name in sorted(names):
        if not name.endswith('.py') or name in PRESENTATION_MODULES:
          continue
        path = os.path.relpath(os.path.join(folder, name), root)
        with open(os.path.join(folder, name), 'rb') as f:
          digest.update(path.encode() + b'\0' + f.read() + b'\0')
  return digest.hexdigest()


def cell_key(binary: str, settings: dict[str, Any]) -> str:
  """A stable hash of everything that shapes a cell's numbers: the binary,
  its settings, the versions of `KEY_PACKAGES` and `source_digest()`."""
  identity = {
    'binary': binary,
    'settings': settings,
    'versions': {p: report.versions()[p] for p in KEY_PACKAGES},
    'source': source_digest(),
  }
  text = json.dumps(identity, sort_keys=True, separators=(',', ':'))
  return hashlib.sha256(text.encode()).hexdigest()[:32]


class Group(NamedTuple):
  """Cells computed together: `compute()` returns their results in order."""

  label: str
  settings: list[dict[str, Any]]
  compute: Callable[[], Sequence[dict[str, Any]]]


@dataclasses.dataclass
class Outcome:
  """What a sweep left: every stored cell of the sweep, and the rest."""

  cells: dict[str, dict]  # key -> stored record, in the groups' order
  missing: list[tuple[str, dict]]  # (group label, settings) not stored
  computed_groups: int
  stopped_early: bool

  def results(self) -> list[dict]:
    """Each stored cell's settings merged with its result."""
    return [{**c['settings'], **c['result']} for c in self.cells.values()]

  def by(self, *fields: str) -> dict[tuple, dict]:
    """`results()` keyed by the values of `fields`, in the same order."""
    return {tuple(c[f] for f in fields): c for c in self.results()}


def run(
  store: Store,
  groups: Sequence[Group],
  *,
  task: Task,
  compute: bool = True,
  max_new_groups: int | None = None,
  distributed: bool = False,
) -> Outcome:
  """Computes this task's unfinished groups and stores their new cells.

  Args:
    store: where cells go (shared by all tasks).
    groups: the whole sweep, in a fixed order (the same in every task).
    task: this process's share.
    compute: False for a report-only run.
    max_new_groups: stop after this many computed groups (None: the flag).
    distributed: every process of a multi-host computation calls this with
      the same groups; what to compute is decided by process 0 (the one
      whose store writes) and broadcast, so all run the same programs.

  Returns:
    Every cell of the sweep found in the store afterwards, and the missing.
  """
  if max_new_groups is None:
    max_new_groups = _MAX_NEW_GROUPS.value
  keys = [[cell_key(store.binary, s) for s in g.settings] for g in groups]
  mine = [i for i in range(len(groups)) if task.owns(i)]
  # Each stored cell is read once here; only computed groups are read again.
  stored = {
    k: store.get(k, s)
    for group, group_keys in zip(groups, keys, strict=True)
    for k, s in zip(group_keys, group.settings, strict=True)
  }
  needed = [any(stored[k] is None for k in keys[i]) for i in mine]
  if distributed:
    import numpy as np
    from jax.experimental import multihost_utils

    needed = multihost_utils.broadcast_one_to_all(np.array(needed, bool))
  todo = [i for i, need in zip(mine, needed, strict=True) if need]
  total_cells = sum(len(keys[i]) for i in mine)
  todo_cells = sum(len(keys[i]) for i in todo)
  done_groups, stopped = 0, False
  if compute:
    logging.info(
      'task %d/%d: %d groups (%d cells); %d cells stored before, %d to run',
      task.index,
      task.count,
      len(mine),
      total_cells,
      total_cells - todo_cells,
      todo_cells,
    )
    start, cells_run = time.perf_counter(), 0
    # Concurrent writers of one directory share the work: a group is
    # computed by the writer that claims it; the others go on to the next
    # and come back for it (stored meanwhile, or its claim gone stale).
    # Not under --distributed, where every process runs every group.
    queue, waiting = list(todo), []
    while queue and not stopped:
      for i in queue:
        if 0 <= max_new_groups <= done_groups:
          stopped = True
          break
        group = groups[i]
        if not distributed:
          for key, settings in zip(keys[i], group.settings, strict=True):
            if stored[key] is None:
              stored[key] = store.get(key, settings)
          if all(stored[key] is not None for key in keys[i]):
            continue  # another writer stored it
          if not store.claim(keys[i][0]):
            waiting.append(i)
            continue
        try:
          results = list(group.compute())
          if len(results) != len(group.settings):
            raise RuntimeError(f'{group.label}: {len(results)} results')
          for key, settings, result in zip(
            keys[i], group.settings, results, strict=True
          ):
            store.put(
              {
                'key': key,
                'binary': store.binary,
                'settings': settings,
                'result': result,
                'provenance': report.provenance(),
              }
            )
            # Another writer may have stored it first: keep what is stored.
            stored[key] = store.get(key, settings)
        finally:
          if not distributed:
            store.release(keys[i][0])
        done_groups += 1
        cells_run += len(results)
        elapsed = time.perf_counter() - start
        logging.info(
          '[%d/%d cells] %s done; %.0fs elapsed, ~%.0fs left',
          total_cells - todo_cells + cells_run,
          total_cells,
          group.label,
          elapsed,
          elapsed / cells_run * (todo_cells - cells_run),
        )
      if waiting and not stopped:
        logging.info(
          'waiting for %d groups that another writer is computing',
          len(waiting),
        )
        time.sleep(CLAIM_POLL_SECONDS)
      queue, waiting = waiting, []
  cells, missing = {}, []
  for group, group_keys in zip(groups, keys, strict=True):
    for key, settings in zip(group_keys, group.settings, strict=True):
      record = stored[key]
      if record is None:
        missing.append((group.label, settings))
      else:
        cells[key] = record
  return Outcome(cells, missing, done_groups, stopped)


def placement(output_dir: str) -> Placement:
  """This process's task and its checked directories.

  `store_dir` holds the cells (--output_dir); `output_dir` takes the
  report: --output_dir, or with --report_only, --report_dir when given (the
  store is then only read, so it may be on read-only media). Checked last
  among a binary's flags: creating a directory is the first thing a run
  writes.
  """
  task = task_from_flags()
  report_dir = _REPORT_DIR.value
  if not report_only():
    cli.require(
      report_dir is None,
      f'--report_dir={report_dir} needs --report_only (a computing run '
      'writes its report beside its cells, in --output_dir)',
    )
    path = cli.output_dir(output_dir)
    return Placement(task, path, path)
  cli.require(
    not os.path.exists(output_dir) or os.path.isdir(output_dir),
    f'--output_dir={output_dir} is an existing file, not a directory',
  )
  if report_dir is None:
    cli.require(
      not os.path.isdir(output_dir) or _writable(output_dir),
      f'--output_dir={output_dir} is read-only: pass --report_dir=DIR for '
      'the report (the cells are read from --output_dir)',
    )
    path = cli.output_dir(output_dir)
    return Placement(task, path, path)
  return Placement(task, output_dir, cli.output_dir(report_dir, 'report_dir'))


def _writable(directory: str) -> bool:
  """Whether a file can be created in directory (root ignores modes, so
  this tries rather than asking os.access)."""
  try:
    with tempfile.TemporaryFile(dir=directory):
      return True
  except OSError:
    return False


def run_binary(
  binary: str,
  placement: Placement,
  groups: Sequence[Group],
  *,
  distributed: bool = False,
  writer: bool = True,
) -> Outcome | None:
  """A binary's sweep into placement.store_dir; the outcome when it reports.

  None when this run builds no report: it stopped early
  (--max_new_groups) or it is one task of several (the report comes from a
  --report_only run).
  """
  store = Store(
    placement.store_dir, binary, writer=writer, read_only=report_only()
  )
  outcome = run(
    store,
    groups,
    task=placement.task,
    compute=not report_only(),
    distributed=distributed,
  )
  return outcome if should_report(outcome, placement.task) else None


def run_and_report(
  argv: Sequence[str],
  binary: str,
  check_flags: Callable[[], Any],
  groups: Callable[[Any], Sequence[tuple]],
  write: Callable[[Any, Outcome], Any],
) -> Any:
  """A sweep binary's main: flags checked, its sweep run, then its report.

  Args:
    argv: what is left of the command line after the flags (nothing).
    binary: the name of the binary (it owns the store).
    check_flags: the binary's settings (a frozen dataclass with a
      `placement`), checked; raises UsageError before any compute.
    groups: groups(settings) is the sweep, each a `Group` or its fields.
    write: write(settings, outcome) writes the report, returns the
      verdicts.

  Returns:
    write's verdicts, or None when this run builds no report (see
    `run_binary`).
  """
  cli.no_arguments(argv)
  settings = check_flags()
  placement = settings.placement
  outcome = run_binary(binary, placement, [Group(*g) for g in groups(settings)])
  if outcome is None:
    return None
  verdicts = write(settings, outcome)
  require_evidence(outcome, placement.store_dir)
  return verdicts


def require_evidence(outcome: Outcome, output_dir: str) -> None:
  """Raises cli.NoEvidence (exit 3) when cells are missing from the report.

  A --report_only run before every task has finished (or on an empty
  directory) writes its report of what is stored, marked incomplete; its
  verdicts are not the sweep's, so it gives none (not 0, not 1).
  """
  if outcome.missing:
    total = len(outcome.missing) + len(outcome.cells)
    raise cli.NoEvidence(
      f'{len(outcome.missing)} of {total} cells are not in {output_dir}: '
      'the report written is incomplete and decides no claim. Compute the '
      'missing cells (the same command without --report_only), then report.'
    )


def should_report(outcome: Outcome, task: Task) -> bool:
  """Whether this run builds the report; says why not when it does not."""
  if outcome.stopped_early:
    print(
      f'Stopped after {outcome.computed_groups} new groups '
      '(--max_new_groups); rerun to resume.'
    )
    return False
  if task.count > 1 and not report_only():
    print(
      f'Task {task.index} of {task.count}: done ({outcome.computed_groups} '
      'groups computed). Build the report with --report_only once every '
      'task has finished.'
    )
    return False
  return True
