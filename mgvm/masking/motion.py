"""Motion-guided token compressors (docs/algorithms.md §3, §5, §7), the codec motion field
(§6) and MGM, the codec-motion masker (§8).

Compressors decide which tokens exist at all.

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
- `rlt`: Run-Length Tokenization's static-token rule (Choudhury et al., NeurIPS 2024; its code
  `rccchoudhury/rlt`, docs/algorithms.md §7). Score of tubelet t ≥ 1 at a patch: the mean over
  the patch's pixels and channels of |last frame of tubelet t − first frame of tubelet t − 1|
  (the reference's `x[2·pt − 1 :: pt] − x[: −pt : pt]`), on the model input (RLT's: ImageNet
  normalised); the first tubelet is always kept (the reference's dummy 255). `form="topk"`
  keeps the `int((1 − ratio)·N)` highest scores like MGTC; `form="threshold"` keeps every
  token scoring above `threshold` (τ, the reference's 0.1), a different count per clip,
  padded to the static budget `K = int((1 − ratio)·N)` (`ratio=0`: K = N, never exceeded): a
  `variable_length` masker. A clip with more than K non-static tokens keeps its K highest
  scores (the first slice first), the rest are dropped as if static.
- `random_drop`: `int((1 − ratio)·N)` tokens drawn uniformly per clip (the motion-free
  baseline at the same K; no `motion` option).
The motion compressors take `motion="pixels"` (the scores above, the default) or `"codec"`: a
token's score is then the magnitude of its tubelet's codec motion (below),
camera-compensated with `compensate_camera` ("" off, "median", "affine"); MGTC's and RLT's
first slice keeps its rule (kept whole, or MGTC's `first="next"`: scored as slice 1), RLT's
`threshold` is then in pixels of motion. Ties keep the lower token index.

The codec motion field. The input pipeline (`make_dataset(..., motion=True)`) gives, per clip,
`motion` float32 [B, T, h, w, 2]: for each sampled frame k the displacement (dx, dy) in model-input pixels of
each block's content from sampled frame k − 1 to frame k (content at p in frame k was at
p − (dx, dy) in frame k − 1; entry 0 is zero), on the token grid (h, w) = image size / block,
and `motion_valid` float32 [B, T, h, w], the share of each block the codec covered with a
vector (`mgvm.data.device_ops.model_motion` mirrors both with the clip's flip). A block counts
as valid when that share is at least `VALID_SHARE`; without `motion_valid` every block does.

- `compensate_camera(motion, motion_valid, mode)`: per frame, "" leaves the field, "median"
  subtracts the per-component median vector over the valid blocks, "affine" the least-squares
  affine field `d(x, y) = A·(x, y) + b` fitted to the valid blocks (block centres at
  normalised coordinates in [−1, 1]; a frame with no valid block is left unchanged).
- `tubelet_motion(motion, tubelet_t)`: [B, T', h, w, 2], the sum of each tubelet's frames'
  entries at the same block: for frames (k0, ..., k0 + pt − 1) that is the displacement from
  frame k0 − 1 (the previous tubelet's last frame) to the tubelet's last frame, under the
  approximation that the content stays in its block (the vectors are added where they are, not
  along the trajectory). Tubelet 0 has no predecessor: its entry 0 is zero, so it sums its own
  frames' displacements only.
- `codec_scores`: [B, N], the magnitude of each token's (camera-compensated) tubelet motion.

MGM. mgvm's reading of the paper (docs/algorithms.md §8 says which points are readings): per
clip, with the codec motion field `motion` [B, T, h, w, 2] on the token grid,
1. each token's motion is the magnitude of its tubelet's (camera-compensated,
   `compensate_camera`, "median" by default) codec motion (`codec_scores`);
2. each slice's mask centre is its token of highest motion (ties to the lower index); a slice
   without motion (all zero, e.g. an intra-coded frame pair) takes the centre of the nearest
   earlier slice with motion, leading ones the first slice with motion, and a clip without
   any motion one uniformly random token for all its slices;
3. the masked tokens of a slice are `int(ratio·h·w)` tokens drawn without replacement with
   probability ∝ exp(−d² / (2σ²)), d the distance in tokens to the slice's centre and
   σ = `sigma`·max(h, w) (Gumbel top-k): the mask is a blob that follows the moving region
   from slice to slice, and the visible context lies mostly away from the motion;
4. visible = the other `h·w − int(ratio·h·w)` tokens of each slice (VideoMAE tube masking's
   counts); targets = every masked token.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp

from mgvm.masking.core import (
  Grid,
  Masker,
  MaskOut,
  batch_size,
  check_fraction,
  check_split,
  mask_from_ids,
  split_by_scores,
)
from mgvm.masking.random import tube_counts

METRICS = ("l1", "l2")
FIRST = ("keep", "next")
RLT_FORMS = ("topk", "threshold")


# ----------------------------------------------------------------------------- codec motion


SOURCES = ("pixels", "codec")  # a compressor's `motion` option
COMPENSATIONS = ("", "median", "affine")  # `compensate_camera`
VALID_SHARE = 0.5  # a block is valid for camera fitting when motion_valid >= this


def check_choice(kind: str, name: str, value, options) -> str:
  if value not in options:
    raise ValueError(f"masking kind {kind!r}: {name} must be one of {options}, got {value!r}")
  return value


def check_motion(
  kind: str,
  motion: jax.Array,
  motion_valid: jax.Array | None,
  grid: Grid,
  *,
  video: jax.Array | None = None,
  tokens: jax.Array | None = None,
  same_grid: bool = True,
) -> int:
  """Static batch size of `motion`; fails naming `kind` when a shape does not fit the grid
  (with `same_grid`, the motion grid must be the token grid (h, w)) or `video` / `tokens`."""
  if motion.ndim != 5 or motion.shape[-1] != 2:
    raise ValueError(
      f"masking kind {kind!r}: motion must be [B, T, h, w, 2]; got shape {tuple(motion.shape)}"
    )
  b, frames, mh, mw, _ = motion.shape
  t, h, w = grid
  if frames % t:
    raise ValueError(
      f"masking kind {kind!r}: motion has {frames} frames, not a multiple of the grid's {t} slices"
    )
  if same_grid and (mh, mw) != (h, w):
    raise ValueError(
      f"masking kind {kind!r}: motion is on a {mh}x{mw} block grid but the token grid is "
      f"{h}x{w}; make the pipeline's motion_block the tubelet's patch size"
    )
  if motion_valid is not None and tuple(motion_valid.shape) != tuple(motion.shape[:-1]):
    raise ValueError(
      f"masking kind {kind!r}: motion_valid must be {tuple(motion.shape[:-1])} like motion; "
      f"got {tuple(motion_valid.shape)}"
    )
  if video is not None and tuple(video.shape[:2]) != (b, frames):
    raise ValueError(
      f"masking kind {kind!r}: video [B, T] = {tuple(video.shape[:2])} but motion has {(b, frames)}"
    )
  if tokens is not None and tokens.shape[0] != b:
    raise ValueError(f"masking kind {kind!r}: tokens batch {tokens.shape[0]} != motion batch {b}")
  return int(b)


def valid_blocks(motion: jax.Array, motion_valid: jax.Array | None) -> jax.Array:
  """bool [B, T, h, w]: blocks whose codec coverage is at least `VALID_SHARE` (all without
  `motion_valid`)."""
  if motion_valid is None:
    return jnp.ones(motion.shape[:-1], bool)
  return jnp.asarray(motion_valid, jnp.float32) >= VALID_SHARE


def _median(values: jax.Array, ok: jax.Array) -> jax.Array:
  """[..., 2]: per-component median of `values` [..., n, 2] over the entries where `ok`
  [..., n] (the mean of the two middle ones for an even count); 0 where none is."""
  count = jnp.sum(ok, axis=-1)  # [...]
  ordered = jnp.sort(jnp.where(ok[..., None], values, jnp.inf), axis=-2)
  lo, hi = jnp.maximum(count - 1, 0) // 2, count // 2  # hi <= n − 1 as count <= n
  pick = lambda i: jnp.take_along_axis(ordered, i[..., None, None], axis=-2)[..., 0, :]
  med = 0.5 * (pick(lo) + pick(hi))
  return jnp.where(count[..., None] > 0, med, 0.0)


def _affine_fit(values: jax.Array, ok: jax.Array, h: int, w: int) -> jax.Array:
  """[..., h·w, 2]: the least-squares affine field through `values` [..., h·w, 2] at the valid
  blocks `ok` [..., h·w] (pseudo-inverse of the 3x3 normal equations: a degenerate set of
  blocks gets the minimum-norm fit, none a zero field)."""
  ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h * 2.0 - 1.0
  xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w * 2.0 - 1.0
  design = jnp.stack(
    [jnp.tile(xs, h), jnp.repeat(ys, w), jnp.ones((h * w,), jnp.float32)], axis=-1
  )  # [n, 3]: (x, y, 1) of each block centre, row-major
  weight = ok.astype(jnp.float32)
  normal = jnp.einsum("...n,ni,nj->...ij", weight, design, design)
  rhs = jnp.einsum("...n,ni,...nc->...ic", weight, design, values)
  params = jnp.linalg.pinv(normal) @ rhs  # [..., 3, 2]
  return jnp.einsum("ni,...ic->...nc", design, params)


def compensate_camera(
  motion: jax.Array, motion_valid: jax.Array | None = None, mode: str = ""
) -> jax.Array:
  """float32 [B, T, h, w, 2]: `motion` less each frame's camera motion (module docstring)."""
  if mode not in COMPENSATIONS:
    raise ValueError(f"compensate_camera mode must be one of {COMPENSATIONS}, got {mode!r}")
  motion = jnp.asarray(motion, jnp.float32)
  if mode == "":
    return motion
  b, t, h, w, _ = motion.shape
  values = motion.reshape(b, t, h * w, 2)
  ok = valid_blocks(motion, motion_valid).reshape(b, t, h * w)
  if mode == "median":
    camera = _median(values, ok)[:, :, None, :]
  else:
    camera = _affine_fit(values, ok, h, w)
  return (values - camera).reshape(b, t, h, w, 2)


