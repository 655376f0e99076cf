"""Checks of what a binary prints and of the report it writes.

Issue 28 item 7: every stdout line fits `cli.COLUMNS` (tables go to the
report file only), no NaN or infinity in a sentence, every verdict row
says why, and the report ends with the run's provenance (flags, package
versions, jaxrelu's commit, date and machine).
"""

import re

from experiments import cli, report

# The verdict words of the binaries, longest first ('NOT SUPPORTED' before
# 'SUPPORTED').
VERDICTS = (
  'NOT SUPPORTED',
  'NOT TESTABLE',
  'NOT REACHED',
  'NO EFFECT',
  'FRAGILE',
  'INCONCLUSIVE',
  'CONTRADICTED',
  'SUPPORTED',
  'PASS',
  'FAIL',
  'MISS',
)
# Where a verdict stands in a verdict row: at the start of a line or list
# item, in a table cell, in bold, or after 'name: '.
_AT = r'(?:^\s*(?:[-*] |\d+\. )?|\| |\*\*|: )'
# What follows a verdict that carries its reason: ': words' or ' (words'.
_REASON = re.compile(r"(?:: | \()[\w'\"(]")
_NOT_FINITE = re.compile(r'(?i)(?<![\w.])-?(?:nan|inf)(?![\w])')


def prose(text: str) -> list[str]:
  """The lines of text that are not rows of a Markdown table."""
  return [line for line in text.splitlines() if not line.startswith('|')]


def assert_stdout_fits(test, stdout: str) -> None:
  """Every line of stdout is at most cli.COLUMNS long."""
  for line in stdout.splitlines():
    test.assertLessEqual(len(line), cli.COLUMNS, line)


def assert_finite_prose(test, text: str) -> None:
  """No 'nan' or 'inf' as a word in a sentence (tables may show '-')."""
  for line in prose(text):
    test.assertNotRegex(line, _NOT_FINITE)


def assert_provenance(test, text: str, flags) -> None:
  """The report ends with its provenance: jaxrelu's commit (or 'not from a
  git checkout'), the date and machine, every installed package's
  version, and each of `flags` (names of the run's checked flags)."""
  test.assertIn('\n## Provenance\n', text)
  section = text[text.index('\n## Provenance\n') :]
  commit = report.git_commit()
  line = re.search(r'^- jaxrelu commit: (.*)$', section, re.M)
  test.assertIsNotNone(line, section)
  if commit is None:
    test.assertEqual(line.group(1), 'not from a git checkout')
  else:  # the same checkout; '-dirty' may differ while files are edited
    test.assertEqual(line.group(1)[:40], commit[:40])
  test.assertRegex(section, r'(?m)^- date: \d{4}-\d\d-\d\dT')
  test.assertRegex(section, r'(?m)^- machine: .+, jax backend ')
  for package, version in report.versions().items():
    if version:
      test.assertIn(f'{package} {version}', section)
  for name in flags:
    test.assertRegex(section, rf'(?m)^  - {name}: ')


def verdict_rows(text: str, words=VERDICTS) -> list[tuple[str, str]]:
  """(verdict, the rest of its line) of every verdict in a verdict row of
  text; a table's header row is not one."""
  lines = text.splitlines()
  found = []
  pattern = re.compile(f'{_AT}({"|".join(map(re.escape, words))})(?!\\w)')
  for i, line in enumerate(lines):
    if i + 1 < len(lines) and lines[i + 1].startswith('|---'):
      continue
    for m in pattern.finditer(line):
      found.append((m.group(1), line[m.end() :]))
  return found


def assert_verdicts_have_reasons(test, text: str, words=VERDICTS) -> int:
  """Every verdict in a verdict row is followed by its reason in words;
  returns how many there are."""
  rows = verdict_rows(text, words)
  for verdict, rest in rows:
    test.assertRegex(rest, _REASON, f'{verdict} without a reason: {rest!r}')
  return len(rows)


def assert_report(test, stdout: str, text: str, flags, words=VERDICTS):
  """All of the above for one run: its stdout and its report's text.

  Args:
    test: the TestCase.
    stdout: what the run printed.
    text: its report file's text.
    flags: names of checked flags its provenance must list.
    words: the verdict words of the binary.
  """
  assert_stdout_fits(test, stdout)
  for what in (stdout, text):
    assert_finite_prose(test, what)
    test.assertGreater(assert_verdicts_have_reasons(test, what, words), 0)
  assert_provenance(test, text, flags)
