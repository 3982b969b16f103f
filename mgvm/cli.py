"""What the command lines share (`train.py`, `eval.py`, `python -m mgvm.<tool>`): quiet start-up,
flag parsing, the tools' model options and one-line errors.

A known error (a misspelt config key, a missing, damaged or mismatched checkpoint, an unsafe
pickle, a changed config on resume, a held workdir, bad data) prints `error: <message>` on
stderr and exits with status 2. The traceback is shown only with `--verbosity=1` (or any
`--verbosity`) or `MGVM_TRACEBACK=1`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Callable, NoReturn

TRACEBACK_ENV = "MGVM_TRACEBACK"
ERROR_EXIT_CODE = 2


# What TensorFlow's C++ side prints while it loads, before any log level applies.
TF_STARTUP_NOISE = (
  "All log messages before absl::InitializeLog() is called",
  "oneDNN custom operations are on",
)


def quiet_startup() -> None:
  """Hides TensorFlow's start-up lines: its C++ INFO / WARNING logs (`TF_CPP_MIN_LOG_LEVEL=2`) and
  the `TF_STARTUP_NOISE` it prints while loading (TensorFlow is loaded here with stderr captured;
  anything else it prints is passed on)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if "tensorflow" in sys.modules:
    return
  with tempfile.TemporaryFile() as captured:
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow  # noqa: F401
    except ImportError:  # the model-only install: nothing to quiet
      pass
    finally:
      os.dup2(saved, 2)
      os.close(saved)
    captured.seek(0)
    lines = captured.read().decode(errors="replace").splitlines(keepends=True)
  kept = [line for line in lines if not any(noise in line for noise in TF_STARTUP_NOISE)]
  if kept:
    sys.stderr.write("".join(kept))
    sys.stderr.flush()


def _known_errors() -> tuple[type[BaseException], ...]:
  from mgvm.run.train import NonFiniteLossError
  from mgvm.workdir import WorkdirLockedError

  return (ValueError, FileNotFoundError, NotADirectoryError, NonFiniteLossError, WorkdirLockedError)


def _wants_traceback(argv: list[str]) -> bool:
  return os.environ.get(TRACEBACK_ENV) == "1" or any(
    a.startswith(("--verbosity", "-v=")) for a in argv
  )


def add_model_args(parser) -> None:
  """`--image-size` / `--num-frames` / `--num-heads`: the clip and heads a tool builds its
  checkpoint's model for (`mgvm.weights.checkpoints.load_model`)."""
  parser.add_argument("--image-size", type=int, default=None, help="run the model at this size")
  parser.add_argument("--num-frames", type=int, default=None, help="run the model on T frames")
  parser.add_argument(
    "--num-heads",
    type=int,
    default=None,
    help="attention heads of a .pth whose width is not an official size (384/768/1024/1280)",
  )


def fail(message: str) -> NoReturn:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(ERROR_EXIT_CODE)


def run(main: Callable[[list[str]], None]) -> None:
  """`absl.app.run(main)` with flag and known errors printed as one `error:` message; TensorFlow
  loads quietly (`quiet_startup`) once the flags (and the config) have parsed."""
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
    quiet_startup()  # after the flags parsed: a misspelt config key fails before TF loads
    try:
      return main(argv)
    except _known_errors() as e:
      if _wants_traceback(sys.argv):
        raise
      fail(str(e))

  app.run(guarded, flags_parser=parse)
