"""Frame-level detection mAP as the AVA evaluation computes it (PASCAL VOC AP per class).

The rules are those of the TF object-detection API evaluator used for AVA (ActivityNet's
evaluator; SlowFast's and EVAD's port `ava_evaluation/`), per class and per frame:

- Boxes are `[x1, y1, x2, y2]`; IoU uses `np_box_ops`' area rule `(x2 - x1) * (y2 - y1)` (no +1).
- Detections whose box has zero width or height are dropped before matching (the reference's
  `_remove_invalid_boxes`); a box with x2 < x1 or y2 < y1 is an error here.
- Within a frame, detections are visited in descending score (`frame_order="score"`, the TF API,
  whose evaluator sorts every frame's boxes) or in the order given (`frame_order="input"`: the
  SlowFast / EVAD port dropped that sort). Each detection looks only at the ground truth box of
  its class with the highest IoU (first such box on equal IoU); it is a true positive when that
  IoU is >= the threshold and that box is not taken yet, otherwise a false positive. There is no
  fall-back to the next-best box.
- Detections on frames without ground truth of their class are false positives. Ground truth
  boxes never detected count in the class's recall denominator.
- All detections of a class are then ranked by score over all frames; cumulative precision and
  recall over the class's ground truth count; AP = VOC all-point area under the monotone
  precision envelope (sum over recall steps).
- Ties: every ranking is `argsort(scores)[::-1]` as in the reference, but with a stable sort, so
  equal scores come out later-first (frames in order of their first detection, detections within
  a frame in their visiting order). The reference's default NumPy sort is not stable, so its order
  among equal scores is unspecified; without ties both agree exactly.
- A class with ground truth and no detections has AP 0; a class without ground truth has AP NaN
  and is left out of the mean (the reference's `np.nanmean`).
"""

from __future__ import annotations

import math
from typing import Hashable, Iterable, Sequence

import numpy as np

# EVAD's STRICT_EVAL thresholds: np.linspace(.5, .95, 10), the same floats as the reference.
STRICT_IOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))


