"""Box utilities (xyxy unless named otherwise), jnp and batched over leading axes.

Definitions follow DETR's `box_ops` (IoU, GIoU) and detectron2's `Box2BoxTransform`
(`apply_deltas`, as in Sparse R-CNN's `RCNNHead`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

SCALE_CLAMP = math.log(100000.0 / 16)


def _check(boxes: jax.Array, name: str = "boxes") -> jax.Array:
  boxes = jnp.asarray(boxes)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"{name} must be [..., 4], got shape {boxes.shape}")
  return boxes


def box_area(boxes: jax.Array) -> jax.Array:
  """[...]: (x2 − x1)·(y2 − y1) (no clamping, as torchvision / DETR)."""
  boxes = _check(boxes)
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Pairwise IoU of a [..., N, 4] and b [..., M, 4] → (iou [..., N, M], union [..., N, M])."""
  a, b = _check(a, "a"), _check(b, "b")
  if a.ndim < 2 or b.ndim < 2:
    raise ValueError(f"a and b must be [..., N, 4] and [..., M, 4], got {a.shape} and {b.shape}")
  area_a, area_b = box_area(a), box_area(b)
  lt = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
  rb = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
  wh = jnp.maximum(rb - lt, 0.0)
  inter = wh[..., 0] * wh[..., 1]
  union = area_a[..., :, None] + area_b[..., None, :] - inter
  return inter / union, union


def generalized_box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise GIoU (DETR): iou − (enclosing area − union) / enclosing area → [..., N, M]."""
  iou, union = box_iou(a, b)
  lt = jnp.minimum(a[..., :, None, :2], b[..., None, :, :2])
  rb = jnp.maximum(a[..., :, None, 2:], b[..., None, :, 2:])
  wh = jnp.maximum(rb - lt, 0.0)
  area = wh[..., 0] * wh[..., 1]
  return iou - (area - union) / area


def xyxy_to_cxcywh(boxes: jax.Array) -> jax.Array:
  """[..., 4] (x1, y1, x2, y2) → (cx, cy, w, h)."""
  x1, y1, x2, y2 = jnp.moveaxis(_check(boxes), -1, 0)
  return jnp.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def cxcywh_to_xyxy(boxes: jax.Array) -> jax.Array:
  """[..., 4] (cx, cy, w, h) → (x1, y1, x2, y2)."""
  cx, cy, w, h = jnp.moveaxis(_check(boxes), -1, 0)
  return jnp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def apply_deltas(
  deltas: jax.Array,
  boxes: jax.Array,
  weights: Sequence[float] = (2.0, 2.0, 1.0, 1.0),
  scale_clamp: float = SCALE_CLAMP,
) -> jax.Array:
  """detectron2 / Sparse R-CNN `apply_deltas`: deltas (dx, dy, dw, dh) [..., 4] on boxes → xyxy.

  ctr = x1 + w/2; dx/wx, dy/wy, dw/ww, dh/wh; dw, dh clamped above at `scale_clamp`;
  pred ctr = d·size + ctr, pred size = exp(d)·size; xyxy = ctr ∓ size/2. float32 or wider.
  """
  deltas, boxes = _check(deltas, "deltas"), _check(boxes)
  if len(weights) != 4:
    raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")
  dtype = jnp.result_type(deltas.dtype, jnp.float32)
  deltas, boxes = deltas.astype(dtype), boxes.astype(dtype)
  widths = boxes[..., 2] - boxes[..., 0]
  heights = boxes[..., 3] - boxes[..., 1]
  ctr_x = boxes[..., 0] + 0.5 * widths
  ctr_y = boxes[..., 1] + 0.5 * heights
  wx, wy, ww, wh = weights
  dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
  dw = jnp.minimum(deltas[..., 2] / ww, scale_clamp)
  dh = jnp.minimum(deltas[..., 3] / wh, scale_clamp)
  pred_ctr_x, pred_ctr_y = dx * widths + ctr_x, dy * heights + ctr_y
  pred_w, pred_h = jnp.exp(dw) * widths, jnp.exp(dh) * heights
  return jnp.stack(
    [
      pred_ctr_x - 0.5 * pred_w,
      pred_ctr_y - 0.5 * pred_h,
      pred_ctr_x + 0.5 * pred_w,
      pred_ctr_y + 0.5 * pred_h,
    ],
    axis=-1,
  )


def _hw(image_hw, boxes: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(H, W) or [..., 2] per image (leading axes of boxes [..., K, 4]) → broadcastable h, w."""
  hw = jnp.asarray(image_hw)
  if hw.ndim == 0 or hw.shape[-1] != 2:
    raise ValueError(f"image_hw must be (H, W) or [..., 2], got shape {hw.shape}")
  if hw.ndim == 1:
    return hw[0], hw[1]
  if hw.shape[:-1] != boxes.shape[:-2]:
    raise ValueError(
      f"image_hw {hw.shape} must be [..., 2] over the leading axes of boxes "
      f"{boxes.shape} ([..., K, 4])"
    )
  return hw[..., 0, None], hw[..., 1, None]


def clip_boxes(boxes: jax.Array, image_hw, pixel_offset: float = 0.0) -> jax.Array:
  """Clip x to [0, W − pixel_offset] and y to [0, H − pixel_offset].

  pixel_offset 0: detectron2 `Boxes.clip`; 1: SlowFast's `clip_boxes_tensor` (integer-pixel
  convention, which EVAD uses). image_hw: (H, W) or [..., 2] per image for boxes [..., K, 4].
  """
  boxes = _check(boxes)
  h, w = _hw(image_hw, boxes)
  x_max, y_max = w - pixel_offset, h - pixel_offset
  x1, y1, x2, y2 = jnp.moveaxis(boxes, -1, 0)
  clip_x = lambda v: jnp.clip(v, 0, x_max)  # noqa: E731
  clip_y = lambda v: jnp.clip(v, 0, y_max)  # noqa: E731
  return jnp.stack([clip_x(x1), clip_y(y1), clip_x(x2), clip_y(y2)], axis=-1)


def enlarge_boxes(
  boxes: jax.Array, ratio: Sequence[float] = (0.4, 0.2), image_hw=None, pixel_offset: float = 1.0
) -> jax.Array:
  """EVAD's `bbox_extension` (ROI_EXTENSION): grow width by ratio[0], height by ratio[1].

  Each side moves out by ratio · (size + pixel_offset) / 2 about the centre, then the box is
  clipped by `clip_boxes(..., pixel_offset)`. The default pixel_offset 1 is EVAD's integer-pixel
  convention (size = x2 − x1 + 1, clip to [0, W − 1]); 0 gives the plain continuous rule.
  `ratio` may be one number for both axes. image_hw: (H, W) or [..., 2] per image (required).
  """
  boxes = _check(boxes)
  if image_hw is None:
    raise ValueError("enlarge_boxes needs image_hw=(H, W) (boxes are clipped to the image)")
  ratio = tuple(ratio) if isinstance(ratio, Sequence) else (ratio,)
  if len(ratio) == 1:
    ratio = ratio * 2
  if len(ratio) != 2:
    raise ValueError(f"ratio must be (x_ratio, y_ratio) or one number, got {ratio!r}")
  x1, y1, x2, y2 = jnp.moveaxis(boxes, -1, 0)
  pad_w = ratio[0] * (x2 - x1 + pixel_offset) / 2
  pad_h = ratio[1] * (y2 - y1 + pixel_offset) / 2
  grown = jnp.stack([x1 - pad_w, y1 - pad_h, x2 + pad_w, y2 + pad_h], axis=-1)
  return clip_boxes(grown, image_hw, pixel_offset)
