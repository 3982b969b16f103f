"""Backward warping and bilinear sampling on the pixel grid (the op MGMAE propagates masks with).

Convention: pixel (row r, column c) has its centre at the coordinate (x, y) = (c, r); a flow
[..., 2] holds (dx, dy) in pixels. `warp(image, flow)(x) = image(x + flow(x))`: with the flow
from frame a to frame b (`frame_a(x) ≈ frame_b(x + flow(x))`, RAFT's convention),
`warp(frame_b, flow)` ≈ `frame_a`. Sampling is bilinear; taps outside the image count as zero,
so this equals `jax.scipy.ndimage.map_coordinates(order=1, mode="constant", cval=0)` per channel.
It is not PyTorch's `grid_sample(align_corners=True)` with flow / (W/2): that scales the
displacement by (W - 1) / W (docs/algorithms.md §2.1, step 6); MGMAE's `warp_scale="official"`
reproduces it by scaling the flow (`mgvm.masking.mgmae.official_displacement`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sample(image: jax.Array, x: jax.Array, y: jax.Array, *, outside: str = "zero") -> jax.Array:
  """Bilinear `image` [H, W, ...] at pixel coordinates `x`, `y` (same shape, any) → [*x.shape, ...].

  `outside="zero"`: taps outside the image are zero; `"edge"`: coordinates are clamped to the
  image (edge extension).
  """
  if outside not in ("zero", "edge"):
    raise ValueError(f"outside must be 'zero' or 'edge', got {outside!r}")
  h, w = image.shape[:2]
  x = x.astype(jnp.float32)
  y = y.astype(jnp.float32)
  if outside == "edge":
    x = jnp.clip(x, 0, w - 1)
    y = jnp.clip(y, 0, h - 1)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = x - x0, y - y0
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  extra = (None,) * (image.ndim - 2)
  out = 0.0
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      xi, yi = x0 + dx, y0 + dy
      weight = wx * wy
      if outside == "zero":
        weight = jnp.where((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h), weight, 0.0)
      value = image[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
      out = out + weight[(...,) + extra] * value
  return out


def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
  """[B, H, W, C]: `image` sampled at x + flow(x) (bilinear, zero outside; ints give float32).

  `flow` is float [B, H, W, 2] = (dx, dy) px on the output grid.
  """
  if image.ndim != 4 or flow.ndim != 4 or flow.shape[-1] != 2 or image.shape[:3] != flow.shape[:3]:
    raise ValueError(
      f"need image [B, H, W, C] and flow [B, H, W, 2] on the same grid, got "
      f"{image.shape} and {flow.shape}"
    )
  h, w = image.shape[1:3]
  ys, xs = jnp.meshgrid(
    jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
  )

  def one(img, f):
    return sample(img, xs + f[..., 0], ys + f[..., 1], outside="zero")

  dtype = image.dtype if jnp.issubdtype(image.dtype, jnp.floating) else jnp.float32
  return jax.vmap(one)(image.astype(dtype), flow.astype(jnp.float32)).astype(dtype)
