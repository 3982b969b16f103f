"""MGMAE motion-guided masking: an initial map on a base frame, warped along optical flow
(docs/algorithms.md §2.1–2.2, 2.6–2.7).

Per clip [B, T, H, W, 3] with token grid `(T', h, w)` (tubelet `pt × ph × pw`):
1. an initial map at pixel resolution on the base frame (`init`): `mix_gauss` (Gaussian bumps
   at the pixel centres of `h·w − int(ratio·h·w)` random tokens, combined by max or sum and
   divided by the map's max), `token_rand` (those tokens' pixels 1, the rest 1e-8) or
   `pixel_rand` (`H·W − int(ratio·H·W)` random pixels 1, the rest 1e-8);
2. the base frame (`base_frame`): `middle` (T // 2), `first` (0), `random` (uniform, one draw
   per sample) or `random_batch` (uniform, one draw shared by every sample of the call: the
   official code's `random`, which draws once per batch);
3. chained backward warping away from the base in both directions: after it
   `map_{k+1}(x) = map_k(x + F_{k+1→k}(x))`, before it `map_{k−1}(x) = map_k(x + F_{k−1→k}(x))`,
   where `F_{a→b} = flow_fn(frame_a, frame_b)` satisfies `frame_b(x + F(x)) ≈ frame_a(x)`;
   bilinear sampling, zeros outside the image; `warp_scale="official"` shrinks each flow by
   `((W − 1)/W, (H − 1)/H)` as the official warp does (below). `reproduce_warp_bug=True`
   uses the official code's `flow_fn(frame_{k}, frame_{k−1})` before the base (§2.6): the
   mask then moves the wrong way there. Hole filling `consist`: after each warp, pixels that
   are exactly 0 take the base frame's initial value (`none`: no filling);
4. each token's score = the sum of the maps over its tubelet; visible = the
   `k = int(h·w·(1 − ratio))` highest scores of each slice (`topk_on_all`: the `T'·k` highest of
   the clip), ties to the lower index; `ids_target` = every masked token.

The T − 1 adjacent-pair flows go through one batched `flow_fn` call ((T − 1)·B pairs): pair
`(k, k+1)` is estimated in the direction the sample needs (`frame_{k+1} → frame_k` at or after
the base, `frame_k → frame_{k+1}` before it), so a random base frame costs no extra flow.
The default `flow_fn` is `mgvm.flow.estimate` (`flow="lk"`: the in-graph pyramidal
Lucas–Kanade), imported when the masker first runs; it gets the frames as the masker gets them
(float32). `flow="raft_small"` / `"raft_large"` run RAFT instead (`mgvm.flow.raft.RaftFlow`, as
MGMAE does: the ImageNet-normalised frames mapped to [−1, 1], `flow_iterations` updates, 6 by
default) with the converted checkpoint `flow_weights` (docs/flow.md); without one the builder
fails, since nothing is downloaded and random weights give meaningless flow.

`flow="codec"` (docs/algorithms.md §2.8) takes the pair flows from the codec motion field
instead (`codec_pair_flows`; the masker then needs `motion` [B, T, h, w, 2], the displacement of
each block's content from frame k − 1 to frame k, so frame_k(p) = frame_{k−1}(p − d_k(p))),
each block's vector repeated over its pixels: at or after the base `F_{k+1→k} = −d_{k+1}` (exact for a block-constant field:
both live on frame k+1's grid), before it `F_{k→k+1}(x) = d_{k+1}(x + F(x)) ≈ d_{k+1}(x)`, the
field read at the pixel itself rather than where it lands (exact where the field is constant
over the displacement). `reproduce_warp_bug` uses `−d_{k+1}` on both sides, as the official
code's flow direction. No camera compensation: the map follows the content, camera included.

`warp_scale`: the official warp calls `grid_sample(align_corners=True)` with the flow divided by
W/2 and H/2, while `align_corners=True` maps ±1 to the outer pixel centres, (W − 1)/2 px from
the middle: the map moves by `flow·(W − 1)/W` px instead of `flow` (0.4 % short at 224). That
is a normalisation slip, so the default `"exact"` moves by the flow; `"official"` reproduces
the reference's displacement for parity runs.

`random_batch` under data parallelism: the masker runs inside the jitted step on the global
batch, so one draw serves every row of the step on every device and host (and every
micro-batch of an accumulated step). The reference draws per GPU and step from each rank's own
Python `random` (its per-GPU batch, 24 videos × 4 repeats); on one device the two agree. Every
sample's base frame is uniform either way; only the correlation between samples differs.

Composition with a compressor (`compose.PRIORITIES["mgmae"]`): the priority is the token score
above (with the masker's options) and the visible count `T'·k`; compose picks the `T'·k` best
*kept* tokens of the whole clip (a global top-k, like `topk_on_all`), not `k` per slice. The
priority needs the clip: compose calls it as
`priority(key, b, grid, video=video, ratio=ratio, **options)`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

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
from mgvm.masking.motion import check_motion, pixel_field

INITS = ("mix_gauss", "token_rand", "pixel_rand")
GAUSS_MIX = ("max", "sum")
BASE_FRAMES = ("middle", "first", "random", "random_batch")
HOLE_FILLING = ("consist", "none")
WARP_SCALES = ("exact", "official")
RAFT_FLOWS = ("raft_small", "raft_large")
FLOWS = ("lk", "codec", *RAFT_FLOWS)
# The builder's options besides `ratio` (compose passes them through).
OPTIONS = (
  "init",
  "gauss_mix",
  "base_frame",
  "hole_filling",
  "topk_on_all",
  "reproduce_warp_bug",
  "warp_scale",
  "flow",
  "flow_weights",
  "flow_iterations",
)
FLOOR = 1e-8  # token_rand / pixel_rand background: keeps real zeros apart from out-of-frame holes

FlowFn = Callable[[jax.Array, jax.Array], jax.Array]


def default_flow(frame_a: jax.Array, frame_b: jax.Array) -> jax.Array:
  """`mgvm.flow.estimate(frame_a, frame_b)` -> [B, H, W, 2] (dx, dy) pixels, imported lazily."""
  try:
    from mgvm import flow
  except ImportError as e:
    raise ImportError(
      "masking kind 'mgmae' needs an optical-flow estimator: mgvm.flow is not "
      "available; pass flow_fn to mgmae.mgmae_masker / mgmae_mask"
    ) from e
  return flow.estimate(frame_a, frame_b)


def flow_function(flow: str, weights: str = "", iterations: int = 6) -> FlowFn:
  """The estimator `flow` names: `default_flow` for "lk", else `mgvm.flow.raft.flow_function`
  (RAFT with the converted checkpoint `weights`, `iterations` updates; cached per arguments)."""
  if flow == "lk":
    return default_flow
  from mgvm.flow import raft

  return raft.flow_function(flow, weights, iterations)


def check_flow_weights(flow: str, weights: str, iterations: int) -> tuple[str, int]:
  """(`weights`, `iterations`) checked against `flow`: RAFT needs a converted checkpoint of its
  variant, the other flows none."""
  if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
    raise ValueError(
      f"masking kind 'mgmae': flow_iterations must be an int >= 1, got {iterations!r}"
    )
  if flow not in RAFT_FLOWS:
    if weights:
      raise ValueError(
        f"masking kind 'mgmae': flow_weights={weights!r} is for flow='raft_small' or "
        f"'raft_large', not flow={flow!r}"
      )
    return "", iterations
  if not weights:
    raise ValueError(
      f"masking kind 'mgmae': flow={flow!r} needs flow_weights=PATH, a RAFT checkpoint "
      "converted by `python -m mgvm.flow.raft_weights` (docs/flow.md). Nothing is "
      "downloaded, and random weights would give meaningless flow."
    )
  from mgvm.flow import raft, raft_weights

  variant = raft_weights.read_meta(weights)["variant"]
  if variant != flow:
    raise ValueError(f"masking kind 'mgmae': flow_weights={weights!r} holds {variant}, not {flow}")
  raft.flow_function(flow, weights, iterations)  # loaded (and checked) now, once per arguments
  return weights, iterations


# ----------------------------------------------------------------------------- counts


def visible_per_slice(grid: Grid, ratio: float) -> int:
  """k = int(h·w·(1 − ratio)), the reference's float truncation (196 · 0.1 → 19)."""
  return int(grid[1] * grid[2] * (1.0 - ratio))


