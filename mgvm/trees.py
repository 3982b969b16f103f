"""Nested dicts as flat names: `{"a": {"b": x}}` -> `{"a.b": x}` (configs, checkpoints, params)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten_dict(tree: Mapping[Any, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
  """Every leaf of the nested mappings `tree`, keyed by its path joined with `sep`."""
  flat: dict[str, Any] = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten_dict(value, sep, name + sep))
    else:
      flat[name] = value
  return flat
