"""Command-line plumbing shared by the binaries: flag checks and exit codes.

Exit status of every binary: 0 when every claim held, 1 when one did not,
2 for a usage error: a bad flag, extra arguments, an unusable
`--output_dir`, or one that holds another binary's results; 3 when the run
could not produce evidence: an internal error (any exception a binary did
not turn into a verdict or a usage error) or an environment failure such
as a full disk. A crash is never exit 1, the code of a claim that did not
hold. A usage error is one line on stderr naming the flag and the accepted
values, and is raised before any compute; an internal error is one line
naming the exception and where it was raised (the traceback follows with
JAXRELU_TRACEBACK=1). Ctrl-C ends with one line saying how many cells this
run stored and how to resume, exit status 130. `--help` prints the
binary's docstring and its flags (the same from `python -m
experiments.NAME` and a console script) and exits 0.
"""

from __future__ import annotations

import logging as std_logging
import math
import os
import re
import sys
import sysconfig
import tempfile
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import app, flags

from experiments import store
from experiments.store import StoreError

EXIT_HELD, EXIT_NOT_HELD, EXIT_USAGE, EXIT_NO_EVIDENCE = 0, 1, 2, 3
# 128 + SIGINT, as a shell reports a process ended by Ctrl-C.
EXIT_INTERRUPTED = 130
# Set to 1 to see the traceback of an internal error.
TRACEBACK_ENV = 'JAXRELU_TRACEBACK'


class UsageError(app.UsageError):
  """A bad flag or argument: one line on stderr, exit status 2."""

  def __init__(self, message: str):
    super().__init__(message, exitcode=EXIT_USAGE)


class NoEvidence(Exception):
  """The run cannot give a verdict (e.g. cells missing from the store):
  one line on stderr, exit status 3. Raised after the report is written."""


# stdout lines of a binary's own fit this many columns; tables go to files.
COLUMNS = 100


def close(name: str, deciding: Mapping[str, bool | None]) -> int:
  """Prints the line that ends a run: which claims decided its exit status.

  Args:
    name: the binary.
    deciding: claim -> True (supported) or False (not supported); None
      marks a companion that decides nothing.

  Returns:
    EXIT_HELD when every deciding claim is supported, and there is at
    least one (a run that decides nothing has not shown anything), else
    EXIT_NOT_HELD.
  """
  decided = {k: v for k, v in deciding.items() if v is not None}
  failed = [k for k, v in decided.items() if not v]
  if not decided:
    code, text = EXIT_NOT_HELD, 'no claim was decided by this run'
  elif failed:
    code = EXIT_NOT_HELD
    text = (
      f'{len(failed)} of {len(decided)} deciding claims not supported: '
      + '; '.join(failed)
    )
  else:
    code = EXIT_HELD
    text = f'all {len(decided)} deciding claims supported: ' + '; '.join(
      decided
    )
  line = f'{name}: exit {code}: {text}'
  if len(line) > COLUMNS:
    line = line[: COLUMNS - 22] + '... (see the report)'
  print(line)
  return code


def require(ok: bool, message: str) -> None:
  """Raises UsageError(message) unless ok."""
  if not ok:
    raise UsageError(message)


def user_activation(name: str, value: str):
  """An item of an --activations flag as a user's activation, or None for
  a built-in's name.

  The item is ``package.module:function``, optionally followed by
  ``[label=NAME;rectifier=true;HYPERPARAMETER=VALUE;...]``; it is
  resolved and checked by `jaxrelu.registry.from_path` before any compute.

  Raises:
    UsageError: one line naming the flag, for a malformed item or a
      function that cannot be imported or fails the checks.
  """
  from jaxrelu import registry

  value = value.strip()
  if ':' not in value:
    return None
  path, _, options = value.partition('[')
  settings = {}
  if options:
    require(
      options.endswith(']'),
      f'--{name}: {value!r}: options go in [key=value;...]',
    )
    for item in filter(None, options[:-1].split(';')):
      key, eq, text = item.partition('=')
      require(bool(eq), f'--{name}: {value!r}: {item!r} is not key=value')
      settings[key.strip()] = text.strip()
  label = settings.pop('label', path)
  rectifier = settings.pop('rectifier', 'false').lower() in ('1', 'true')
  try:
    hyper = {k: float(v) for k, v in settings.items()}
    return registry.from_path(
      path, label=label, hyperparameters=hyper, rectifier=rectifier
    )
  except ValueError as e:
    raise UsageError(f'--{name}: {e}') from None


