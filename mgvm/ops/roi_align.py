"""RoIAlign (torchvision's compiled kernel, channels-last) and detectron2's multi-level pooler.

Rule per box (torchvision `roi_align_kernel.cpp`; ROIAlignV2 = `aligned=True`):
- roi = box · spatial_scale − (0.5 if aligned else 0); roi width/height = max(·, 1) only when
  not aligned; bin = roi size / output size.
- `sampling_ratio` points per bin per axis at start + p·bin + (i + 0.5)·bin / ratio.
- A point with y < −1, y > H, x < −1 or x > W contributes 0; otherwise y, x ≤ 0 → 0 and a
  point at or past the last row/column reads that row/column; bilinear over the 4 taps.
- Output = sum over the ratio² points / ratio² (outside points count in the divisor).
Static shapes: torchvision's adaptive count (`sampling_ratio <= 0`) is not supported.
Implemented as 4 vectorised gathers from the flattened map; no loop over boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp


def _pair(output_size: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(output_size, int):
    size = (output_size, output_size)
  else:
    size = tuple(int(s) for s in output_size)
  if len(size) != 2 or min(size) < 1:
    raise ValueError(f"output_size must be a positive int or (oh, ow), got {output_size!r}")
  return size


def _check_sampling_ratio(sampling_ratio: int) -> int:
  if int(sampling_ratio) != sampling_ratio or sampling_ratio <= 0:
    raise ValueError(
      f"sampling_ratio must be a positive int (torchvision's adaptive count, "
      f"sampling_ratio <= 0, has no static shape), got {sampling_ratio!r}"
    )
  return int(sampling_ratio)


def _check_boxes(boxes: jax.Array, batch_index: jax.Array) -> None:
  if boxes.ndim != 2 or boxes.shape[-1] != 4:
    raise ValueError(f"boxes must be [K, 4] xyxy, got shape {boxes.shape}")
  if batch_index.shape != boxes.shape[:1]:
    raise ValueError(f"batch_index must be [K] = {boxes.shape[:1]}, got shape {batch_index.shape}")


def _axis_taps(coord: jax.Array, size: jax.Array):
  """Kernel rule on one axis: (low index, high index, low weight, high weight), zero outside."""
  inside = (coord >= -1.0) & (coord <= size)
  c = jnp.maximum(coord, 0.0)
  low = jnp.floor(c).astype(jnp.int32)
  edge = low >= size - 1
  low = jnp.where(edge, size - 1, low)
  high = jnp.where(edge, size - 1, low + 1)
  frac = jnp.where(edge, 0.0, c - low)
  zero = jnp.zeros_like(frac)
  return low, high, jnp.where(inside, 1.0 - frac, zero), jnp.where(inside, frac, zero)


def _div(x: jax.Array, d) -> jax.Array:
  """x / d correctly rounded (d a number), as the kernel's C++ divides.

  XLA rewrites x / broadcast(d) as x · (1 / d); the barrier hides d from that rewrite. (Under
  jit XLA:CPU also fuses a + b · c into one FMA, so coordinates may still differ from the
  kernel by an ulp: outputs then move by about ulp × the local feature slope.)
  """
  return x / jax.lax.optimization_barrier(jnp.broadcast_to(jnp.asarray(d, x.dtype), x.shape))


def _sample_points(start: jax.Array, length: jax.Array, bins: int, ratio: int) -> jax.Array:
  """[K, bins, ratio]: start + p·bin + (i + 0.5)·bin / ratio with bin = length / bins."""
  k = length.shape[0]
  bin_size = _div(length, bins)[:, None, None]
  p = jnp.arange(bins, dtype=jnp.float32)[None, :, None]
  i = jnp.arange(ratio, dtype=jnp.float32)[None, None, :]
  step = _div(jnp.broadcast_to((i + 0.5) * bin_size, (k, 1, ratio)), ratio)
  return start[:, None, None] + p * bin_size + step


def _roi_align_flat(
  flat: jax.Array,
  base: jax.Array,
  height: jax.Array,
  width: jax.Array,
  scale: jax.Array,
  boxes: jax.Array,
  output_size: tuple[int, int],
  ratio: int,
  aligned: bool,
) -> jax.Array:
  """RoIAlign from `flat` [N, C] where box k's map starts at row base[k] with per-box H, W, scale.

  base, height, width, scale: [K]; boxes [K, 4] → float32 [K, oh, ow, C]. Summation order is the
  kernel's (4 taps, then the samples row by row), so float32 results match it to rounding.
  """
  oh, ow = output_size
  boxes = boxes.astype(jnp.float32)
  scale = scale.astype(jnp.float32)
  offset = 0.5 if aligned else 0.0
  x1, y1, x2, y2 = (boxes[:, i] * scale - offset for i in range(4))
  roi_w, roi_h = x2 - x1, y2 - y1
  if not aligned:
    roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
  ys = _sample_points(y1, roi_h, oh, ratio)  # [K, oh, r]
  xs = _sample_points(x1, roi_w, ow, ratio)  # [K, ow, r]
  y_lo, y_hi, wy_lo, wy_hi = _axis_taps(ys, height[:, None, None])
  x_lo, x_hi, wx_lo, wx_hi = _axis_taps(xs, width[:, None, None])
  row0 = base[:, None, None, None, None]
  w_k = width[:, None, None, None, None]
  value = 0.0
  for yi, wy in ((y_lo, wy_lo), (y_hi, wy_hi)):
    for xi, wx in ((x_lo, wx_lo), (x_hi, wx_hi)):
      idx = row0 + yi[:, :, :, None, None] * w_k + xi[:, None, None]  # [K, oh, r, ow, r]
      weight = wy[:, :, :, None, None] * wx[:, None, None]
      value = value + weight[..., None] * flat[idx].astype(jnp.float32)
  total = 0.0
  for iy in range(ratio):
    for ix in range(ratio):
      total = total + value[:, :, iy, :, ix]
  return _div(total, ratio * ratio)


def roi_align(
  features: jax.Array,
  boxes: jax.Array,
  batch_index: jax.Array,
  output_size: int | Sequence[int],
  spatial_scale: float,
  sampling_ratio: int = 2,
  aligned: bool = True,
) -> jax.Array:
  """torchvision `roi_align` on channels-last maps: features [B, H, W, C] → [K, oh, ow, C].

  boxes [K, 4] xyxy in input pixels (map pixel = input · spatial_scale); batch_index [K] int
  picks each box's map (out-of-range indices are clamped by the gather). Float features keep
  their dtype (accumulation in float32); integer features give float32.
  """
  features = jnp.asarray(features)
  boxes, batch_index = jnp.asarray(boxes), jnp.asarray(batch_index)
  if features.ndim != 4:
    raise ValueError(f"features must be [B, H, W, C], got shape {features.shape}")
  _check_boxes(boxes, batch_index)
  size = _pair(output_size)
  ratio = _check_sampling_ratio(sampling_ratio)
  b, h, w, c = features.shape
  k = boxes.shape[0]
  base = jnp.clip(batch_index.astype(jnp.int32), 0, b - 1) * (h * w)
  height, width = jnp.full((k,), h, jnp.int32), jnp.full((k,), w, jnp.int32)
  scale = jnp.full((k,), spatial_scale, jnp.float32)
  out = _roi_align_flat(
    features.reshape(b * h * w, c), base, height, width, scale, boxes, size, ratio, aligned
  )
  return out.astype(_out_dtype(features.dtype))


def _out_dtype(dtype) -> jnp.dtype:
  return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32


def assign_levels(
  boxes: jax.Array,
  min_level: int,
  max_level: int,
  canonical_box_size: float = 224.0,
  canonical_level: int = 4,
) -> jax.Array:
  """detectron2 `assign_boxes_to_levels`: [K] int32 index into the levels (0 = `min_level`).

  level = floor(canonical_level + log2(sqrt(area) / canonical_box_size + 1e-8)), clamped to
  [min_level, max_level]; negative areas count as 0. (detectron2 adds machine epsilon instead of
  1e-8: in float32 the two differ only far below the clamped range.)
  """
  boxes = jnp.asarray(boxes, jnp.float32)
  area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
  size = jnp.sqrt(jnp.maximum(area, 0.0))
  level = jnp.floor(canonical_level + jnp.log2(size / canonical_box_size + 1e-8))
  return (jnp.clip(level, min_level, max_level) - min_level).astype(jnp.int32)


def _levels(strides: Sequence[int], n_features: int) -> tuple[int, int]:
  if len(strides) != n_features or n_features == 0:
    raise ValueError(
      f"need one stride per feature level, got {len(strides)} strides for {n_features} levels"
    )
  logs = [math.log2(s) for s in strides]
  if any(l != round(l) for l in logs) or any(b - a != 1 for a, b in zip(logs, logs[1:])):
    raise ValueError(
      f"strides must be consecutive powers of two (e.g. (4, 8, 16, 32)), got {tuple(strides)}"
    )
  return int(logs[0]), int(logs[-1])


def multilevel_roi_align(
  features: Sequence[jax.Array],
  strides: Sequence[int],
  boxes: jax.Array,
  batch_index: jax.Array,
  output_size: int | Sequence[int],
  sampling_ratio: int = 2,
  canonical_box_size: float = 224.0,
  canonical_level: int = 4,
  aligned: bool = True,
) -> jax.Array:
  """detectron2 `ROIPooler` (ROIAlignV2 when aligned) over FPN levels → [K, oh, ow, C].

  features: per level [B, Hl, Wl, C] (e.g. p2..p5) with `strides` (4, 8, 16, 32); each box is
  pooled from the level `assign_levels` gives it, at scale 1 / stride. Equal to pooling every
  level and selecting per box, but gathers once from the concatenated flattened levels.
  """
  features = [jnp.asarray(f) for f in features]
  min_level, max_level = _levels(strides, len(features))
  boxes, batch_index = jnp.asarray(boxes), jnp.asarray(batch_index)
  _check_boxes(boxes, batch_index)
  shapes = [f.shape for f in features]
  if any(f.ndim != 4 for f in features):
    raise ValueError(f"features must be [B, Hl, Wl, C] per level, got {shapes}")
  b, c = features[0].shape[0], features[0].shape[-1]
  if any(f.shape[0] != b or f.shape[-1] != c for f in features):
    raise ValueError(f"levels must share B and C, got {shapes}")
  dtype = jnp.result_type(*features)
  level = assign_levels(boxes, min_level, max_level, canonical_box_size, canonical_level)
  bases, offset = [], 0
  for f in features:
    bases.append(offset)
    offset += f.shape[0] * f.shape[1] * f.shape[2]
  flat = jnp.concatenate([f.astype(dtype).reshape(-1, c) for f in features])
  height = jnp.asarray([f.shape[1] for f in features], jnp.int32)[level]
  width = jnp.asarray([f.shape[2] for f in features], jnp.int32)[level]
  scale = jnp.asarray([1.0 / s for s in strides], jnp.float32)[level]
  bi = jnp.clip(batch_index.astype(jnp.int32), 0, b - 1)
  base = jnp.asarray(bases, jnp.int32)[level] + bi * height * width
  out = _roi_align_flat(
    flat,
    base,
    height,
    width,
    scale,
    boxes,
    _pair(output_size),
    _check_sampling_ratio(sampling_ratio),
    aligned,
  )
  return out.astype(_out_dtype(dtype))
