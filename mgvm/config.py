"""Config helpers shared by `configs/*.py` (big_vision style `parse_arg`)."""

from __future__ import annotations


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