def tubelet_motion(motion: jax.Array, tubelet_t: int) -> jax.Array:
  """[B, T', h, w, 2]: the sum of the entries of each tubelet's `tubelet_t` frames (module
  docstring: the displacement from the previous tubelet's last frame to this one's last)."""
  b, frames, h, w, c = motion.shape
  if frames % tubelet_t:
    raise ValueError(f"motion has {frames} frames, not a multiple of tubelet_t={tubelet_t}")
  return motion.reshape(b, frames // tubelet_t, tubelet_t, h, w, c).sum(axis=2)


def magnitude(field: jax.Array) -> jax.Array:
  """‖(dx, dy)‖ over the last axis."""
  return jnp.sqrt(jnp.sum(jnp.square(field), axis=-1))


def codec_scores(
  motion: jax.Array, motion_valid: jax.Array | None, grid: Grid, compensate: str = ""
) -> jax.Array:
  """float32 [B, N]: the magnitude of each token's camera-compensated tubelet motion."""
  t = grid[0]
  field = compensate_camera(motion, motion_valid, compensate)
  per_token = magnitude(tubelet_motion(field, field.shape[1] // t))
  return jax.lax.stop_gradient(per_token.reshape(field.shape[0], -1))


def pixel_field(motion_frames: jax.Array, size: tuple[int, int]) -> jax.Array:
  """[..., H, W, 2]: block fields [..., h, w, 2] repeated over each block's pixels (nearest:
  a codec vector is constant over its block)."""
  height, width = size
  h, w = motion_frames.shape[-3:-1]
  if height % h or width % w:
    raise ValueError(f"a {h}x{w} motion grid does not divide {height}x{width} pixels")
  out = jnp.repeat(motion_frames, height // h, axis=-3)
  return jnp.repeat(out, width // w, axis=-2)


# ----------------------------------------------------------------------------- compressors


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


def rlt_scores(video: jax.Array, grid: Grid) -> jax.Array:
  """float32 [B, N]: RLT's change of each token (module docstring); the first slice +inf."""
  t, h, w = grid
  if t < 2:
    raise ValueError(f"rlt compares consecutive slices; the grid {grid} has one slice")
  pt, ph, pw = _tubelet(video, grid)
  b, c = video.shape[0], video.shape[-1]
  x = jax.lax.stop_gradient(video).astype(jnp.float32)
  d = jnp.abs(x[:, 2 * pt - 1 :: pt] - x[:, :-pt:pt])  # [B, T' − 1, H, W, C]
  rest = d.reshape(b, t - 1, h, ph, w, pw, c).mean(axis=(3, 5, 6))
  head = jnp.full((b, 1, h, w), jnp.inf, jnp.float32)
  return jnp.concatenate([head, rest], axis=1).reshape(b, t * h * w)


def compress_padded(scores: jax.Array, num_keep: int, threshold: float) -> MaskOut:
  """Keep the tokens scoring above `threshold`, at most the `num_keep` highest: `ids_keep`
  [B, num_keep] holds them ascending, then padding (the other ids of the top `num_keep`,
  ascending); `mask` is False exactly at the kept ones."""
  n = scores.shape[-1]
  top_scores, top = jax.lax.top_k(scores, num_keep)  # descending, ties to the lower index
  real = top_scores > threshold
  order = jnp.sort(jnp.where(real, top, top + n).astype(jnp.int32), axis=-1)
  ids = jnp.where(order < n, order, order - n)
  kept = jnp.where(real, top, n).astype(jnp.int32)  # n: out of range, dropped by the scatter
  mask = jax.vmap(lambda k: jnp.ones((n,), bool).at[k].set(False, mode="drop"))(kept)
  empty = jnp.zeros((scores.shape[0], 0), jnp.int32)
  return MaskOut(ids, empty, mask)


def _scores(
  kind: str,
  source: str,
  compensate: str,
  grid: Grid,
  video,
  tokens,
  motion,
  motion_valid,
  pixel_scores,
  first: str,
) -> jax.Array:
  """[B, N] scores of `source`: `pixel_scores()` or the codec motion's (first slice by `first`:
  "keep" → +inf, "next" → slice 1's, "" → its own)."""
  if source == "pixels":
    return pixel_scores()
  check_motion(kind, motion, motion_valid, grid, video=video, tokens=tokens)
  scores = codec_scores(motion, motion_valid, grid, compensate)
  if first:
    b, hw = scores.shape[0], grid[1] * grid[2]
    s = scores.reshape(b, grid[0], hw)
    head = jnp.full_like(s[:, :1], jnp.inf) if first == "keep" else s[:, 1:2]
    scores = jnp.concatenate([head, s[:, 1:]], axis=1).reshape(b, -1)
  return scores


def _pixels_needed(kind: str, video) -> None:
  if video is None:
    raise ValueError(
      f"masking kind {kind!r} scores pixels: call masker(key, video, tokens) with "
      "the clip video [B, T, H, W, 3]"
    )


def _mgtc(
  key,
  video,
  tokens,
  motion=None,
  motion_valid=None,
  *,
  grid,
  num_keep,
  metric,
  sub_blocks,
  first,
  source,
  compensate,
):
  del key  # deterministic

  def pixels():
    _pixels_needed("mgtc", video)
    return mgtc_scores(video, grid, metric=metric, sub_blocks=sub_blocks, first=first)

  scores = _scores(
    "mgtc", source, compensate, grid, video, tokens, motion, motion_valid, pixels, first
  )
  return compress(scores, num_keep)


def _everest(
  key, video, tokens, motion=None, motion_valid=None, *, grid, num_keep, source, compensate
):
  del key

  def embeddings():
    if tokens is None:
      raise ValueError(
        "masking kind 'everest' scores the patch embeddings: call "
        "masker(key, video, tokens) with tokens = model.encoder.embed(video)"
      )
    batch_size(video, tokens, math.prod(grid))
    return everest_scores(tokens, grid)

  scores = _scores(
    "everest", source, compensate, grid, video, tokens, motion, motion_valid, embeddings, ""
  )
  return compress(scores, num_keep)


def _rlt(
  key,
  video,
  tokens,
  motion=None,
  motion_valid=None,
  *,
  grid,
  num_keep,
  form,
  threshold,
  source,
  compensate,
):
  del key

  def pixels():
    _pixels_needed("rlt", video)
    return rlt_scores(video, grid)

  scores = _scores(
    "rlt", source, compensate, grid, video, tokens, motion, motion_valid, pixels, "keep"
  )
  if form == "topk":
    return compress(scores, num_keep)
  return compress_padded(scores, num_keep, threshold)


def _check_count(
  kind: str, grid: Grid, ratio: float, num_keep: int, first_slice: bool, allow_all: bool = False
) -> None:
  n = math.prod(grid)
  if grid[0] < 2:
    raise ValueError(f"masking kind {kind!r} compares consecutive slices; grid {grid} has one")
  if not 1 <= num_keep <= (n if allow_all else n - 1):
    raise ValueError(
      f"masking kind {kind!r}: ratio={ratio} keeps int((1 - {ratio}) * {n}) = "
      f"{num_keep} of {n} tokens; it must keep at least 1 and drop at least 1"
    )
  if first_slice and num_keep < grid[1] * grid[2]:
    raise ValueError(
      f"masking kind {kind!r}{' with first=keep' if kind == 'mgtc' else ''} keeps the whole first slice "
      f"({grid[1] * grid[2]} tokens) but ratio={ratio} keeps only {num_keep}; "
      f"lower the ratio" + (" or use first='next'" if kind == "mgtc" else "")
    )


def _motion_options(kind: str, motion: str, compensate_camera: str) -> dict:
  """The checked `motion` / `compensate_camera` options of a compressor."""
  check_choice(kind, "motion", motion, SOURCES)
  check_choice(kind, "compensate_camera", compensate_camera, COMPENSATIONS)
  if compensate_camera and motion != "codec":
    raise ValueError(
      f"masking kind {kind!r}: compensate_camera={compensate_camera!r} applies to the codec "
      "motion field; set motion='codec' (or compensate_camera='')"
    )
  return {"motion": motion, "compensate_camera": compensate_camera}


def build_mgtc(
  grid: Grid,
  *,
  ratio: float,
  metric: str = "l1",
  sub_blocks: int = 1,
  first: str = "keep",
  motion: str = "pixels",
  compensate_camera: str = "",
) -> Masker:
  """MGTC compressor: drops the `ratio` lowest pixel-change (or codec-motion) tokens of each clip."""
  ratio = check_fraction("ratio", ratio)
  if metric not in METRICS:
    raise ValueError(f"masking kind 'mgtc': metric must be one of {METRICS}, got {metric!r}")
  if first not in FIRST:
    raise ValueError(f"masking kind 'mgtc': first must be one of {FIRST}, got {first!r}")
  if int(sub_blocks) != sub_blocks or sub_blocks < 1:
    raise ValueError(f"masking kind 'mgtc': sub_blocks must be an integer >= 1, got {sub_blocks}")
  source = _motion_options("mgtc", motion, compensate_camera)
  num_keep = compressed_count(grid, ratio)
  _check_count("mgtc", grid, ratio, num_keep, first == "keep")
  fn = functools.partial(
    _mgtc,
    grid=grid,
    num_keep=num_keep,
    metric=metric,
    sub_blocks=int(sub_blocks),
    first=first,
    source=motion,
    compensate=compensate_camera,
  )
  params = {"ratio": ratio, "metric": metric, "sub_blocks": int(sub_blocks), "first": first}
  params.update(source)
  return Masker("mgtc", grid, num_keep, 0, fn, params, needs_motion=motion == "codec")


def build_everest(
  grid: Grid, *, ratio: float, motion: str = "pixels", compensate_camera: str = ""
) -> Masker:
  """EVEREST compressor: drops the `ratio` lowest embedding-change (or codec-motion) tokens
  (mcm_ratio, 0.4)."""
  ratio = check_fraction("ratio", ratio)
  source = _motion_options("everest", motion, compensate_camera)
  num_keep = compressed_count(grid, ratio)
  _check_count("everest", grid, ratio, num_keep, False)
  fn = functools.partial(
    _everest, grid=grid, num_keep=num_keep, source=motion, compensate=compensate_camera
  )
  params = {"ratio": ratio, **source}
  return Masker("everest", grid, num_keep, 0, fn, params, needs_motion=motion == "codec")


def build_rlt(
  grid: Grid,
  *,
  ratio: float,
  form: str = "topk",
  threshold: float = 0.1,
  motion: str = "pixels",
  compensate_camera: str = "",
) -> Masker:
  """RLT compressor (module docstring): `form="topk"` keeps `int((1 − ratio)·N)` tokens by RLT's
  score; `form="threshold"` keeps the non-static ones (score > `threshold`), at most that many,
  padded to it (`variable_length`; `ratio=0` sets no cap)."""
  ratio = check_fraction("ratio", ratio)
  check_choice("rlt", "form", form, RLT_FORMS)
  if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or threshold < 0:
    raise ValueError(f"masking kind 'rlt': threshold must be a number >= 0, got {threshold!r}")
  source = _motion_options("rlt", motion, compensate_camera)
  num_keep = compressed_count(grid, ratio)
  _check_count("rlt", grid, ratio, num_keep, True, allow_all=form == "threshold")
  fn = functools.partial(
    _rlt,
    grid=grid,
    num_keep=num_keep,
    form=form,
    threshold=float(threshold),
    source=motion,
    compensate=compensate_camera,
  )
  params = {"ratio": ratio, "form": form, "threshold": float(threshold), **source}
  return Masker(
    "rlt",
    grid,
    num_keep,
    0,
    fn,
    params,
    needs_motion=motion == "codec",
    variable_length=form == "threshold",
  )


def _random_drop(key, video, tokens, motion=None, motion_valid=None, *, grid, num_keep):
  del motion, motion_valid
  b = batch_size(video, tokens, math.prod(grid))
  return compress(jax.random.uniform(key, (b, math.prod(grid))), num_keep)


def build_random_drop(grid: Grid, *, ratio: float) -> Masker:
  """Random compressor: keeps `int((1 − ratio)·N)` tokens drawn uniformly per clip (the
  motion-free baseline of the compressors at the same K; the key draws them)."""
  ratio = check_fraction("ratio", ratio)
  num_keep = compressed_count(grid, ratio)
  if not 1 <= num_keep < math.prod(grid):
    raise ValueError(
      f"masking kind 'random_drop': ratio={ratio} keeps {num_keep} of {math.prod(grid)} "
      "tokens; it must keep at least 1 and drop at least 1"
    )
  fn = functools.partial(_random_drop, grid=grid, num_keep=num_keep)
  return Masker("random_drop", grid, num_keep, 0, fn, {"ratio": ratio})


# ----------------------------------------------------------------------------- MGM


def slice_centres(key: jax.Array, magnitude: jax.Array) -> jax.Array:
  """int32 [B, T']: each slice's mask centre (token index within the slice) from the token
  motion magnitudes [B, T', h·w] (module docstring, step 2)."""
  b, t, hw = magnitude.shape
  peak = jnp.argmax(magnitude, axis=-1).astype(jnp.int32)  # first maximum: the lower index
  moving = magnitude.max(axis=-1) > 0  # [B, T']
  slices = jnp.arange(t, dtype=jnp.int32)[None]
  last = jax.lax.cummax(jnp.where(moving, slices, -1), axis=1)  # last moving slice <= t
  first = jnp.argmax(moving, axis=1).astype(jnp.int32)  # first moving slice (0 if none)
  source = jnp.where(last >= 0, last, first[:, None])
  centres = jnp.take_along_axis(peak, source, axis=1)
  anywhere = jax.random.randint(key, (b, 1), 0, hw, jnp.int32)
  return jnp.where(moving.any(axis=1, keepdims=True), centres, anywhere)


def mgm_priority(key: jax.Array, centres: jax.Array, grid: Grid, sigma: float) -> jax.Array:
  """float32 [B, T', h·w]: log-Gaussian around each slice's centre plus Gumbel noise; the
  highest `m` of a slice are a draw of `m` tokens without replacement ∝ the Gaussian."""
  t, h, w = grid
  rows = jnp.arange(h * w, dtype=jnp.int32) // w
  cols = jnp.arange(h * w, dtype=jnp.int32) % w
  ci, cj = (centres // w)[..., None], (centres % w)[..., None]
  d2 = jnp.square(rows - ci) + jnp.square(cols - cj)  # [B, T', h·w]
  s = sigma * max(h, w)
  noise = jax.random.gumbel(key, d2.shape, jnp.float32)
  return -d2.astype(jnp.float32) / (2.0 * s * s) + noise


def mgm_mask(
  key: jax.Array,
  video: jax.Array | None = None,
  tokens: jax.Array | None = None,
  motion: jax.Array | None = None,
  motion_valid: jax.Array | None = None,
  *,
  grid: Grid,
  ratio: float,
  sigma: float = 0.25,
  compensate_camera: str = "median",
) -> MaskOut:
  """MGM masking (module docstring, "MGM"); `video` / `tokens` only have to agree with `motion`."""
  if motion is None:
    raise ValueError("masking kind 'mgm' reads the codec motion field: pass motion=")
  b = check_motion("mgm", motion, motion_valid, grid, video=video, tokens=tokens)
  t, h, w = grid
  hw, n = h * w, math.prod(grid)
  num_visible = hw - int(ratio * hw)
  centre_key, draw_key = jax.random.split(key)
  magnitude = codec_scores(motion, motion_valid, grid, compensate_camera).reshape(b, t, hw)
  prio = mgm_priority(draw_key, slice_centres(centre_key, magnitude), grid, sigma)
  keep, rest = split_by_scores(-prio.reshape(b * t, hw), num_visible)  # lowest priority visible
  offsets = (jnp.arange(t, dtype=jnp.int32) * hw)[None, :, None]
  keep = (keep.reshape(b, t, num_visible) + offsets).reshape(b, -1)
  rest = (rest.reshape(b, t, hw - num_visible) + offsets).reshape(b, -1)
  return MaskOut(keep, rest, mask_from_ids(keep, n))


def build_mgm(
  grid: Grid, *, ratio: float, sigma: float = 0.25, compensate_camera: str = "median"
) -> Masker:
  """MGM pre-training masker: `int(ratio·h·w)` tokens masked per slice around its moving region
  (module docstring, "MGM"); needs the codec motion field."""
  ratio = check_fraction("ratio", ratio)
  if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or sigma <= 0:
    raise ValueError(f"masking kind 'mgm': sigma must be a number > 0, got {sigma!r}")
  check_choice("mgm", "compensate_camera", compensate_camera, COMPENSATIONS)
  num_keep, num_target = tube_counts(grid, ratio)
  check_split("mgm", ratio, grid[1] * grid[2], num_target // grid[0], "positions per slice")
  fn = functools.partial(
    mgm_mask, grid=grid, ratio=ratio, sigma=float(sigma), compensate_camera=compensate_camera
  )
  params = {"ratio": ratio, "sigma": float(sigma), "compensate_camera": compensate_camera}
  return Masker("mgm", grid, num_keep, num_target, fn, params, needs_motion=True)
