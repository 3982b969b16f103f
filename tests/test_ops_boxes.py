"""mgvm.ops.boxes: hand-computed IoU / GIoU / conversions, detectron2's apply_deltas, EVAD's
ROI_EXTENSION."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgvm import ops


def test_iou_and_giou_by_hand():
  a = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
  b = np.array(
    [
      [0.5, 0.0, 1.5, 1.0],  # overlaps a by half: inter 0.5, union 1.5
      [2.0, 0.0, 3.0, 1.0],  # disjoint, enclosing box 3×1
      [0.0, 0.0, 1.0, 1.0],  # identical
      [0.25, 0.25, 0.75, 0.75],
    ],
    np.float32,
  )  # inside a
  iou, union = jax.jit(ops.box_iou)(a, b)
  np.testing.assert_allclose(iou, [[1 / 3, 0.0, 1.0, 0.25]], rtol=1e-6)
  np.testing.assert_allclose(union, [[1.5, 2.0, 1.0, 1.0]], rtol=1e-6)
  giou = jax.jit(ops.generalized_box_iou)(a, b)
  # enclosing areas 1.5, 3, 1, 1 → giou = iou − (enclosing − union) / enclosing
  np.testing.assert_allclose(giou, [[1 / 3, 0.0 - (3 - 2) / 3, 1.0, 0.25]], rtol=1e-6)
  np.testing.assert_allclose(ops.box_area(b), [1.0, 1.0, 1.0, 0.25])
  assert giou.shape == (1, 4)


def test_iou_batched_over_leading_axes():
  rng = np.random.default_rng(0)
  xy = rng.uniform(0, 10, (3, 5, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(0.5, 4, (3, 5, 2))], -1).astype(np.float32)
  giou = jax.jit(ops.generalized_box_iou)(boxes, boxes[:, :4])
  assert giou.shape == (3, 5, 4)
  np.testing.assert_allclose(giou[1], ops.generalized_box_iou(boxes[1], boxes[1, :4]), rtol=1e-6)
  np.testing.assert_allclose(np.diagonal(giou[:, :4, :4], axis1=1, axis2=2), 1.0, rtol=1e-6)
  assert np.all(giou >= -1.0) and np.all(giou <= 1.0)
  with pytest.raises(ValueError, match=r"\[\.\.\., N, 4\]"):
    ops.box_iou(boxes[0, 0], boxes[0])


def test_format_round_trip():
  xyxy = np.array([[1.0, 2.0, 5.0, 8.0], [-1.0, 0.0, 0.0, 3.0]], np.float32)
  cxcywh = ops.xyxy_to_cxcywh(xyxy)
  np.testing.assert_allclose(cxcywh, [[3.0, 5.0, 4.0, 6.0], [-0.5, 1.5, 1.0, 3.0]])
  np.testing.assert_allclose(ops.cxcywh_to_xyxy(cxcywh), xyxy)
  with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
    ops.xyxy_to_cxcywh(xyxy[:, :3])


def _detectron2_apply_deltas(deltas, boxes, weights, scale_clamp):
  """NumPy transcription of detectron2 `Box2BoxTransform.apply_deltas` (one class)."""
  widths = boxes[:, 2] - boxes[:, 0]
  heights = boxes[:, 3] - boxes[:, 1]
  ctr_x = boxes[:, 0] + 0.5 * widths
  ctr_y = boxes[:, 1] + 0.5 * heights
  wx, wy, ww, wh = weights
  dx = deltas[:, 0::4] / wx
  dy = deltas[:, 1::4] / wy
  dw = np.minimum(deltas[:, 2::4] / ww, scale_clamp)
  dh = np.minimum(deltas[:, 3::4] / wh, scale_clamp)
  pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
  pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
  pred_w = np.exp(dw) * widths[:, None]
  pred_h = np.exp(dh) * heights[:, None]
  x1, y1 = pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h
  x2, y2 = pred_ctr_x + 0.5 * pred_w, pred_ctr_y + 0.5 * pred_h
  return np.stack((x1, y1, x2, y2), axis=-1).reshape(deltas.shape)


def test_apply_deltas_matches_detectron2():
  rng = np.random.default_rng(1)
  xy = rng.uniform(0, 500, (2, 50, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(1, 300, (2, 50, 2))], -1)
  deltas = rng.normal(0, 2, (2, 50, 4))
  deltas[0, :5, 2:] = 30.0  # beyond the clamp log(1e5 / 16) ≈ 8.74
  clamp = math.log(100000.0 / 16)
  ours = jax.jit(ops.apply_deltas)(deltas.astype(np.float32), boxes.astype(np.float32))
  ref = _detectron2_apply_deltas(deltas.reshape(-1, 4), boxes.reshape(-1, 4), (2, 2, 1, 1), clamp)
  np.testing.assert_allclose(ours, ref.reshape(ours.shape), rtol=2e-5, atol=1e-3)
  unchanged = ops.apply_deltas(np.zeros((1, 4)), boxes[0, :1])
  np.testing.assert_allclose(unchanged, boxes[0, :1], rtol=1e-6)
  w = boxes[0, 0, 2] - boxes[0, 0, 0]
  assert float(ours[0, 0, 2] - ours[0, 0, 0]) == pytest.approx(w * 100000.0 / 16, rel=1e-5)
  other = ops.apply_deltas(deltas[0, :3], boxes[0, :3], weights=(10, 10, 5, 5), scale_clamp=1.0)
  np.testing.assert_allclose(
    other, _detectron2_apply_deltas(deltas[0, :3], boxes[0, :3], (10, 10, 5, 5), 1.0), rtol=2e-5
  )


def test_enlarge_and_clip_by_hand():
  boxes = np.array(
    [
      [10.0, 20.0, 29.0, 59.0],  # 20 × 40 px in EVAD's inclusive pixels
      [0.0, 0.0, 9.0, 9.0],
      [90.0, 40.0, 99.0, 49.0],
    ],
    np.float32,
  )
  # EVAD: pad each side by 0.4·(w+1)/2 = 4 px in x and 0.2·(h+1)/2 = 4 px in y (box 0),
  # 2 px and 1 px (boxes 1, 2); clip to [0, W−1] × [0, H−1] for an image H=50, W=100.
  out = jax.jit(ops.enlarge_boxes)(boxes, (0.4, 0.2), (50, 100))
  np.testing.assert_allclose(
    out, [[6.0, 16.0, 33.0, 49.0], [0.0, 0.0, 11.0, 10.0], [88.0, 39.0, 99.0, 49.0]], rtol=1e-6
  )
  # the plain continuous rule: +40 % width / +20 % height about the centre, clip to [0, W]
  plain = ops.enlarge_boxes(boxes[:1], (0.4, 0.2), (100, 100), pixel_offset=0.0)
  np.testing.assert_allclose(plain, [[10 - 3.8, 20 - 3.9, 29 + 3.8, 59 + 3.9]], rtol=1e-6)
  np.testing.assert_allclose(
    ops.enlarge_boxes(boxes[:1], 0.4, (100, 100)), [[6.0, 12.0, 33.0, 67.0]], rtol=1e-6
  )
  # per-image sizes for boxes [B, K, 4]
  sizes = np.array([[50, 100], [30, 20]])
  per_image = ops.enlarge_boxes(np.stack([boxes, boxes]), (0.4, 0.2), sizes)
  np.testing.assert_allclose(per_image[0], out, rtol=1e-6)
  assert float(per_image[1].max()) <= 29.0 and float(per_image[1][..., 0::2].max()) <= 19.0
  clipped = ops.clip_boxes(np.array([[-5.0, -1.0, 120.0, 60.0]], np.float32), (50, 100))
  np.testing.assert_allclose(clipped, [[0.0, 0.0, 100.0, 50.0]])
  with pytest.raises(ValueError, match="image_hw"):
    ops.enlarge_boxes(boxes)
  with pytest.raises(ValueError, match="image_hw"):
    ops.clip_boxes(boxes, (50, 100, 3))
  assert jnp.asarray(out).dtype == jnp.float32
