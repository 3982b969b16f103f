"""Weight-free optical flow: coarse-to-fine pyramidal Lucas–Kanade with warping (jit-able).

Each sample is processed alone (`jax.vmap`), so the result never depends on the batch.
1. Grey = mean over channels, standardised per sample over both frames (any intensity scale).
2. Pyramid: level l + 1 = level l blurred by the binomial [1 4 6 4 1] / 16 and subsampled by 2
   (pixel i of level l + 1 sits on pixel 2i of level l); levels stop before a side gets shorter
   than `min_size`. Each level is then smoothed by a Gaussian of σ = `presmooth`.
3. From the coarsest level down: the flow of the level above is upsampled (bilinear, ×2), then
   `iterations` Gauss–Newton steps: warp frame b by the current flow (bicubic, edge-clamped:
   bilinear blurs sub-pixel shifts and biases the estimate), I_t = b_w - a, gradients (central
   differences) averaged over a and b_w, Gaussian-weighted (σ = `sigma` px) sums of the
   structure tensor and of I_x I_t, I_y I_t, solve the 2×2 system (`reg` on the diagonal:
   flat regions keep their flow), clamp the step to ±1 px. Pixels whose sample in b falls
   outside the image are left out of the sums. A separable 3×3 median of the flow closes each
   level (`median=True`).
Each level is refined at its own size (the levels are unrolled at trace time), so a pair costs
≈ 4/3 × iterations full-resolution passes whatever `levels` is. See docs/flow.md.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mgvm.flow.warp import sample

_BINOMIAL = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)


def _filter(x: jax.Array, taps: tuple[float, ...], axis: int) -> jax.Array:
  """1-D correlation of maps [..., H, W] along `axis` (-2 or -1), edge padded, same size."""
  r = len(taps) // 2
  lead, (h, w) = x.shape[:-2], x.shape[-2:]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (r, r)
  p = jnp.pad(x, pad, mode="edge")
  p = p.reshape(-1, 1, *p.shape[-2:])
  kernel = jnp.asarray(taps, jnp.float32).reshape((1, 1, -1, 1) if axis == -2 else (1, 1, 1, -1))
  out = jax.lax.conv_general_dilated(
    p, kernel, (1, 1), "VALID", precision=jax.lax.Precision.HIGHEST
  )
  return out.reshape(*lead, h, w)


def _smooth(x: jax.Array, taps: tuple[float, ...]) -> jax.Array:
  return _filter(_filter(x, taps, -2), taps, -1)


def _gaussian(sigma: float) -> tuple[float, ...]:
  r = max(1, int(math.ceil(2.5 * sigma)))
  w = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-r, r + 1)]
  return tuple(v / sum(w) for v in w)


def _gradients(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Central differences (d/dx, d/dy) of [H, W], one-sided at the border."""
  p = jnp.pad(x, 1, mode="edge")
  return 0.5 * (p[1:-1, 2:] - p[1:-1, :-2]), 0.5 * (p[2:, 1:-1] - p[:-2, 1:-1])


def _median3(x: jax.Array) -> jax.Array:
  """Separable 3×3 median of [H, W] (median of 3 along rows, then along columns; edge padded)."""

  def med(p, axis):
    n = p.shape[axis] - 2
    a, b, c = (jax.lax.slice_in_dim(p, i, i + n, axis=axis) for i in range(3))
    return jnp.maximum(jnp.minimum(a, b), jnp.minimum(jnp.maximum(a, b), c))

  p = jnp.pad(x, 1, mode="edge")
  return med(med(p, 1), 0)


def _grid(h: int, w: int) -> tuple[jax.Array, jax.Array]:
  ys, xs = jnp.meshgrid(
    jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
  )
  return xs, ys


def _cubic_weights(t: jax.Array) -> tuple[jax.Array, ...]:
  """Keys (a = -0.5, Catmull–Rom) weights of the taps at offsets -1, 0, 1, 2 for fraction t."""
  t2, t3 = t * t, t * t * t
  return (
    -0.5 * t3 + t2 - 0.5 * t,
    1.5 * t3 - 2.5 * t2 + 1,
    -1.5 * t3 + 2 * t2 + 0.5 * t,
    0.5 * t3 - 0.5 * t2,
  )


