"""What `train.py` and `eval.py` share: quiet start-up, flag parsing and one-line errors.

A known error (a misspelt config key, a missing, damaged or mismatched checkpoint, an unsafe
pickle, a changed config on resume, a held workdir, bad data) prints `error: <message>` on
stderr and exits with status 2. The traceback is shown only with `--verbosity=1` (or any
`--verbosity`) or `MGVM_TRACEBACK=1`.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn

TRACEBACK_ENV = "MGVM_TRACEBACK"
ERROR_EXIT_CODE = 2


def quiet_startup() -> None:
  """Hides TensorFlow's C++ INFO / WARNING lines (call before TensorFlow loads); its oneDNN notice
  comes before its logger starts and stays."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _known_errors() -> tuple[type[BaseException], ...]:
  from mgvm.run.train import NonFiniteLossError
  from mgvm.workdir import WorkdirLockedError

  return (ValueError, FileNotFoundError, NotADirectoryError, NonFiniteLossError, WorkdirLockedError)


def _wants_traceback(argv: list[str]) -> bool:
  return os.environ.get(TRACEBACK_ENV) == "1" or any(
    a.startswith(("--verbosity", "-v=")) for a in argv
  )


def fail(message: str) -> NoReturn:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(ERROR_EXIT_CODE)


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)` with flag and known errors printed as one `error:` message."""
  from absl import app, flags

  from mgvm.config import flag_error_message

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError) as e:
      if _wants_traceback(argv):
        raise
      fail(flag_error_message(e))

  def guarded(argv):
    try:
      return main(argv)
    except _known_errors() as e:
      if _wants_traceback(sys.argv):
        raise
      fail(str(e))

  app.run(guarded, flags_parser=parse)
