"""Motion-free maskers of VideoMAE v1 and v2: `random`, `tube` and `running_cell`.

Each masker is a pure function `(key, video, tokens, *, grid, ...) -> MaskOut` with static
shapes; only the batch size of `video` / `tokens` is read. Counts follow the references:
`int(ratio * N)` masked tokens for random masking (or, `visible_rule="everest"`, EVEREST's
`int((1 - ratio) * N)` visible ones), `int(ratio * h·w)` masked positions per slice for tube
masking (docs/algorithms.md §1.2, §3.2), and VideoMAE v2's running-cell decoder mask (§1.9).
Each kind also has a `build_*` function used by `mgvm.masking.build`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from mgvm.masking.core import (
  Grid,
  Masker,
  MaskOut,
  batch_size,
  check_fraction,
  check_split,
  mask_from_ids,
  split_by_scores,
  tile_over_time,
)

# The running cell is a 2x2 unit whose 4 bits rotate through a cyclic queue: 4 phases.
CELL = 2
NUM_PHASES = CELL * CELL

# ----------------------------------------------------------------------------- random

# How `ratio` becomes the visible count K of N tokens ("auto": the recipe's own, see
# `resolve_visible_rule`).
VISIBLE_RULES = ("auto", "videomae", "everest")


def check_visible_rule(visible_rule: str) -> str:
  if visible_rule not in VISIBLE_RULES:
    raise ValueError(
      f"masking kind 'random': visible_rule must be one of {VISIBLE_RULES}, got {visible_rule!r}"
    )
  return visible_rule


def resolve_visible_rule(visible_rule: str, compressor_kind: str | None = None) -> str:
  """ "auto" -> "everest" under EVEREST's compressor (its reference), else "videomae"."""
  if check_visible_rule(visible_rule) != "auto":
    return visible_rule
  return "everest" if compressor_kind == "everest" else "videomae"


def random_counts(grid: Grid, ratio: float, visible_rule: str = "videomae") -> tuple[int, int]:
  """(K, M) of per-token random masking on N tokens.

  "videomae" (VideoMAE v2's `RandomMaskingGenerator`): M = int(ratio * N) masked, K = N - M
  (157 of 1568 at 0.9). "everest" (EVEREST's `mcm_step`): K = int((1 - ratio) * N) in float64,
  M = N - K (156 of 1568: (1 - 0.9) * 1568 = 156.79...). Neither rounding is a defect; they
  differ by one token whenever `ratio * N` is not an integer.
  """
  n = math.prod(grid)
  rule = resolve_visible_rule(visible_rule)
  if rule == "everest":
    k = int((1.0 - ratio) * n)
    return k, n - k
  m = int(ratio * n)
  return n - m, m


def random_mask(
  key: jax.Array,
  video: jax.Array | None = None,
  tokens: jax.Array | None = None,
  *,
  grid: Grid,
  ratio: float,
  visible_rule: str = "videomae",
) -> MaskOut:
  """Mask the `random_counts` tokens uniformly at random, independently per sample."""
  n = math.prod(grid)
  num_keep, _ = random_counts(grid, ratio, visible_rule)
  b = batch_size(video, tokens, n)
  scores = jax.random.uniform(key, (b, n))
  ids_keep, ids_target = split_by_scores(scores, num_keep)
  return MaskOut(ids_keep, ids_target, mask_from_ids(ids_keep, n))


# ----------------------------------------------------------------------------- tube


def tube_counts(grid: Grid, ratio: float) -> tuple[int, int]:
  """(K, M) of tube masking: int(ratio * h·w) masked positions in each of the T' slices."""
  t, h, w = grid
  masked = int(ratio * h * w)
  return t * (h * w - masked), t * masked


def tube_mask(
  key: jax.Array,
  video: jax.Array | None = None,
  tokens: jax.Array | None = None,
  *,
  grid: Grid,
  ratio: float,
) -> MaskOut:
  """VideoMAE tube masking: one random spatial mask per sample, repeated over all T' slices."""
  t, h, w = grid
  hw = h * w
  b = batch_size(video, tokens, t * hw)
  keep_per_slice = hw - int(ratio * hw)
  scores = jax.random.uniform(key, (b, hw))
  keep, rest = split_by_scores(scores, keep_per_slice)
  mask = jnp.tile(mask_from_ids(keep, hw), (1, t))
  return MaskOut(tile_over_time(keep, grid), tile_over_time(rest, grid), mask)


# ----------------------------------------------------------------------------- running cell


def cells_dropped(decoder_ratio: float) -> int:
  """Bits of the 2x2 cell the decoder drops: int(4 * decoder_ratio), as in VideoMAE v2."""
  return int(NUM_PHASES * decoder_ratio)


