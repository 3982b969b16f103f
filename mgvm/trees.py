"""Nested dicts as flat names and back: `{"a": {"b": x}}` <-> `{"a.b": x}` (configs, checkpoints,
params)."""

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


def unflatten_dict(flat: Mapping[str, Any], sep: str = ".") -> dict[str, Any]:
  """The nested dicts of `flatten_dict`'s output (`{"a.b": x}` -> `{"a": {"b": x}}`)."""
  tree: dict[str, Any] = {}
  for name, value in flat.items():
    *parents, leaf = name.split(sep)
    node = tree
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return tree
