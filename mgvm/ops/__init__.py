"""Static-shape, jit/vmap-able ops for the action detector (Sparse R-CNN actor localizer, RoIs).

- `roi_align`, `multilevel_roi_align`: torchvision's RoIAlign kernel rule (channels-last) and
  detectron2's FPN pooler level assignment.
- `linear_sum_assignment`, `match`: Hungarian matching in `lax` loops (scipy's result).
- Box utilities: areas, IoU / GIoU (DETR), format conversions, `apply_deltas` (detectron2),
  `enlarge_boxes` (EVAD's ROI_EXTENSION), `clip_boxes`.
"""

from __future__ import annotations

from mgvm.ops.boxes import (
  apply_deltas,
  box_area,
  box_iou,
  clip_boxes,
  cxcywh_to_xyxy,
  enlarge_boxes,
  generalized_box_iou,
  xyxy_to_cxcywh,
)
from mgvm.ops.hungarian import linear_sum_assignment, match
from mgvm.ops.roi_align import assign_levels, multilevel_roi_align, roi_align

__all__ = [
  "apply_deltas",
  "assign_levels",
  "box_area",
  "box_iou",
  "clip_boxes",
  "cxcywh_to_xyxy",
  "enlarge_boxes",
  "generalized_box_iou",
  "linear_sum_assignment",
  "match",
  "multilevel_roi_align",
  "roi_align",
  "xyxy_to_cxcywh",
]