@functools.lru_cache(maxsize=64)
def running_cell_decoded(grid: Grid, decoder_ratio: float) -> np.ndarray:
  """Decoded token ids of each running-cell phase: int32 [4, M], rows ascending.

  VideoMAE v2 (`RunningCellMaskingGenerator`): a cyclic queue of 4 bits, the first
  `int(4 * decoder_ratio)` set (= dropped by the decoder). For phase `p` and slice `t` the
  queue pointer is `p + t + 1` (advanced once before every slice); the 2x2 unit is
  `unit[a, b] = queue[(2a + b + pointer) mod 4]`, tiled over the h x w grid, so position
  `(i, j)` reads `unit[i mod 2, j mod 2]`. The decoder decodes the positions whose bit is 0.
  """
  t, h, w = grid
  queue = np.arange(NUM_PHASES) < cells_dropped(decoder_ratio)
  pointer = np.arange(NUM_PHASES)[:, None] + np.arange(t)[None, :] + 1  # [phase, t]
  unit = queue[(pointer[..., None] + np.arange(NUM_PHASES)) % NUM_PHASES]
  unit = unit.reshape(NUM_PHASES, t, CELL, CELL)
  dropped = np.tile(unit, (1, 1, h // CELL, w // CELL))  # [phase, t, h, w]
  decoded = ~dropped.reshape(NUM_PHASES, t * h * w)
  ids = np.nonzero(decoded)[1].reshape(NUM_PHASES, -1).astype(np.int32)
  ids.flags.writeable = False
  return ids


def running_cell_counts(grid: Grid, ratio: float, decoder_ratio: float) -> tuple[int, int]:
  """(K, M): K from tube masking with `ratio`; M = decoded positions, (4 - dropped)·h·w/4 per slice."""
  t, h, w = grid
  num_keep, _ = tube_counts(grid, ratio)
  per_slice = (NUM_PHASES - cells_dropped(decoder_ratio)) * (h // CELL) * (w // CELL)
  return num_keep, t * per_slice


def running_cell_mask(
  key: jax.Array,
  video: jax.Array | None = None,
  tokens: jax.Array | None = None,
  *,
  grid: Grid,
  ratio: float = 0.9,
  decoder_ratio: float = 0.5,
) -> MaskOut:
  """VideoMAE v2 dual masking: tube encoder mask + running-cell decoder mask.

  `mask` / `ids_keep` are tube masking with `ratio`. `ids_target` holds ALL positions the
  decoder decodes (those not dropped by the running-cell decoder mask with `decoder_ratio`),
  ascending; one of the 4 phases is drawn uniformly per sample. As in the reference, decoded
  positions can include encoder-visible tokens: the reference averages the loss only over
  decoded positions that are also encoder-masked, and in mgvm the loss gets that weight by
  gathering `mask` at `ids_target`.
  """
  enc_key, phase_key = jax.random.split(key)
  out = tube_mask(enc_key, video, tokens, grid=grid, ratio=ratio)
  table = jnp.asarray(running_cell_decoded(tuple(grid), float(decoder_ratio)))
  phase = jax.random.randint(phase_key, (out.mask.shape[0],), 0, NUM_PHASES)
  return out._replace(ids_target=table[phase])


# ----------------------------------------------------------------------------- builders


def build_random(grid: Grid, *, ratio: float, visible_rule: str = "auto") -> Masker:
  """Per-token random masking of `int(ratio * N)` tokens.

  `visible_rule` (`random_counts`): "videomae" keeps N − int(ratio·N) visible, "everest"
  int((1 − ratio)·N); "auto" (default) is each recipe's reference: "everest" when composed with
  the `everest` compressor (EVEREST pre-training: 156 of 1568), "videomae" otherwise (157).
  """
  ratio = check_fraction("ratio", ratio)
  rule = resolve_visible_rule(visible_rule)
  num_keep, num_target = random_counts(grid, ratio, rule)
  check_split("random", ratio, math.prod(grid), num_target, "tokens")
  if num_keep < 1:
    raise ValueError(
      f"masking kind 'random': ratio={ratio} with visible_rule={visible_rule!r} leaves no "
      "visible token"
    )
  fn = functools.partial(random_mask, grid=grid, ratio=ratio, visible_rule=rule)
  params = {"ratio": ratio, "visible_rule": rule}
  return Masker("random", grid, num_keep, num_target, fn, params)


def build_tube(grid: Grid, *, ratio: float) -> Masker:
  """VideoMAE tube masking of `int(ratio * h·w)` positions per slice."""
  ratio = check_fraction("ratio", ratio)
  num_keep, num_target = tube_counts(grid, ratio)
  check_split("tube", ratio, grid[1] * grid[2], num_target // grid[0], "positions per slice")
  fn = functools.partial(tube_mask, grid=grid, ratio=ratio)
  return Masker("tube", grid, num_keep, num_target, fn, {"ratio": ratio})


def build_running_cell(grid: Grid, *, ratio: float = 0.9, decoder_ratio: float = 0.5) -> Masker:
  """VideoMAE v2 dual masking (tube encoder mask, running-cell decoder mask)."""
  ratio = check_fraction("ratio", ratio)
  decoder_ratio = check_fraction("decoder_ratio", decoder_ratio)
  _, masked = tube_counts(grid, ratio)
  check_split("running_cell", ratio, grid[1] * grid[2], masked // grid[0], "positions per slice")
  if not 1 <= cells_dropped(decoder_ratio) < NUM_PHASES:
    raise ValueError(
      f"masking kind 'running_cell': decoder_ratio={decoder_ratio} drops "
      f"int(4 * {decoder_ratio}) = {cells_dropped(decoder_ratio)} of the 4 "
      "positions of a 2x2 cell; it must drop 1, 2 or 3 (0.25 <= decoder_ratio "
      "< 1). Use kind 'tube' to decode every encoder-masked token."
    )
  if grid[1] % CELL or grid[2] % CELL:
    raise ValueError(
      f"masking kind 'running_cell' tiles a 2x2 cell over the h x w grid; "
      f"h and w must be even, got grid {grid}"
    )
  num_keep, num_target = running_cell_counts(grid, ratio, decoder_ratio)
  fn = functools.partial(running_cell_mask, grid=grid, ratio=ratio, decoder_ratio=decoder_ratio)
  params = {"ratio": ratio, "decoder_ratio": decoder_ratio}
  return Masker("running_cell", grid, num_keep, num_target, fn, params)