def activation_items(name: str, values, builtins) -> list[tuple[str, Any]]:
  """(name, spec) of each item of an --activations flag: a built-in's name
  with spec None, or a user's activation (`user_activation`) under its
  label, which must not be a built-in's name (`builtins`)."""
  out = []
  for value in values:
    spec = user_activation(name, value)
    if spec is None:
      out.append((value.strip(), None))
      continue
    require(
      spec.name not in builtins,
      f'--{name}: label {spec.name!r} is a built-in activation',
    )
    out.append((spec.name, spec))
  return out


def source_hash(fn) -> dict:
  """A user's function's module and a sha256 of its source, for cell
  settings (a changed function gives new keys)."""
  import hashlib
  import inspect

  module = inspect.getmodule(fn)
  source = inspect.getsource(module) if module else repr(fn)
  return {
    'activation_path': module.__name__ if module else '?',
    'activation_source': hashlib.sha256(source.encode()).hexdigest()[:16],
  }


def available_memory(device=None) -> int | None:
  """Bytes a computation may use on device (default: the first local one).

  An accelerator's allocator limit; on CPU, the host's available memory
  (MemAvailable); None where neither is known.
  """
  import jax

  device = jax.local_devices()[0] if device is None else device
  try:
    stats = device.memory_stats()
  except Exception:  # backends without statistics
    stats = None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit'])
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_AVPHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return None


def compiled_bytes(compiled, devices) -> int:
  """Memory a compiled program needs on its devices, from XLA's analysis:
  arguments, outputs and temporaries of one device, times the devices on
  CPU (whose devices share the host's memory)."""
  m = compiled.memory_analysis()
  one = (
    m.temp_size_in_bytes
    + m.argument_size_in_bytes
    + m.output_size_in_bytes
    - m.alias_size_in_bytes
  )
  return one * (len(devices) if devices[0].platform == 'cpu' else 1)


# XLA's words when a program's sizes exceed what it can compile.
_TOO_BIG = re.compile(r'2147483647|RESOURCE_EXHAUSTED|too large|overflow', re.I)


def compile_within_memory(lowered, devices, what: str, lower: str):
  """`lowered.compile()`, refused (UsageError, exit 2) before it runs when
  XLA cannot compile it at these sizes or it needs more memory than the
  devices have (`require_memory`, on XLA's analysis of the program)."""
  import jax

  try:
    compiled = lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if not _TOO_BIG.search(str(e)):
      raise
    first = str(e).splitlines()[0][:120]
    raise UsageError(
      f'{what} cannot be compiled at these sizes ({first}): lower {lower}'
    ) from None
  require_memory(compiled_bytes(compiled, devices), what, lower, devices[0])
  return compiled


def require_memory(needed: int, what: str, lower: str, device=None) -> None:
  """Refuses (UsageError, exit 2) a computation needing more memory than
  `available_memory`, before it runs, with both figures and the flags that
  set its size (`lower`)."""
  have = available_memory(device)
  if have is not None and needed > have:
    raise UsageError(
      f'{what} needs about {needed / 2**30:.3g} GiB of memory, more than '
      f'the {have / 2**30:.3g} GiB available: lower {lower}'
    )


# Every integer flag fits a signed 32-bit integer, jax's default integer for
# shapes, counts and seeds (a larger one was an OverflowError or a TypeError
# inside jax, after the run had started); every float flag is finite in
# float32, the narrowest dtype a binary computes in.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
FLOAT_MAX = float(np.finfo(np.float32).max)