def mgmae_counts(grid: Grid, ratio: float) -> tuple[int, int]:
  """(visible, masked) on the full grid: T'·k visible, the rest masked (and reconstructed)."""
  visible = grid[0] * visible_per_slice(grid, ratio)
  return visible, math.prod(grid) - visible


def _tubelet(video_shape, grid: Grid) -> tuple[int, int, int]:
  frames, height, width = video_shape[1:4]
  t, h, w = grid
  if frames % t or height % h or width % w:
    raise ValueError(f"video shape {tuple(video_shape)} does not split into the token grid {grid}")
  return frames // t, height // h, width // w


# ----------------------------------------------------------------------------- initial maps


@functools.partial(
  jax.jit, static_argnums=(1, 2, 3), static_argnames=("ratio", "init", "gauss_mix")
)
def initial_map(
  key: jax.Array,
  batch: int,
  size: tuple[int, int],
  grid: Grid,
  *,
  ratio: float = 0.9,
  init: str = "mix_gauss",
  gauss_mix: str = "max",
) -> jax.Array:
  """float32 [B, H, W]: the base frame's initial map at pixel resolution `size` = (H, W)."""
  if init not in INITS:
    raise ValueError(f"mgmae init must be one of {INITS}, got {init!r}")
  height, width = size
  _, h, w = grid
  ph, pw = height // h, width // w
  if init == "pixel_rand":
    num = height * width - int(ratio * height * width)
    ids, _ = split_by_scores(jax.random.normal(key, (batch, height * width)), num)
    on = ~mask_from_ids(ids, height * width)
    return jnp.where(on, 1.0, FLOOR).astype(jnp.float32).reshape(batch, height, width)
  num_vis = h * w - int(ratio * h * w)
  ids, _ = split_by_scores(jax.random.uniform(key, (batch, h * w)), num_vis)  # [B, num_vis]
  if init == "token_rand":
    on = ~mask_from_ids(ids, h * w)  # [B, h·w]
    on = jnp.repeat(jnp.repeat(on.reshape(batch, h, w), ph, axis=1), pw, axis=2)
    return jnp.where(on, 1.0, FLOOR).astype(jnp.float32)
  if gauss_mix not in GAUSS_MIX:
    raise ValueError(f"mgmae gauss_mix must be one of {GAUSS_MIX}, got {gauss_mix!r}")
  mu_y = (ids // w * ph).astype(jnp.float32) + (ph - 1) / 2  # [B, num_vis]
  mu_x = (ids % w * pw).astype(jnp.float32) + (pw - 1) / 2
  ys = jnp.arange(height, dtype=jnp.float32)
  xs = jnp.arange(width, dtype=jnp.float32)
  gy = jnp.square((ys[None, None, :] - mu_y[..., None]) / ph)  # [B, num_vis, H]
  gx = jnp.square((xs[None, None, :] - mu_x[..., None]) / pw)  # [B, num_vis, W]
  bumps = jnp.exp(-gy[..., :, None] - gx[..., None, :])  # [B, num_vis, H, W]
  m = bumps.max(axis=1) if gauss_mix == "max" else bumps.sum(axis=1)
  return m / m.max(axis=(1, 2), keepdims=True)


# ----------------------------------------------------------------------------- warping


@jax.jit
def backward_warp(image: jax.Array, flow: jax.Array) -> jax.Array:
  """[B, H, W]: `image` [B, H, W] sampled bilinearly at `x + flow(x)` (flow [B, H, W, 2] = (dx, dy)
  pixels); corners outside the image count as 0 (grid_sample's zero padding)."""
  b, height, width = image.shape
  sx = jnp.arange(width, dtype=jnp.float32)[None, None, :] + flow[..., 0]
  sy = jnp.arange(height, dtype=jnp.float32)[None, :, None] + flow[..., 1]
  x0, y0 = jnp.floor(sx), jnp.floor(sy)
  fx, fy = sx - x0, sy - y0
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  xi = jnp.stack([x0, x0 + 1, x0, x0 + 1])  # the 4 corners: [4, B, H, W]
  yi = jnp.stack([y0, y0, y0 + 1, y0 + 1])
  wt = jnp.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
  inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
  idx = jnp.clip(yi, 0, height - 1) * width + jnp.clip(xi, 0, width - 1)
  idx = jnp.moveaxis(idx, 0, 1).reshape(b, -1)  # one gather for all corners
  val = jnp.take_along_axis(image.reshape(b, height * width), idx, axis=1)
  val = jnp.moveaxis(val.reshape(b, 4, height, width), 1, 0)
  return jnp.sum(jnp.where(inside, val * wt, 0.0), axis=0)


def base_index(key: jax.Array, batch: int, frames: int, base_frame: str) -> jax.Array:
  """int32 [B]: raw-frame index of each sample's base frame (`random_batch`: one for all)."""
  if base_frame == "middle":
    return jnp.full((batch,), frames // 2, jnp.int32)
  if base_frame == "first":
    return jnp.zeros((batch,), jnp.int32)
  if base_frame == "random":
    return jax.random.randint(key, (batch,), 0, frames, jnp.int32)
  if base_frame == "random_batch":
    return jnp.full((batch,), jax.random.randint(key, (), 0, frames, jnp.int32))
  raise ValueError(f"mgmae base_frame must be one of {BASE_FRAMES}, got {base_frame!r}")


@functools.partial(jax.jit, static_argnums=(2,), static_argnames=("reproduce_warp_bug",))
def pair_flows(
  video: jax.Array, base: jax.Array, flow_fn: FlowFn, *, reproduce_warp_bug: bool = False
) -> jax.Array:
  """float32 [T − 1, B, H, W, 2]: flow of each adjacent pair in the direction its warp needs.

  Pair k (frames k, k+1): `flow_fn(frame_{k+1}, frame_k)` when k ≥ base (warps frame k+1 from
  frame k) or with the bug; else `flow_fn(frame_k, frame_{k+1})` (warps frame k from k+1).
  One `flow_fn` call on the (T − 1)·B pairs stacked along the batch axis.
  """
  b, frames, height, width, c = video.shape
  v = jnp.moveaxis(video.astype(jnp.float32), 1, 0)  # [T, B, H, W, C]
  lo, hi = v[:-1], v[1:]
  k = jnp.arange(frames - 1)[:, None]
  after = jnp.ones((frames - 1, b), bool) if reproduce_warp_bug else k >= base[None, :]
  sel = after[..., None, None, None]
  src, dst = jnp.where(sel, hi, lo), jnp.where(sel, lo, hi)
  n = (frames - 1) * b
  flow = flow_fn(src.reshape(n, height, width, c), dst.reshape(n, height, width, c))
  return jnp.asarray(flow, jnp.float32).reshape(frames - 1, b, height, width, 2)


def codec_pair_flows(
  motion: jax.Array,
  base: jax.Array,
  size: tuple[int, int],
  *,
  reproduce_warp_bug: bool = False,
) -> jax.Array:
  """float32 [T − 1, B, H, W, 2]: `pair_flows` from the codec motion field `motion`
  [B, T, h, w, 2] (module docstring): pair k is `−d_{k+1}` at or after `base` [B] (or with the
  bug), `+d_{k+1}` before it, each block's vector over its pixels (`size` = (H, W))."""
  b, frames = motion.shape[:2]
  d = pixel_field(jnp.moveaxis(jnp.asarray(motion, jnp.float32)[:, 1:], 1, 0), size)
  k = jnp.arange(frames - 1)[:, None]
  after = jnp.ones((frames - 1, b), bool) if reproduce_warp_bug else k >= base[None, :]
  return jnp.where(after[..., None, None, None], -d, d)


def official_displacement(flow: jax.Array) -> jax.Array:
  """`flow` [..., H, W, 2] (dx, dy px) times ((W − 1)/W, (H − 1)/H): the displacement of
  `grid_sample(align_corners=True)` given the flow divided by (W/2, H/2), the official warp."""
  height, width = flow.shape[-3:-1]
  return flow * jnp.asarray([(width - 1) / width, (height - 1) / height], flow.dtype)


@functools.partial(jax.jit, static_argnames=("hole_filling", "warp_scale"))
def propagate(
  init_map: jax.Array,
  flows: jax.Array,
  base: jax.Array,
  *,
  hole_filling: str = "consist",
  warp_scale: str = "exact",
) -> jax.Array:
  """float32 [B, T, H, W]: `init_map` [B, H, W] on frame `base` [B], chained outward along
  `flows` [T − 1, B, H, W, 2] (as `pair_flows`); one scan warps both directions at once.
  `warp_scale="official"` warps by `official_displacement(flow)` instead of the flow."""
  if hole_filling not in HOLE_FILLING:
    raise ValueError(f"mgmae hole_filling must be one of {HOLE_FILLING}, got {hole_filling!r}")
  if warp_scale not in WARP_SCALES:
    raise ValueError(f"mgmae warp_scale must be one of {WARP_SCALES}, got {warp_scale!r}")
  if warp_scale == "official":
    flows = official_displacement(flows)
  frames = flows.shape[0] + 1
  at = lambda cond: cond[:, None, None]  # [B] -> broadcast over H, W
  fill = jnp.concatenate([init_map, init_map])

  def step(carry, xs):  # frame k + 1 from frame k (after the base), frame j from j + 1 (before)
    k, flow_k, flow_j = xs
    j = frames - 2 - k
    out = backward_warp(jnp.concatenate(carry), jnp.concatenate([flow_k, flow_j]))
    if hole_filling == "consist":
      out = jnp.where(out == 0, fill, out)
    after, before = jnp.split(out, 2)
    after = jnp.where(at(k + 1 <= base), init_map, after)
    before = jnp.where(at(j >= base), init_map, before)
    return (after, before), (after, before)

  ks = jnp.arange(frames - 1)
  _, (after, before) = jax.lax.scan(step, (init_map, init_map), (ks, flows, flows[::-1]))
  after = jnp.concatenate([init_map[None], after])  # frame k valid for k >= base
  before = jnp.concatenate([before[::-1], init_map[None]])  # frame k valid for k <= base
  t = jnp.arange(frames)[:, None, None, None]
  return jnp.moveaxis(jnp.where(t >= base[None, :, None, None], after, before), 0, 1)


# ----------------------------------------------------------------------------- mask volume


@functools.partial(
  jax.jit,
  static_argnames=(
    "grid",
    "ratio",
    "init",
    "gauss_mix",
    "base_frame",
    "hole_filling",
    "reproduce_warp_bug",
    "warp_scale",
    "flow_fn",
    "flow",
    "flow_weights",
    "flow_iterations",
  ),
)
def mask_volume(
  key: jax.Array,
  video: jax.Array,
  motion: jax.Array | None = None,
  *,
  grid: Grid,
  ratio: float = 0.9,
  init: str = "mix_gauss",
  gauss_mix: str = "max",
  base_frame: str = "middle",
  hole_filling: str = "consist",
  reproduce_warp_bug: bool = False,
  warp_scale: str = "exact",
  flow_fn: FlowFn | None = None,
  flow: str = "lk",
  flow_weights: str = "",
  flow_iterations: int = 6,
) -> jax.Array:
  """float32 [B, T, H, W]: the per-frame warped maps of `video` [B, T, H, W, C] (visualisation).

  The initial map is `initial_map(key, ...)` whatever the base frame; a random base frame is
  drawn from `fold_in(key, 1)`. `flow="codec"` warps along `motion` [B, T, h, w, 2]
  (`codec_pair_flows`) instead of `flow_fn`; without `flow_fn`, "lk" / "raft_*" take
  `flow_function(flow, flow_weights, flow_iterations)`."""
  b, frames, height, width = video.shape[:4]
  _tubelet(video.shape, grid)
  base_key = jax.random.fold_in(key, 1) if base_frame.startswith("random") else key
  base = base_index(base_key, b, frames, base_frame)
  init_map = initial_map(key, b, (height, width), grid, ratio=ratio, init=init, gauss_mix=gauss_mix)
  if frames == 1:
    return init_map[:, None]
  if flow == "codec":
    if motion is None:
      raise ValueError("mgmae flow='codec' warps along the codec motion field: pass motion=")
    check_motion("mgmae", motion, None, grid, video=video, same_grid=False)
    flows = codec_pair_flows(motion, base, (height, width), reproduce_warp_bug=reproduce_warp_bug)
  elif flow in FLOWS:
    fn = flow_fn or flow_function(flow, flow_weights, flow_iterations)
    flows = pair_flows(video, base, fn, reproduce_warp_bug=reproduce_warp_bug)
  else:
    raise ValueError(f"mgmae flow must be one of {FLOWS}, got {flow!r}")
  return propagate(init_map, flows, base, hole_filling=hole_filling, warp_scale=warp_scale)


def token_scores(volume: jax.Array, grid: Grid) -> jax.Array:
  """float32 [B, N]: the maps `volume` [B, T, H, W] summed over each tubelet."""
  b = volume.shape[0]
  t, h, w = grid
  pt, ph, pw = _tubelet(volume.shape + (1,), grid)
  v = volume.reshape(b, t, pt, h, ph, w, pw)
  return v.sum(axis=(2, 4, 6)).reshape(b, t * h * w)


def select(scores: jax.Array, grid: Grid, ratio: float, *, topk_on_all: bool = False) -> MaskOut:
  """Visible = the k = int(h·w·(1 − ratio)) best of each slice (or the T'·k best overall)."""
  b = scores.shape[0]
  t, h, w = grid
  n, k = t * h * w, visible_per_slice(grid, ratio)
  if topk_on_all:
    keep, rest = split_by_scores(scores, t * k)
  else:
    keep, rest = split_by_scores(scores.reshape(b * t, h * w), k)
    offsets = (jnp.arange(t, dtype=jnp.int32) * (h * w))[None, :, None]
    keep = (keep.reshape(b, t, k) + offsets).reshape(b, t * k)  # slices in order: ascending
    rest = (rest.reshape(b, t, h * w - k) + offsets).reshape(b, -1)
  return MaskOut(keep, rest, mask_from_ids(keep, n))


def mgmae_mask(
  key: jax.Array,
  video: jax.Array | None = None,
  tokens: jax.Array | None = None,
  motion: jax.Array | None = None,
  motion_valid: jax.Array | None = None,
  *,
  grid: Grid,
  ratio: float = 0.9,
  init: str = "mix_gauss",
  gauss_mix: str = "max",
  base_frame: str = "middle",
  hole_filling: str = "consist",
  topk_on_all: bool = False,
  reproduce_warp_bug: bool = False,
  warp_scale: str = "exact",
  flow: str = "lk",
  flow_fn: FlowFn | None = None,
  flow_weights: str = "",
  flow_iterations: int = 6,
) -> MaskOut:
  """MGMAE masking of `video` [B, T, H, W, C] (see the module docstring); `flow="codec"`
  warps along `motion` (`motion_valid` is not used)."""
  del motion_valid
  if video is None:
    raise ValueError(
      "masking kind 'mgmae' warps a map along the optical flow of the clip: call "
      "masker(key, video, tokens) with video [B, T, H, W, 3]"
    )
  batch_size(video, tokens, math.prod(grid))
  volume = mask_volume(
    key,
    video,
    motion,
    grid=grid,
    ratio=ratio,
    init=init,
    gauss_mix=gauss_mix,
    base_frame=base_frame,
    hole_filling=hole_filling,
    reproduce_warp_bug=reproduce_warp_bug,
    warp_scale=warp_scale,
    flow_fn=flow_fn,
    flow=flow,
    flow_weights=flow_weights,
    flow_iterations=flow_iterations,
  )
  return select(
    jax.lax.stop_gradient(token_scores(volume, grid)), grid, ratio, topk_on_all=topk_on_all
  )


# ----------------------------------------------------------------------------- builders


def _choice(name: str, value, options) -> str:
  if value not in options:
    raise ValueError(f"masking kind 'mgmae': {name} must be one of {options}, got {value!r}")
  return value


def check_options(
  *,
  init: str = "mix_gauss",
  gauss_mix: str = "max",
  base_frame: str = "middle",
  hole_filling: str = "consist",
  topk_on_all: bool = False,
  reproduce_warp_bug: bool = False,
  warp_scale: str = "exact",
  flow: str = "lk",
  flow_weights: str = "",
  flow_iterations: int = 6,
) -> dict:
  """The options besides `ratio`, checked (a bad value names its key), at their defaults."""
  flow = _choice("flow", flow, FLOWS)
  flow_weights, flow_iterations = check_flow_weights(flow, flow_weights, flow_iterations)
  return {
    "init": _choice("init", init, INITS),
    "gauss_mix": _choice("gauss_mix", gauss_mix, GAUSS_MIX),
    "base_frame": _choice("base_frame", base_frame, BASE_FRAMES),
    "hole_filling": _choice("hole_filling", hole_filling, HOLE_FILLING),
    "topk_on_all": bool(topk_on_all),
    "reproduce_warp_bug": bool(reproduce_warp_bug),
    "warp_scale": _choice("warp_scale", warp_scale, WARP_SCALES),
    "flow": flow,
    "flow_weights": flow_weights,
    "flow_iterations": flow_iterations,
  }


def mgmae_masker(
  grid: Grid, flow_fn: FlowFn | None = None, *, ratio: float = 0.9, **options
) -> Masker:
  """`build_mgmae` with an injectable `flow_fn(frame_a, frame_b) -> [B, H, W, 2]` (None: default);
  `options` are `check_options`' (the defaults where absent)."""
  ratio = check_fraction("ratio", ratio)
  params = {"ratio": ratio, **check_options(**options)}
  hw, k = grid[1] * grid[2], visible_per_slice(grid, ratio)
  if not 1 <= k < hw:
    raise ValueError(
      f"masking kind 'mgmae': ratio={ratio} keeps int({hw} * (1 - {ratio})) = {k} "
      f"of the {hw} tokens per slice visible; it must keep at least 1 and mask "
      "at least 1"
    )
  num_keep, num_target = mgmae_counts(grid, ratio)
  fn = functools.partial(mgmae_mask, grid=grid, flow_fn=flow_fn, **params)
  return Masker(
    "mgmae", grid, num_keep, num_target, fn, params, needs_motion=params["flow"] == "codec"
  )


def build_mgmae(
  grid: Grid,
  *,
  ratio: float = 0.9,
  init: str = "mix_gauss",
  gauss_mix: str = "max",
  base_frame: str = "middle",
  hole_filling: str = "consist",
  topk_on_all: bool = False,
  reproduce_warp_bug: bool = False,
  warp_scale: str = "exact",
  flow: str = "lk",
  flow_weights: str = "",
  flow_iterations: int = 6,
) -> Masker:
  """MGMAE motion-guided masking with the default flow estimator (`mgvm.flow.estimate`), RAFT
  (`flow="raft_small"` / `"raft_large"` with the converted checkpoint `flow_weights`,
  `flow_iterations` updates) or (`flow="codec"`) along the codec motion field.

  Parity switches (module docstring): `base_frame="random_batch"` draws one base frame per
  call as the official `random`; `warp_scale="official"` reproduces the official warp's
  `(W − 1)/W` displacement (default "exact": that factor is a normalisation slip);
  `reproduce_warp_bug=True` the official direction before the base (§2.6).
  """
  return mgmae_masker(
    grid,
    None,
    ratio=ratio,
    init=init,
    gauss_mix=gauss_mix,
    base_frame=base_frame,
    hole_filling=hole_filling,
    topk_on_all=topk_on_all,
    reproduce_warp_bug=reproduce_warp_bug,
    warp_scale=warp_scale,
    flow=flow,
    flow_weights=flow_weights,
    flow_iterations=flow_iterations,
  )


def compose_priority(
  key: jax.Array,
  b: int,
  grid: Grid,
  *,
  video: jax.Array | None,
  ratio: float,
  flow_fn: FlowFn | None = None,
  motion: jax.Array | None = None,
  **options,
) -> jax.Array:
  """Composition priority [B, N]: the token scores of `mgmae_mask` with `ratio` and `options`
  (those of `mask_volume`: init, gauss_mix, base_frame, hole_filling, reproduce_warp_bug,
  warp_scale, flow, flow_weights, flow_iterations; default where absent); `motion` for
  `flow="codec"`."""
  if video is None:
    raise ValueError(
      "masking kind 'mgmae' with 'compress' ranks tokens by the warped mask "
      "volume of the clip: its priority needs video=[B, T, H, W, 3]"
    )
  if video.shape[0] != b:
    raise ValueError(f"video batch {video.shape[0]} != {b}")
  volume = mask_volume(key, video, motion, grid=grid, ratio=ratio, flow_fn=flow_fn, **options)
  return token_scores(volume, grid)
