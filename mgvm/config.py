"""Config helpers: `parse_arg` for `configs/*.py` (big_vision style) and `load_config`, the one
loader every command-line tool outside `train.py` / `eval.py` uses."""

from __future__ import annotations

import os
import re
import sys
from typing import Sequence


def parse_arg(arg: str | None, **spec):
  """Parses 'a=1,flag' against defaults in `spec` (`flag` alone means True).

  Unknown names fail at once, naming the name and the accepted ones.
  """
  values = dict(spec)
  for item in filter(None, (arg or "").split(",")):
    name, _, raw = item.partition("=")
    if name not in spec:
      raise ValueError(f"unknown config argument {name!r}; accepted: {sorted(spec)}")
    default = spec[name]
    if not raw:
      values[name] = True
    elif isinstance(default, bool):
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {name}={raw!r} is not a boolean")
      values[name] = raw.lower() in ("true", "1")
    else:
      values[name] = type(default)(raw) if default is not None else raw
  return type("Args", (), values)


def load_config(spec: str, overrides: Sequence[str] = ()):
  """`path.py[:arg]` plus `--config.KEY=VALUE` overrides, exactly as `train.py` reads them.

  The same ml_collections `config_flags` parser as `train.py` / `eval.py`, on a locked config:
  a misspelt key or a value of the wrong type fails naming it (ValueError).
  """
  from absl import flags
  from ml_collections import config_flags

  path = spec.partition(":")[0]
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config {spec!r}: no file {path!r}")
  root = os.path.dirname(
    os.path.dirname(os.path.abspath(path))
  )  # so `from configs import ...` works
  if root not in sys.path:
    sys.path.insert(0, root)
  for item in overrides:
    if not item.startswith("--config.") or "=" not in item:
      raise ValueError(f"unexpected argument {item!r}; overrides look like --config.KEY=VALUE")
  argv = ["mgvm", f"--config={spec}", *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    "config", None, "config file[:arg]", flag_values=values, lock_config=True, sys_argv=argv
  )
  try:
    values(argv)
  except (AttributeError, KeyError, flags.Error) as e:
    raise ValueError(flag_error_message(e, spec)) from None
  return values.config


def flag_error_message(error: Exception, spec: str = "") -> str:
  """One readable message for an error of absl / ml_collections flag parsing: a misspelt config
  key (`has no key 'rato' (did you mean 'ratio'?)`), a bad value, or a failing `get_config`
  (its traceback, embedded in the message, cut to its first and last lines)."""
  text = str(error)
  if isinstance(error, (AttributeError, KeyError)):  # a misspelt key of an override
    name = re.search(r"[A-Za-z_]\w*", text)
    hint = re.search(r'Did you mean "(\w+)"', text)
    where = f"the config {spec!r}" if spec else "the config"
    return f"{where} has no key {name.group(0) if name else text!r}" + (
      f" (did you mean {hint.group(1)!r}?)" if hint else ""
    )
  lines = [line for line in text.splitlines() if line.strip()]
  return f"{lines[0]} {lines[-1]}" if "Traceback" in text and len(lines) > 1 else text