def check_every_number_flag() -> None:
  """One rule for every integer and float flag, before any compute.

  Called by `output_dir`, which every binary calls before it computes, so
  no flag a binary defines can skip it.

  Raises UsageError for an integer outside [INT_MIN, INT_MAX] or a float
  that is NaN, infinite or beyond float32's range. Comma-list flags are
  held to the same rule by `integers` and `floats`.
  """
  for name in sorted(flags.FLAGS):
    flag = flags.FLAGS[name]
    if name != flag.name or not flag.present:
      continue  # a short alias, or a default (checked by its definer)
    value = flag.value
    if isinstance(value, bool):
      continue
    # The flag's help says what it accepts beyond this rule.
    accepted = ' '.join(flag.help.split())
    if isinstance(value, int):
      require(
        INT_MIN <= value <= INT_MAX,
        f'--{name}: {value} is not an integer in [{INT_MIN}, {INT_MAX}] '
        f'(a 32-bit integer). --{name}: {accepted}',
      )
    elif isinstance(value, float):
      require(
        abs(value) <= FLOAT_MAX,
        f'--{name}: {value:g} is not a finite number within float32 range '
        f'(|value| <= {FLOAT_MAX:.8g}). --{name}: {accepted}',
      )


def _number_list(name, values, parse, kind) -> list:
  out = []
  for text in values:
    try:
      out.append(parse(text))
    except ValueError:
      raise UsageError(f'--{name}: {text!r} is not {kind}') from None
  return out


def _check_list(name: str, values: list, *, nonempty: bool, unique: bool):
  require(not nonempty or bool(values), f'--{name} must not be empty')
  if unique:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    require(not repeated, f'--{name} repeats {",".join(repeated)}')


def floats(
  name: str,
  values: Iterable[str],
  *,
  low: float = -math.inf,
  high: float = math.inf,
  low_open: bool = False,
  nonempty: bool = True,
  unique: bool = True,
) -> list[float]:
  """Parses a comma-list flag of finite numbers in [low, high].

  `low_open` makes the lower end exclusive (low < value). Non-finite values,
  repeats (unless unique=False) and an empty list are usage errors.
  """
  out = _number_list(name, list(values), float, 'a number')
  _check_list(name, out, nonempty=nonempty, unique=unique)
  for v in out:
    in_range = (v > low if low_open else v >= low) and v <= high
    in_range = in_range and abs(v) <= FLOAT_MAX
    if not (math.isfinite(v) and in_range):
      raise UsageError(
        f'--{name}: {v:g} is not {_range_text(low, high, low_open)}'
      )
  return out


def integers(
  name: str,
  values: Iterable[str],
  *,
  low: int = 1,
  nonempty: bool = True,
  unique: bool = True,
) -> list[int]:
  """Parses a comma-list flag of integers >= low."""
  out = _number_list(name, list(values), int, 'an integer')
  _check_list(name, out, nonempty=nonempty, unique=unique)
  for v in out:
    require(v >= low, f'--{name}: {v} is not an integer >= {low}')
    require(
      v <= INT_MAX, f'--{name}: {v} is not an integer <= {INT_MAX} (32-bit)'
    )
  return out


def choices(
  name: str,
  values: Iterable[str],
  accepted: Sequence[str],
  *,
  nonempty: bool = True,
  unique: bool = True,
) -> list[str]:
  """Checks a comma-list flag of names against the accepted ones."""
  out = [v.strip() for v in values]
  _check_list(name, out, nonempty=nonempty, unique=unique)
  unknown = [v for v in out if v not in accepted]
  require(
    not unknown,
    f'--{name}: unknown {",".join(unknown) or repr("")}; accepted: '
    f'{",".join(accepted)}',
  )
  return out


def number(
  name: str,
  value: float,
  *,
  low: float = -math.inf,
  high: float = math.inf,
  low_open: bool = False,
  high_open: bool = False,
) -> float:
  """Checks one finite number flag against its range."""
  ok_low = value > low if low_open else value >= low
  ok_high = value < high if high_open else value <= high
  require(
    math.isfinite(value) and ok_low and ok_high,
    f'--{name}: {value:g} is not {_range_text(low, high, low_open, high_open)}',
  )
  return value


def positive(name: str, value: float) -> float:
  """Checks one finite number flag > 0."""
  return number(name, value, low=0, low_open=True)


def fraction(name: str, value: float) -> float:
  """Checks one number flag in [0, 1) (a rate)."""
  return number(name, value, low=0, high=1, high_open=True)