def _sample_cubic(image: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
  """Bicubic [H, W] at (x, y), both clamped to the image (edge extension).

  The 4 × 4 taps are one gather (16 separate ones compile ~30 % slower, run no faster)."""
  h, w = image.shape
  x, y = jnp.clip(x, 0, w - 1), jnp.clip(y, 0, h - 1)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  wx, wy = jnp.stack(_cubic_weights(x - x0)), jnp.stack(_cubic_weights(y - y0))
  offsets = jnp.arange(-1, 3, dtype=jnp.int32)[:, None, None]
  cols = jnp.clip(x0.astype(jnp.int32) + offsets, 0, w - 1)
  rows = jnp.clip(y0.astype(jnp.int32) + offsets, 0, h - 1)
  taps = image[rows[:, None], cols[None, :]]  # [4 row taps, 4 column taps, H, W]
  # summed in a fixed order (a reduction's order may change with the batch's layout)
  return sum(wy[j] * sum(wx[i] * taps[j, i] for i in range(4)) for j in range(4))


def _refine(a, b, flow, *, iterations: int, window: tuple[float, ...], reg: float):
  """`iterations` LK steps on one level: grey a, b [h, w], flow [h, w, 2]."""
  h, w = a.shape
  xs, ys = _grid(h, w)
  ax, ay = _gradients(a)

  def step(_, flow):
    x, y = xs + flow[..., 0], ys + flow[..., 1]
    inside = ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).astype(jnp.float32)
    bw = _sample_cubic(b, x, y)
    bx, by = _gradients(bw)
    ix, iy = 0.5 * (ax + bx) * inside, 0.5 * (ay + by) * inside
    it = (bw - a) * inside
    sxx, sxy, syy, sxt, syt = _smooth(
      jnp.stack([ix * ix, ix * iy, iy * iy, ix * it, iy * it]), window
    )
    sxx, syy = sxx + reg, syy + reg
    det = sxx * syy - sxy * sxy
    du = -(syy * sxt - sxy * syt) / det
    dv = -(sxx * syt - sxy * sxt) / det
    return flow + jnp.clip(jnp.stack([du, dv], -1), -1.0, 1.0)

  return jax.lax.fori_loop(0, iterations, step, flow)


def num_levels(height: int, width: int, levels: int, min_size: int = 8) -> int:
  """Levels actually used: at most `levels`, none with a side shorter than `min_size`."""
  n, h, w = 1, height, width
  while n < levels and min(-(-h // 2), -(-w // 2)) >= min_size:
    h, w, n = -(-h // 2), -(-w // 2), n + 1
  return n


def _grey(frame: jax.Array) -> jax.Array:
  return jnp.mean(frame.astype(jnp.float32), axis=-1)


def flow_one(
  a: jax.Array,
  b: jax.Array,
  *,
  levels: int,
  iterations: int,
  sigma: float,
  reg: float,
  median: bool,
  presmooth: float = 1.0,
  min_size: int = 8,
) -> jax.Array:
  """Flow [H, W, 2] from grey a to grey b [H, W] (one sample).

  The levels are unrolled (a Python loop over static sizes), each refined at its own size: a
  coarse level costs a quarter of the one below it.
  """
  height, width = a.shape
  both = jnp.stack([a, b])
  both = (both - both.mean()) * jax.lax.rsqrt(both.var() + 1e-12)
  pyramid = [both]
  for _ in range(num_levels(height, width, levels, min_size) - 1):
    pyramid.append(_smooth(pyramid[-1], _BINOMIAL)[:, ::2, ::2])
  if presmooth > 0:
    pyramid = [_smooth(p, _gaussian(presmooth)) for p in pyramid]
  window = _gaussian(sigma)
  flow = jnp.zeros((1, 1, 2), jnp.float32)  # above the coarsest level: no motion
  for frames in pyramid[::-1]:
    xs, ys = _grid(*frames.shape[1:])
    flow = 2.0 * sample(flow, 0.5 * xs, 0.5 * ys, outside="edge")
    flow = _refine(frames[0], frames[1], flow, iterations=iterations, window=window, reg=reg)
    if median:
      flow = jnp.stack([_median3(flow[..., 0]), _median3(flow[..., 1])], -1)
  return flow


def estimate(
  frame_a: jax.Array,
  frame_b: jax.Array,
  *,
  levels: int = 4,
  iterations: int = 5,
  sigma: float = 1.5,
  reg: float = 1e-2,
  median: bool = True,
  presmooth: float = 1.0,
  scale: float = 1.0,
) -> jax.Array:
  """float32 [B, H, W, 2] (dx, dy) px with frame_b(x + flow(x)) ≈ frame_a(x).

  Frames are float [B, H, W, C] at any intensity scale (grey = channel mean). `scale` < 1
  estimates at round(scale · H) × round(scale · W) and upsamples (bilinear, vectors / scale).
  """
  if frame_a.shape != frame_b.shape or frame_a.ndim != 4:
    raise ValueError(
      f"need two frames [B, H, W, C] of one shape, got {frame_a.shape} and {frame_b.shape}"
    )
  if not 0 < scale <= 1:
    raise ValueError(f"scale must be in (0, 1], got {scale}")
  if levels < 1 or iterations < 0 or sigma <= 0 or reg <= 0:
    raise ValueError(
      f"need levels >= 1, iterations >= 0, sigma > 0, reg > 0; got {levels}, "
      f"{iterations}, {sigma}, {reg}"
    )
  bsz, height, width, _ = frame_a.shape
  a, b = _grey(frame_a), _grey(frame_b)
  h, w = height, width
  if scale != 1:
    h, w = max(1, round(scale * height)), max(1, round(scale * width))
    a = jax.image.resize(a, (bsz, h, w), "linear")
    b = jax.image.resize(b, (bsz, h, w), "linear")
  one = lambda fa, fb: flow_one(
    fa,
    fb,
    levels=levels,
    iterations=iterations,
    sigma=sigma,
    reg=reg,
    median=median,
    presmooth=presmooth,
  )
  flow = jax.vmap(one)(a, b)
  if (h, w) != (height, width):
    flow = jax.image.resize(flow, (bsz, height, width, 2), "linear")
    flow = flow * jnp.asarray([width / w, height / h], jnp.float32)
  return flow
