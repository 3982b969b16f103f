"""Positions for another clip length or resolution: learned tables interpolated, fixed ones rebuilt.

A model's token grid (T', h, w) follows its clip (`num_frames`, `image_size`) and tubelet. The
fixed 1-D sinusoid table has no parameters: a model built for another grid computes its own
(`mgvm.models.vit.position_table`), so loading weights into it needs nothing but a log line. A
learned table (`pos_embed="learned"`, [T'·h·w, D]) is resampled trilinearly over (t, h, w), as
torch's `interpolate(mode="trilinear", align_corners=False)` (`resize_table`, checked against
torch in tests/test_tools_export.py). docs/tools.md shows the log of each case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = ["describe_grid_change", "linear_matrix", "resize_positions", "resize_table"]


def linear_matrix(size_in: int, size_out: int) -> np.ndarray:
  """float64 [size_out, size_in]: torch's 1-D linear resampling (align_corners=False).

  Source coordinate `max(0, in/out · (i + 0.5) − 0.5)`, its two neighbours clamped to the edge;
  coordinates and weights in float32, as torch computes them for float32 tensors.
  """
  if size_in < 1 or size_out < 1:
    raise ValueError(f"sizes must be >= 1, got {size_in} -> {size_out}")
  f = np.float32
  scale = f(size_in) / f(size_out)
  src = np.maximum(scale * (np.arange(size_out, dtype=f) + f(0.5)) - f(0.5), f(0))
  low = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
  high = np.minimum(low + 1, size_in - 1)
  frac = (src - low.astype(f)).astype(f)
  matrix = np.zeros((size_out, size_in))
  rows = np.arange(size_out)
  np.add.at(matrix, (rows, low), (f(1) - frac).astype(np.float64))
  np.add.at(matrix, (rows, high), frac.astype(np.float64))
  return matrix


def _grid(grid: Sequence[int], what: str) -> tuple[int, int, int]:
  grid = tuple(int(g) for g in grid)
  if len(grid) != 3 or min(grid) < 1:
    raise ValueError(f"{what} must be (T', h, w) of positive ints, got {grid}")
  return grid


def resize_table(table, from_grid: Sequence[int], to_grid: Sequence[int]) -> np.ndarray:
  """float32 [prod(to_grid), D]: a [prod(from_grid), D] (or [1, N, D]) table in (t, h, w) order,
  resampled trilinearly to `to_grid`; the table itself (as float32) when the grids are equal."""
  src, dst = _grid(from_grid, "from_grid"), _grid(to_grid, "to_grid")
  table = np.asarray(table, np.float32)
  if table.ndim == 3 and table.shape[0] == 1:
    table = table[0]
  if table.ndim != 2 or table.shape[0] != int(np.prod(src)):
    raise ValueError(
      f"a position table for the grid {src} has {int(np.prod(src))} rows; got shape {table.shape}"
    )
  if src == dst:
    return table
  x = table.reshape(*src, table.shape[-1]).astype(np.float64)
  mt, mh, mw = (linear_matrix(a, b) for a, b in zip(src, dst))
  out = np.einsum("Tt,Hh,Ww,thwd->THWd", mt, mh, mw, x, optimize=True)
  return out.reshape(-1, table.shape[-1]).astype(np.float32)


def describe_grid_change(
  from_grid: Sequence[int], to_grid: Sequence[int], learned: bool, what: str = "checkpoint"
) -> str:
  """The log line for loading weights made for `from_grid` into a model of `to_grid`."""
  src, dst = tuple(from_grid), tuple(to_grid)
  if src == dst:
    return f"positions: the {what}'s token grid {src} is the model's"
  how = (
    "learned pos_embed interpolated trilinearly over (t, h, w)"
    if learned
    else "fixed sinusoid table rebuilt for the new grid (no parameters)"
  )
  return f"positions: token grid {src} of the {what} -> {dst} (T', h, w): {how}"


def resize_positions(
  flat_params: Mapping[str, np.ndarray],
  from_grid: Sequence[int],
  to_grid: Sequence[int],
  *,
  log: Callable[[str], None] | None = print,
  what: str = "checkpoint",
) -> dict[str, np.ndarray]:
  """`flat_params` ({"encoder.pos_embed": ..., ...}) with every learned `pos_embed` table resized
  from `from_grid` to `to_grid` (`resize_table`); logs what changed (`describe_grid_change`)."""
  out = dict(flat_params)
  learned = [k for k in out if k.rsplit(".", 1)[-1] == "pos_embed"]
  for key in learned:
    out[key] = resize_table(out[key], from_grid, to_grid)
  if log is not None:
    log(describe_grid_change(from_grid, to_grid, bool(learned), what))
  return out