def _range_text(low, high, low_open=False, high_open=False) -> str:
  if math.isinf(low) and math.isinf(high):
    return 'a finite number'
  if math.isinf(high):
    return f'a finite number {">" if low_open else ">="} {low:g}'
  if math.isinf(low):
    return f'a finite number {"<" if high_open else "<="} {high:g}'
  return (
    f'in {"(" if low_open else "["}{low:g}, {high:g}{")" if high_open else "]"}'
  )


def output_dir_flag(binary: str, module: str) -> flags.FlagHolder[str]:
  """Defines a binary's --output_dir, default results/<binary>.

  Args:
    binary: the binary's name.
    module: its `__name__`. The flag is listed in its --help, as absl lists
      the flags a module defines (under its file when run as __main__).
  """
  return flags.DEFINE_string(
    'output_dir',
    f'results/{binary}',
    'Where results go.',
    module_name=sys.argv[0] if module == '__main__' else module,
  )


def output_dir(path: str, name: str = 'output_dir') -> str:
  """Checks that path can be (or is) a writable directory; returns it.

  Refused: an empty value, an existing file, a directory (or an ancestor)
  that cannot be written. The directory is created.

  Every binary checks its output directory last before it computes, so
  `check_every_number_flag` runs here first: after the binary's own checks
  (their messages name each flag's range), and before anything is written.
  """
  check_every_number_flag()
  require(bool(path.strip()), f'--{name} must not be empty')
  require(
    not os.path.exists(path) or os.path.isdir(path),
    f'--{name}={path} is an existing file, not a directory',
  )
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise UsageError(f'--{name}={path} is not writable: {e.strerror}') from None
  return path


def values(*holders: flags.FlagHolder) -> dict:
  """The flags' values as they were given, by flag name."""
  return {h.name: h.value for h in holders}


def full_or_given(holder: flags.FlagHolder, full: bool, table: dict):
  """A flag's value: table's (a binary's --full grid) when full and the
  flag was not given on the command line; else the flag's own."""
  if full and holder.name in table and not flags.FLAGS[holder.name].present:
    return table[holder.name]
  return holder.value


def at_least(flag: dict, names: Sequence[str], low: int = 1) -> None:
  """Each flag[name] is an integer >= low."""
  for name in names:
    require(flag[name] >= low, f'--{name}: {flag[name]} is not >= {low}')


def record_schedule(flag: dict, *counts: str) -> None:
  """The counts are >= 1, then --steps is a multiple of --record_every >= 1."""
  at_least(flag, (*counts, 'steps', 'record_every'))
  require(
    flag['steps'] % flag['record_every'] == 0,
    f'--steps: {flag["steps"]} is not a positive multiple of --record_every',
  )


def no_arguments(argv: Sequence[str]) -> None:
  require(len(argv) <= 1, f'unexpected arguments: {" ".join(argv[1:])}')


_HELP = ('--help', '-h', '-?', '--helpshort', '--helpfull')


# Every binary's --help ends with this; README shows the same text.
EXIT_STATUS_HELP = """\
Exit status (the same for every binary):
  0    every claim that decides the exit status is supported
  1    a deciding claim is not supported (contradicted or undecided)
  2    usage error: a bad flag or --output_dir, before any compute
  3    no evidence: an internal error, an environment failure (a full
       disk), or cells missing from the report (--report_only)
  130  interrupted (Ctrl-C); rerun the same command to resume
Errors are one line on stderr; JAXRELU_TRACEBACK=1 adds the traceback.
"""


def help_text(module) -> str:
  """The binary's docstring, its flags and the sweep flags it uses, and
  the exit statuses."""
  parts = [(module.__doc__ or '').strip(), '', 'Flags:']
  names = [module.__name__]
  if 'experiments.sweep' in sys.modules:
    names.append('experiments.sweep')
  for name in names:
    parts.append(flags.FLAGS.module_help(name))
  parts += ['', EXIT_STATUS_HELP]
  return '\n'.join(p for p in parts if p is not None)


# XLA's own flag for the number of CPU devices.
_HOST_DEVICES = 'xla_force_host_platform_device_count'


