"""Token maskers: `build(config, grid) -> masker`, `masker(key, video, tokens) -> MaskOut`.

`config` (an `ml_collections.ConfigDict` or a dict) names the `kind` and its options, e.g.
`{"kind": "tube", "ratio": 0.9}`. Maskers (`BUILDERS`) pick the visible tokens; compressors
(`COMPRESSORS`: `mgtc`, `everest`, `rlt`; `random_drop`, their motion-free baseline) drop
low-motion tokens altogether: alone they return the
kept tokens as `ids_keep` and no targets (classifiers), and as `compress` of a masker they
restrict it to the kept tokens (`{"kind": "tube", "ratio": 0.9, "compress": {"kind": "mgtc",
"ratio": 0.25}}`, `mgvm.masking.compose`). A new kind is added by putting its builder
`builder(grid, *, option, ...) -> Masker` into `BUILDERS` or `COMPRESSORS`; the builder's
keyword-only parameters are the config keys the kind accepts (those without a default are
required). A masker built with codec motion (`mgm`, `mgmae` with `flow="codec"`, a compressor
with `motion="codec"`) has `needs_motion` and is called
`masker(key, video, tokens, motion=..., motion_valid=...)` (`mgvm.masking.motion`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from mgvm.masking import compose, mgmae, motion, random
from mgvm.masking.core import (
  Grid,
  Masker,
  MaskOut,
  check_grid,
  from_boolean_mask,
  kept_lengths,
)
from mgvm.masking.motion import compensate_camera, tubelet_motion

BUILDERS: dict[str, Callable[..., Masker]] = {
  "random": random.build_random,
  "tube": random.build_tube,
  "running_cell": random.build_running_cell,
  "mgmae": mgmae.build_mgmae,
  "mgm": motion.build_mgm,
}
COMPRESSORS: dict[str, Callable[..., Masker]] = {
  "mgtc": motion.build_mgtc,
  "everest": motion.build_everest,
  "rlt": motion.build_rlt,
  "random_drop": motion.build_random_drop,
}

__all__ = [
  "BUILDERS",
  "COMPRESSORS",
  "Masker",
  "MaskOut",
  "accepted_keys",
  "build",
  "compensate_camera",
  "from_boolean_mask",
  "kept_lengths",
  "tubelet_motion",
]


def accepted_keys(kind: str) -> dict[str, Any]:
  """Config keys of `kind` (besides `kind`) with their defaults (`inspect.Parameter.empty` = required)."""
  params = inspect.signature({**BUILDERS, **COMPRESSORS}[kind]).parameters.values()
  return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _as_dict(config: Any) -> dict[str, Any]:
  if hasattr(config, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
    return dict(config.to_dict())
  if isinstance(config, Mapping):
    return dict(config)
  raise TypeError(f"masking config must be a ConfigDict or a dict; got {type(config).__name__}")


def _options(kind: str, params: dict[str, Any]) -> dict[str, Any]:
  """Check `params` against the keys `kind` accepts; returns them unchanged."""
  keys = accepted_keys(kind)
  listing = ", ".join(["kind", *keys])
  for name in params:
    if name not in keys:
      close = difflib.get_close_matches(name, keys, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise ValueError(
        f"masking kind {kind!r} does not accept key {name!r}{hint}; accepted keys: {listing}"
      )
  missing = [k for k, d in keys.items() if d is inspect.Parameter.empty and k not in params]
  if missing:
    raise ValueError(
      f"masking kind {kind!r} needs key(s) {', '.join(map(repr, missing))}; "
      f"accepted keys: {listing}"
    )
  return params


def _compress_config(value: Any) -> dict[str, Any] | None:
  """The `compress` entry as a dict, or None when absent / empty / kind ""."""
  if value is None:
    return None
  value = _as_dict(value)
  return value if value.get("kind") else None


def build(config: Any, grid: Grid) -> Masker:
  """Build the masker (or compressor) `config` describes for the static token grid `(T', h, w)`.

  Raises ValueError for an unknown kind, a key the kind does not accept, a missing key, a
  ratio outside [0, 1) or one that leaves no visible or no masked token, and a bad grid.
  """
  params = _as_dict(config)
  kind = params.pop("kind", None)
  compress_config = _compress_config(params.pop("compress", None))
  kinds = {**BUILDERS, **COMPRESSORS}
  if kind not in kinds:
    what = "has no 'kind'" if kind is None else f"has unknown kind {kind!r}"
    raise ValueError(f"masking config {what}; known kinds: {', '.join(sorted(kinds))}")
  grid = check_grid(grid)
  if compress_config is None:
    return kinds[kind](grid, **_options(kind, params))
  if kind in COMPRESSORS:
    raise ValueError(
      f"masking kind {kind!r} is a compressor itself; 'compress' goes with a "
      f"masker ({', '.join(sorted(compose.PRIORITIES))})"
    )
  compressor_kind = compress_config.pop("kind")
  if compressor_kind not in COMPRESSORS:
    raise ValueError(
      f"compress kind {compressor_kind!r} is not a compressor; known: "
      f"{', '.join(sorted(COMPRESSORS))}"
    )
  compressor = COMPRESSORS[compressor_kind](grid, **_options(compressor_kind, compress_config))
  if kind in compose.PRIORITIES:
    params = _options(kind, params)
    default_ratio = accepted_keys(kind)["ratio"]
    if "ratio" not in params and default_ratio is not inspect.Parameter.empty:
      params["ratio"] = default_ratio
  return compose.build_composed(grid, kind, params, compressor)