def iou_xyxy(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
  """Pairwise IoU `[N, M]` of `[N, 4]` and `[M, 4]` xyxy boxes (area rule without +1).

  A pair whose union is empty (two zero-area boxes) has IoU 0.
  """
  a = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
  b = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
  iw = np.maximum(
    0.0, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
  )
  ih = np.maximum(
    0.0, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
  )
  inter = iw * ih
  area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
  area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  union = area_a[:, None] + area_b[None, :] - inter
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def precision_recall(
  scores: np.ndarray, tp: np.ndarray, num_gt: int
) -> tuple[np.ndarray, np.ndarray]:
  """Cumulative precision and recall of detections ranked by score (ties later-first)."""
  scores = np.asarray(scores, dtype=np.float64)
  tp = np.asarray(tp, dtype=bool)
  if num_gt <= 0:
    raise ValueError(f"num_gt must be positive, got {num_gt}")
  if tp.sum() > num_gt:
    raise ValueError(f"{int(tp.sum())} true positives exceed {num_gt} ground truth boxes")
  order = _descending(scores)
  hits = tp[order].astype(np.int64)
  cum_tp = np.cumsum(hits)
  cum_fp = np.cumsum(1 - hits)
  return cum_tp / (cum_tp + cum_fp), cum_tp / num_gt


def voc_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
  """PASCAL VOC all-point AP: area under the non-increasing precision envelope."""
  precision = np.asarray(precision, dtype=np.float64)
  recall = np.asarray(recall, dtype=np.float64)
  if precision.size == 0:
    return 0.0
  r = np.concatenate([[0.0], recall, [1.0]])
  p = np.concatenate([[0.0], precision, [0.0]])
  p = np.maximum.accumulate(p[::-1])[::-1]
  steps = np.nonzero(r[1:] != r[:-1])[0] + 1
  return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def frame_map(
  detections: Iterable,
  ground_truth: Iterable,
  iou_threshold: float = 0.5,
  class_ids: Iterable[int] | None = None,
  excluded: Iterable[Hashable] | None = None,
  frame_order: str = "score",
) -> dict:
  """Frame-level mAP at one IoU threshold.

  Args:
    detections: `(frame_key, box_xyxy, class_id, score)` tuples; `frame_key` any hashable.
    ground_truth: `(frame_key, box_xyxy, class_id)` tuples, one per box and class.
    iou_threshold: a detection is a true positive at IoU >= this.
    class_ids: the classes evaluated (e.g. AVA's 60); detections and ground truth of other
      classes are ignored, listed classes without ground truth get NaN. None: every class seen.
    excluded: frame keys ignored on both sides (AVA's excluded timestamps).
    frame_order: "score" (TF API) or "input" (SlowFast / EVAD port), see the module docstring.

  Returns:
    `{"mAP": float, "per_class": {class_id: AP}, "num_gt": {class_id: int},
    "dropped_degenerate": int}`; mAP is NaN when no class has ground truth.
  """
  result = _evaluate(
    detections, ground_truth, (float(iou_threshold),), class_ids, excluded, frame_order
  )
  per_class = {c: aps[0] for c, aps in result["per_class"].items()}
  return {
    "mAP": _nanmean(per_class.values()),
    "per_class": per_class,
    "num_gt": result["num_gt"],
    "dropped_degenerate": result["dropped_degenerate"],
  }


def strict_frame_map(
  detections: Iterable,
  ground_truth: Iterable,
  class_ids: Iterable[int] | None = None,
  excluded: Iterable[Hashable] | None = None,
  frame_order: str = "score",
  iou_thresholds: Sequence[float] = STRICT_IOU_THRESHOLDS,
) -> dict:
  """EVAD's STRICT_EVAL: mAP at IoU .50:.05:.95, their mean (`AP`), `AP50` and `AP75`.

  Fractions in [0, 1] (EVAD prints them x100). `per_threshold` maps each threshold to its mAP.
  """
  thresholds = tuple(float(t) for t in iou_thresholds)
  result = _evaluate(detections, ground_truth, thresholds, class_ids, excluded, frame_order)
  maps = [_nanmean(aps[k] for aps in result["per_class"].values()) for k in range(len(thresholds))]
  out = {"AP": float(np.mean(maps)), "per_threshold": dict(zip(thresholds, maps))}
  for name, t in (("AP50", 0.5), ("AP75", 0.75)):
    near = [k for k, u in enumerate(thresholds) if abs(u - t) < 1e-9]
    if near:
      out[name] = maps[near[0]]
  return out


def _evaluate(detections, ground_truth, thresholds, class_ids, excluded, frame_order) -> dict:
  if frame_order not in ("score", "input"):
    raise ValueError(f"frame_order must be 'score' or 'input', got {frame_order!r}")
  for t in thresholds:
    if not 0.0 < t <= 1.0:
      raise ValueError(f"IoU threshold must be in (0, 1], got {t}")
  thr = np.asarray(thresholds, dtype=np.float64)
  wanted = (
    None
    if class_ids is None
    else sorted({_class_id(c, f"class_ids entry {c!r}") for c in class_ids})
  )
  # One id per frame key, numbered in order of the frame's first detection (the stream order).
  frame_ids: dict = {}
  d_frame, d_box, d_cls, d_score = _columns(detections, 4, "detections", frame_ids)
  g_frame, g_box, g_cls, _ = _columns(ground_truth, 3, "ground_truth", frame_ids)

  skip = np.asarray([frame_ids[f] for f in set(excluded or ()) if f in frame_ids], np.int64)
  d_keep = ~np.isin(d_frame, skip)
  g_keep = ~np.isin(g_frame, skip)
  if wanted is not None:
    d_keep &= np.isin(d_cls, wanted)
    g_keep &= np.isin(g_cls, wanted)
  degenerate = d_keep & ~((d_box[:, 0] < d_box[:, 2]) & (d_box[:, 1] < d_box[:, 3]))
  d_keep &= ~degenerate
  d_index = np.nonzero(d_keep)[0]
  g_index = np.nonzero(g_keep)[0]

  # Detections by frame, class, then visiting order: for each class this is the stream order.
  if frame_order == "score":
    order = np.lexsort((-d_index, -d_score[d_index], d_cls[d_index], d_frame[d_index]))
  else:
    order = np.lexsort((d_index, d_cls[d_index], d_frame[d_index]))
  d_index = d_index[order]
  g_index = g_index[np.lexsort((g_index, g_cls[g_index], g_frame[g_index]))]
  df, dc, db, ds = d_frame[d_index], d_cls[d_index], d_box[d_index], d_score[d_index]
  gf, gc, gb = g_frame[g_index], g_cls[g_index], g_box[g_index]

  tp = np.zeros((thr.size, df.size), dtype=bool)
  frames = np.unique(df)
  d_start = np.searchsorted(df, frames, side="left")
  d_end = np.searchsorted(df, frames, side="right")
  g_start = np.searchsorted(gf, frames, side="left")
  g_end = np.searchsorted(gf, frames, side="right")
  for a, b, c, d in zip(d_start, d_end, g_start, g_end):
    if c < d:
      tp[:, a:b] = _match_frame(db[a:b], dc[a:b], gb[c:d], gc[c:d], thr)

  classes = (
    wanted
    if wanted is not None
    else sorted(set(np.unique(gc).tolist()) | set(np.unique(dc).tolist()))
  )
  num_gt = {int(c): int(n) for c, n in zip(*np.unique(gc, return_counts=True))}
  # Rank each class by descending score, ties later-first in the stream: what a stable
  # argsort(scores)[::-1] over the stream-ordered scores gives.
  stream = np.arange(df.size)
  ranked = np.lexsort((-stream, -ds, dc))
  cls_sorted = dc[ranked]
  per_class = {}
  for cls in classes:
    n = num_gt.get(cls, 0)
    if n == 0:
      per_class[cls] = [math.nan] * thr.size
      continue
    lo, hi = np.searchsorted(cls_sorted, [cls, cls + 1])
    hits = tp[:, ranked[lo:hi]]
    per_class[cls] = [_average_precision(hits[k], n) for k in range(thr.size)]
  return {
    "per_class": per_class,
    "num_gt": {c: num_gt.get(c, 0) for c in classes},
    "dropped_degenerate": int(degenerate.sum()),
  }


def _match_frame(det_boxes, det_cls, gt_boxes, gt_cls, thr) -> np.ndarray:
  """TP flags `[T, n]` of one frame's detections, given in visiting order within each class."""
  iou = iou_xyxy(det_boxes, gt_boxes)
  iou = np.where(det_cls[:, None] == gt_cls[None, :], iou, -1.0)  # other classes never match
  best = np.argmax(iou, axis=1)  # first box on equal IoU
  best_iou = iou[np.arange(best.size), best]
  tp = np.zeros((thr.size, best.size), dtype=bool)
  taken = np.zeros((thr.size, gt_boxes.shape[0]), dtype=bool)
  for i in np.nonzero(best_iou >= thr.min())[0]:
    hit = (best_iou[i] >= thr) & ~taken[:, best[i]]
    tp[:, i] = hit
    taken[:, best[i]] |= hit
  return tp


def _average_precision(hits_ranked: np.ndarray, num_gt: int) -> float:
  if hits_ranked.size == 0:
    return 0.0
  cum_tp = np.cumsum(hits_ranked)
  return voc_average_precision(cum_tp / np.arange(1, cum_tp.size + 1), cum_tp / num_gt)


def _columns(entries: Iterable, size: int, name: str, frame_ids: dict) -> tuple:
  """(frame id, box [N, 4] float64, class int64, score float64 or None) of validated entries."""
  entries = list(entries)
  frames, boxes, classes, scores = [], [], [], []
  for k, entry in enumerate(entries):
    try:
      items = tuple(entry)
    except TypeError:
      items = ()
    if len(items) != size:
      raise ValueError(
        f"{name}[{k}]: expected a {size}-tuple (frame_key, box, class_id"
        f"{', score' if size == 4 else ''}), got {entry!r}"
      )
    frames.append(frame_ids.setdefault(items[0], len(frame_ids)))
    boxes.append(items[1])
    classes.append(items[2])
    if size == 4:
      scores.append(items[3])
  where = lambda k: f"{name}[{k}] {entries[k]!r}"  # noqa: E731
  n = len(entries)
  try:
    box = np.asarray(boxes, dtype=np.float64).reshape(n, 4)
  except (TypeError, ValueError):
    for k, b in enumerate(boxes):
      _box_shape(b, where(k))
    raise
  bad = ~np.all(np.isfinite(box), axis=1)
  if bad.any():
    raise ValueError(f"{where(int(np.argmax(bad)))}: box has a non-finite coordinate")
  bad = (box[:, 2] < box[:, 0]) | (box[:, 3] < box[:, 1])
  if bad.any():
    raise ValueError(
      f"{where(int(np.argmax(bad)))}: box has x2 < x1 or y2 < y1 (expected x1, y1, x2, y2)"
    )
  cls = np.asarray(classes)
  if cls.dtype.kind not in "iu" or cls.ndim != 1:
    cls = np.asarray([_class_id(c, where(k)) for k, c in enumerate(classes)], dtype=np.int64)
  cls = cls.astype(np.int64).reshape(n)
  score = None
  if size == 4:
    try:
      score = np.asarray(scores, dtype=np.float64).reshape(n)
    except (TypeError, ValueError):
      for k, s in enumerate(scores):
        try:
          float(s)
        except (TypeError, ValueError):
          raise ValueError(f"{where(k)}: score is not a number") from None
      raise
    if np.isnan(score).any():
      raise ValueError(f"{where(int(np.argmax(np.isnan(score))))}: score is NaN")
  return np.asarray(frames, dtype=np.int64).reshape(n), box, cls, score


def _descending(scores: np.ndarray) -> np.ndarray:
  """The reference's `argsort(scores)[::-1]`, with a stable sort: ties later-first."""
  return np.argsort(scores, kind="stable")[::-1]


def _nanmean(values: Iterable[float]) -> float:
  kept = [v for v in values if not math.isnan(v)]
  return float(np.mean(kept)) if kept else math.nan


def _box_shape(box, where: str) -> None:
  try:
    b = np.asarray(box, dtype=np.float64).reshape(-1)
  except (TypeError, ValueError):
    raise ValueError(f"{where}: box is not 4 numbers") from None
  if b.shape != (4,):
    raise ValueError(f"{where}: box must have 4 numbers (x1, y1, x2, y2), got {b.size}")


def _class_id(value, where: str) -> int:
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{where}: class id must be an integer, got {value!r}")
  try:
    as_int = int(value)
  except (TypeError, ValueError, OverflowError):
    raise ValueError(f"{where}: class id must be an integer, got {value!r}") from None
  if as_int != value:
    raise ValueError(f"{where}: class id must be an integer, got {value!r}")
  return as_int