def cores_as_devices() -> None:
  """One XLA CPU device per core, unless XLA_FLAGS already sets a count.

  XLA's CPU backend runs one device's small batched matmuls on about one
  core; cells spread over N CPU devices (`model.by_cell`) run N ways at
  once (1.9x for dying_relu's MLPs on 2 cores,
  BUILD_NOTES.md). It takes effect only before jax creates its CPU
  backend, and GPU or TPU runs (their devices are the default) are as
  before.
  """
  current = os.environ.get('XLA_FLAGS', '')
  if _HOST_DEVICES in current:
    return
  if hasattr(os, 'sched_getaffinity'):
    cores = len(os.sched_getaffinity(0))
  else:
    cores = os.cpu_count() or 1
  os.environ['XLA_FLAGS'] = f'{current} --{_HOST_DEVICES}={cores}'.strip()


def run(
  main: Callable[[Sequence[str]], int], name: str, *, all_cores: bool = False
) -> None:
  """absl's app.run, with one-line usage errors and exit status 2.

  With all_cores, `cores_as_devices` first (for binaries that spread
  their work over the devices).
  """
  if all_cores:
    cores_as_devices()
  # absl shows INFO records of every logger; jax's probe of the backends
  # it cannot start ("Unable to initialize backend 'tpu'") is one, on
  # every machine without that backend. Warnings still show.
  std_logging.getLogger('jax._src.xla_bridge').setLevel(std_logging.WARNING)
  if any(arg in _HELP for arg in sys.argv[1:]):
    print(help_text(sys.modules[main.__module__]))
    sys.exit(EXIT_HELD)

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      print(f'{name}: error: {e}', file=sys.stderr)
      sys.exit(EXIT_USAGE)

  def checked_main(argv):
    try:
      return main(argv)
    except (app.UsageError, StoreError) as e:
      print(f'{name}: error: {e}', file=sys.stderr)
      return EXIT_USAGE
    except NoEvidence as e:
      print(f'{name}: error: {e}', file=sys.stderr)
      return EXIT_NO_EVIDENCE
    except KeyboardInterrupt:
      print(
        f'{name}: interrupted; {store.cells_written()} cells stored by this '
        'run are kept: rerun the same command to resume.',
        file=sys.stderr,
      )
      return EXIT_INTERRUPTED
    except Exception as e:  # every crash is exit 3, never 1
      print(crash_line(name, e), file=sys.stderr)
      return EXIT_NO_EVIDENCE

  app.run(checked_main, flags_parser=parse)


def crash_line(name: str, error: BaseException) -> str:
  """One line for an exception that ended a run without evidence.

  An OSError names its file and the system's words (a full disk, a
  directory where a file should be); anything else names the exception
  and the innermost frame of the project's own code it passed through.
  With JAXRELU_TRACEBACK=1 the traceback is printed first.
  """
  if os.environ.get(TRACEBACK_ENV, '') not in ('', '0'):
    traceback.print_exception(error, file=sys.stderr)
  if isinstance(error, OSError) and error.strerror:
    where = f': {error.filename}' if error.filename else ''
    cause = f'{error.strerror}{where}'
  else:
    text = ' '.join(str(error).split()) or repr(error)
    if len(text) > 200:
      text = text[:197] + '...'
    cause = f'{type(error).__name__}: {text}'
  frames = traceback.extract_tb(error.__traceback__)
  frames = [f for f in frames if f.filename != __file__]  # not run()'s own
  ours = [
    f
    for f in frames
    if f'{os.sep}experiments{os.sep}' in f.filename
    or f'{os.sep}jaxrelu{os.sep}' in f.filename
  ]
  libraries = tuple(
    sysconfig.get_paths()[k] for k in ('stdlib', 'purelib', 'platlib')
  )
  outside = [
    f
    for f in frames
    if not f.filename.startswith('<') and not f.filename.startswith(libraries)
  ]
  at = ''
  if ours or outside or frames:
    frame = (ours or outside or frames)[-1]
    at = f' (at {os.path.basename(frame.filename)}:{frame.lineno})'
  return (
    f'{name}: error: the run could not produce evidence, exit '
    f'{EXIT_NO_EVIDENCE}: {cause}{at}. Set {TRACEBACK_ENV}=1 for the '
    'traceback.'
  )
