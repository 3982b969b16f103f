"""Motion-guided token compressors: which tokens exist at all (docs/algorithms.md §3, §5).

A compressor scores every token of the grid `(T', h, w)` by how much it changes over time and
keeps the `int((1 - ratio) · N)` highest-scoring ones per video (EVEREST's count; a per-video
percentile, hence a static count). The dropped tokens are neither encoded nor reconstructed.
Alone, a compressor is a `Masker` whose `ids_keep` are the kept tokens and whose `ids_target` is
empty (classifiers: fine-tuning and test-time token compression); composed with a masker
(`mgvm.masking.compose`) it restricts the masker to the kept tokens.

- `mgtc`: motion-guided token compression (no public code; our reading of the paper). Score =
  difference between a token's pixels and the co-located pixels one temporal slice (tubelet)
  earlier: mean |Δ| (`metric="l1"`) or sqrt(mean Δ²) (`"l2"`) over the tubelet's pixels and
  channels; with `sub_blocks=s` the patch is cut into s×s sub-blocks, each scored, and the
  scores averaged per token. The first slice has no predecessor: `first="keep"` keeps it whole
  (a codec's key frame), `first="next"` scores it against the next slice.
- `everest`: VideoMS / EVEREST motion-centric selection. Score = L2 distance between the
  (detached) tubelet patch embeddings of consecutive slices at the same position; slice 0 takes
  the score of the pair (0, 1), slice t ≥ 1 that of (t − 1, t), for any number of slices (the
  reference hard-codes 8).
Ties keep the lower token index.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from mgvm.masking.core import (
  Grid,
  Masker,
  MaskOut,
  batch_size,
  check_fraction,
  mask_from_ids,
  split_by_scores,
)

METRICS = ("l1", "l2")
FIRST = ("keep", "next")


def compressed_count(grid: Grid, ratio: float) -> int:
  """Tokens a compressor keeps: int((1 - ratio) · N), as EVEREST (0.3 · 1568 → 470)."""
  return int((1.0 - ratio) * math.prod(grid))


def _tubelet(video: jax.Array, grid: Grid) -> tuple[int, int, int]:
  _, frames, height, width, _ = video.shape
  t, h, w = grid
  if frames % t or height % h or width % w:
    raise ValueError(f"video shape {video.shape} does not split into the token grid {grid}")
  return frames // t, height // h, width // w


def mgtc_scores(
  video: jax.Array, grid: Grid, *, metric: str = "l1", sub_blocks: int = 1, first: str = "keep"
) -> jax.Array:
  """float32 [B, N]: each token's pixel change against the co-located token one slice earlier.

  With `first="keep"` the first slice scores +inf (always kept).
  """
  if metric not in METRICS:
    raise ValueError(f"mgtc metric must be one of {METRICS}, got {metric!r}")
  if first not in FIRST:
    raise ValueError(f"mgtc first must be one of {FIRST}, got {first!r}")
  t, h, w = grid
  if t < 2:
    raise ValueError(f"mgtc compares consecutive slices; the grid {grid} has one slice")
  pt, ph, pw = _tubelet(video, grid)
  s = int(sub_blocks)
  if s < 1 or ph % s or pw % s:
    raise ValueError(f"sub_blocks={sub_blocks} must be >= 1 and divide the patch {ph}x{pw}")
  b, c = video.shape[0], video.shape[-1]
  x = video.astype(jnp.float32).reshape(b, t, pt, h, s, ph // s, w, s, pw // s, c)
  d = x[:, 1:] - x[:, :-1]  # [B, T'-1, pt, h, s, ph/s, w, s, pw/s, C]
  axes = (2, 5, 8, 9)  # pixels and channels of one sub-block
  if metric == "l1":
    per_block = jnp.mean(jnp.abs(d), axis=axes)
  else:
    per_block = jnp.sqrt(jnp.mean(d * d, axis=axes))
  rest = per_block.mean(axis=(3, 5))  # [B, T'-1, h, w]: sub-blocks averaged per token
  head = jnp.full_like(rest[:, :1], jnp.inf) if first == "keep" else rest[:, :1]
  return jnp.concatenate([head, rest], axis=1).reshape(b, t * h * w)


def everest_scores(tokens: jax.Array, grid: Grid) -> jax.Array:
  """float32 [B, N]: ‖e_t − e_{t±1}‖₂ of the detached patch embeddings `tokens` [B, N, D]."""
  t, h, w = grid
  if t < 2:
    raise ValueError(f"everest compares consecutive slices; the grid {grid} has one slice")
  e = jax.lax.stop_gradient(tokens).astype(jnp.float32).reshape(tokens.shape[0], t, h * w, -1)
  d = jnp.sqrt(jnp.sum(jnp.square(e[:, 1:] - e[:, :-1]), axis=-1))  # [B, T'-1, hw]: pairs (t, t+1)
  return jnp.concatenate([d[:, :1], d], axis=1).reshape(tokens.shape[0], t * h * w)


def compress(scores: jax.Array, num_keep: int) -> MaskOut:
  """Keep the `num_keep` highest scores per row: ids_keep ascending, no targets."""
  kept, _ = split_by_scores(scores, num_keep)
  empty = jnp.zeros((scores.shape[0], 0), jnp.int32)
  return MaskOut(kept, empty, mask_from_ids(kept, scores.shape[-1]))


def _mgtc(key, video, tokens, *, grid, num_keep, metric, sub_blocks, first):
  del key, tokens  # deterministic; pixels only
  if video is None:
    raise ValueError(
      "masking kind 'mgtc' scores pixels: call masker(key, video, tokens) with "
      "the clip video [B, T, H, W, 3]"
    )
  return compress(
    mgtc_scores(video, grid, metric=metric, sub_blocks=sub_blocks, first=first), num_keep
  )


def _everest(key, video, tokens, *, grid, num_keep):
  del key
  if tokens is None:
    raise ValueError(
      "masking kind 'everest' scores the patch embeddings: call "
      "masker(key, video, tokens) with tokens = model.encoder.embed(video)"
    )
  batch_size(video, tokens, math.prod(grid))
  return compress(everest_scores(tokens, grid), num_keep)


def _check_count(kind: str, grid: Grid, ratio: float, num_keep: int, first_slice: bool) -> None:
  n = math.prod(grid)
  if grid[0] < 2:
    raise ValueError(f"masking kind {kind!r} compares consecutive slices; grid {grid} has one")
  if not 1 <= num_keep < n:
    raise ValueError(
      f"masking kind {kind!r}: ratio={ratio} keeps int((1 - {ratio}) * {n}) = "
      f"{num_keep} of {n} tokens; it must keep at least 1 and drop at least 1"
    )
  if first_slice and num_keep < grid[1] * grid[2]:
    raise ValueError(
      f"masking kind {kind!r} with first='keep' keeps the whole first slice "
      f"({grid[1] * grid[2]} tokens) but ratio={ratio} keeps only {num_keep}; "
      f"lower the ratio or use first='next'"
    )


def build_mgtc(
  grid: Grid, *, ratio: float, metric: str = "l1", sub_blocks: int = 1, first: str = "keep"
) -> Masker:
  """MGTC compressor: drops the `ratio` lowest pixel-change tokens of each clip."""
  ratio = check_fraction("ratio", ratio)
  if metric not in METRICS:
    raise ValueError(f"masking kind 'mgtc': metric must be one of {METRICS}, got {metric!r}")
  if first not in FIRST:
    raise ValueError(f"masking kind 'mgtc': first must be one of {FIRST}, got {first!r}")
  if int(sub_blocks) != sub_blocks or sub_blocks < 1:
    raise ValueError(f"masking kind 'mgtc': sub_blocks must be an integer >= 1, got {sub_blocks}")
  num_keep = compressed_count(grid, ratio)
  _check_count("mgtc", grid, ratio, num_keep, first == "keep")
  fn = functools.partial(
    _mgtc, grid=grid, num_keep=num_keep, metric=metric, sub_blocks=int(sub_blocks), first=first
  )
  params = {"ratio": ratio, "metric": metric, "sub_blocks": int(sub_blocks), "first": first}
  return Masker("mgtc", grid, num_keep, 0, fn, params)


def build_everest(grid: Grid, *, ratio: float) -> Masker:
  """EVEREST compressor: drops the `ratio` lowest embedding-change tokens (mcm_ratio, 0.4)."""
  ratio = check_fraction("ratio", ratio)
  num_keep = compressed_count(grid, ratio)
  _check_count("everest", grid, ratio, num_keep, False)
  fn = functools.partial(_everest, grid=grid, num_keep=num_keep)
  return Masker("everest", grid, num_keep, 0, fn, {"ratio": ratio})
