"""Frame-level detection mAP (the AVA protocol): hand-computed cases and a brute-force check."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from mgvm.evaluate import frame_map as detection

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]
FAR = [50.0, 50.0, 60.0, 60.0]


def _map(dets, gts, **kw):
  return detection.frame_map(dets, gts, **kw)


def test_iou_uses_area_without_plus_one():
  iou = detection.iou_xyxy(
    np.array([[0, 0, 2, 1]]), np.array([[0, 0, 1, 1], [2, 0, 3, 1], [0, 0, 2, 1]])
  )
  # [0,0,1,1] inside [0,0,2,1]: 1 / 2; touching edges: 0; identical: 1
  np.testing.assert_array_equal(iou, [[0.5, 0.0, 1.0]])
  assert detection.iou_xyxy(np.zeros((0, 4)), np.array([A])).shape == (0, 1)
  # two zero-area boxes: empty union -> 0, not NaN
  assert detection.iou_xyxy(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))[0, 0] == 0.0


def test_precision_recall_and_voc_ap_helpers():
  # ranked 0.9 FP, 0.8 TP, 0.8 FP (tie: the later one first), 1 of 2 GTs found
  precision, recall = detection.precision_recall([0.9, 0.8, 0.8], [False, True, False], 2)
  np.testing.assert_allclose(precision, [0, 0, 1 / 3])
  np.testing.assert_allclose(recall, [0, 0, 1 / 2])
  # envelope at the one recall step 0 -> 1/2 is 1/3 -> AP = 1/6
  assert detection.voc_average_precision(precision, recall) == pytest.approx(1 / 6)
  assert detection.voc_average_precision(np.array([]), np.array([])) == 0.0


def test_perfect_detector_is_one():
  gts = [("f1", A, 1), ("f1", B, 2), ("f2", A, 1)]
  dets = [("f1", A, 1, 0.9), ("f1", B, 2, 0.8), ("f2", A, 1, 0.3)]
  out = _map(dets, gts)
  assert out["mAP"] == 1.0 and out["per_class"] == {1: 1.0, 2: 1.0}
  assert out["num_gt"] == {1: 2, 2: 1}


def test_false_positive_ranked_first_gives_half():
  # 1 GT. Ranking: FP (0.9), TP (0.8) -> precision [0, 1/2], recall [0, 1].
  # Envelope over recall steps: only the step 0 -> 1, at precision 1/2 -> AP = 0.5.
  out = _map([("f1", FAR, 1, 0.9), ("f1", A, 1, 0.8)], [("f1", A, 1)])
  assert out["per_class"][1] == pytest.approx(0.5)


def test_score_ties_rank_later_detections_first():
  # 1 GT on f1; a TP on f1 and an FP on f2 with equal scores. The stream is frames in order of
  # their first detection; ties come out later-first (stable argsort(scores)[::-1]).
  gts = [("f1", A, 1)]
  # stream [TP(f1), FP(f2)] -> ranked [FP, TP] -> precision [0, 1/2] -> AP 0.5
  assert _map([("f1", A, 1, 0.7), ("f2", A, 1, 0.7)], gts)["mAP"] == pytest.approx(0.5)
  # stream [FP(f2), TP(f1)] -> ranked [TP, FP] -> precision [1, 1/2], recall [1, 1] -> AP 1
  assert _map([("f2", A, 1, 0.7), ("f1", A, 1, 0.7)], gts)["mAP"] == pytest.approx(1.0)


def test_duplicate_detection_of_one_gt_is_false_positive():
  # GTs A and C on f1. Ranked: A (TP), A again (FP: A is taken), C (TP).
  # precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]; envelope at the steps 0->1/2: 1, 1/2->1: 2/3
  # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
  gts = [("f1", A, 1), ("f1", B, 1)]
  dets = [("f1", A, 1, 0.9), ("f1", A, 1, 0.8), ("f1", B, 1, 0.7)]
  assert _map(dets, gts)["mAP"] == pytest.approx(5 / 6)


def test_no_fallback_to_the_next_best_ground_truth():
  # GTs P=[0,0,10,10] and Q=[2,0,12,10] on one frame. d1 = P (IoU 1 with P).
  # d2 = [0.5,0,10.5,10]: IoU with P 95/105 = .905 (its best, taken), with Q 85/115 = .739.
  # The reference only looks at the best box: d2 is an FP although Q is free and >= 0.5.
  # precision [1, 1/2], recall [1/2, 1/2] -> AP = 1/2.
  p, q = [0, 0, 10, 10], [2, 0, 12, 10]
  out = _map([("f", p, 1, 0.9), ("f", [0.5, 0, 10.5, 10], 1, 0.8)], [("f", p, 1), ("f", q, 1)])
  assert out["mAP"] == pytest.approx(0.5)


def test_class_without_ground_truth_is_nan_and_left_out():
  gts = [("f1", A, 1)]
  dets = [("f1", A, 1, 0.9), ("f1", B, 3, 0.8)]  # class 3 has no ground truth
  out = _map(dets, gts, class_ids=[1, 3, 4])  # class 4: nothing at all
  assert out["per_class"][1] == 1.0
  assert math.isnan(out["per_class"][3]) and math.isnan(out["per_class"][4])
  assert out["mAP"] == 1.0
  assert math.isnan(_map([("f1", A, 3, 0.5)], [])["mAP"])


def test_class_ids_restrict_the_evaluation():
  gts = [("f1", A, 1), ("f1", B, 2)]
  dets = [("f1", A, 1, 0.9)]
  assert _map(dets, gts)["mAP"] == pytest.approx(0.5)  # class 2: GT, no detection -> 0
  assert _map(dets, gts, class_ids=[1])["per_class"] == {1: 1.0}


def test_class_with_ground_truth_but_no_detections_is_zero():
  out = _map([("f1", A, 1, 0.9)], [("f1", A, 1), ("f1", B, 2)])
  assert out["per_class"] == {1: 1.0, 2: 0.0} and out["mAP"] == pytest.approx(0.5)


def test_numpy_inputs_and_no_detections_at_all():
  key = ("vid", 902)
  gts = [(key, np.array(A, np.float32), np.int64(7))]
  dets = [(key, np.array(A), np.int32(7), np.float32(0.25))]
  assert _map(dets, gts)["per_class"] == {7: 1.0}
  assert _map([], gts) == {
    "mAP": 0.0,
    "per_class": {7: 0.0},
    "num_gt": {7: 1},
    "dropped_degenerate": 0,
  }


def test_box_on_another_frame_is_false_positive():
  # The same box on f2 (no GT there) is an FP: ranked FP (0.9), TP (0.8) -> AP 0.5.
  out = _map([("f2", A, 1, 0.9), ("f1", A, 1, 0.8)], [("f1", A, 1)])
  assert out["mAP"] == pytest.approx(0.5)
  # Only the FP: precision [0] -> AP 0.
  assert _map([("f2", A, 1, 0.9)], [("f1", A, 1)])["mAP"] == 0.0


def test_iou_exactly_at_threshold_is_a_match():
  # det [0,0,1,1] vs GT [0,0,2,1]: intersection 1, union 2 -> IoU exactly 0.5.
  gts, dets = [("f", [0, 0, 2, 1], 1)], [("f", [0, 0, 1, 1], 1, 0.5)]
  assert _map(dets, gts, iou_threshold=0.5)["mAP"] == 1.0
  assert _map(dets, gts, iou_threshold=0.5000001)["mAP"] == 0.0


def test_zero_area_detections_are_dropped_not_counted():
  # The reference removes boxes with x1 >= x2 or y1 >= y2 before matching.
  out = _map([("f", [3, 3, 3, 8], 1, 0.9), ("f", A, 1, 0.8)], [("f", A, 1)])
  assert out["mAP"] == 1.0 and out["dropped_degenerate"] == 1


def test_frame_order_score_versus_input():
  # One GT; on its frame a low-score match listed first, then a high-score match.
  # score order (TF API): 0.9 TP, 0.6 FP -> AP 1. input order (SlowFast/EVAD port): 0.6 takes
  # the GT, 0.9 is an FP -> ranked [FP, TP] -> AP 0.5.
  dets, gts = [("f", A, 1, 0.6), ("f", [0, 0, 10, 9], 1, 0.9)], [("f", A, 1)]
  assert _map(dets, gts)["mAP"] == 1.0
  assert _map(dets, gts, frame_order="input")["mAP"] == pytest.approx(0.5)


def test_excluded_frames_are_ignored_on_both_sides():
  dets = [("bad", A, 1, 0.9), ("f", A, 1, 0.8)]
  gts = [("f", A, 1), ("bad", B, 1)]
  assert _map(dets, gts, excluded={"bad"})["mAP"] == 1.0


def test_strict_thresholds():
  # IoU of det [0,0,10,10] with GT [0,0,10,16.13]: 100/161.3 = 0.62 -> TP at .5, .55, .6 only.
  out = detection.strict_frame_map([("f", A, 1, 0.9)], [("f", [0, 0, 10, 16.13], 1)])
  assert out["AP50"] == 1.0 and out["AP75"] == 0.0 and out["AP"] == pytest.approx(0.3)
  assert len(out["per_threshold"]) == 10


@pytest.mark.parametrize(
  "dets, gts, message",
  [
    ([("f", [5, 0, 1, 1], 1, 0.5)], [], r"detections\[0\].*x2 < x1"),
    ([("f", A, 1, float("nan"))], [], r"detections\[0\].*NaN"),
    ([("f", A, 1)], [], r"detections\[0\].*4-tuple"),
    ([("f", A, 1.5, 0.2)], [], r"detections\[0\].*class id"),
    ([], [("f", [0, 5, 1, 1], 1)], r"ground_truth\[0\].*y2 < y1"),
    ([], [("f", [0, 0, 1], 1)], r"ground_truth\[0\].*4 numbers"),
    ([], [("f", [0, 0, float("inf"), 1], 1)], r"ground_truth\[0\].*non-finite"),
  ],
)
def test_invalid_entries_are_named(dets, gts, message):
  with pytest.raises(ValueError, match=message):
    _map(dets, gts)


# ------------------------------------------------------------------ independent brute force


def _iou(a, b):
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
  return iw * ih / union if union > 0 else 0.0


def _brute_force(dets, gts, threshold, frame_order):
  """Plain-Python restatement: greedy per frame, then AP = sum over TPs of the best precision
  at any rank at or below it, divided by the GT count."""
  frames = []
  for d in dets:
    if d[0] not in frames:
      frames.append(d[0])
  aps = {}
  for cls in sorted({g[2] for g in gts} | {d[2] for d in dets}):
    n_gt = sum(1 for g in gts if g[2] == cls)
    if n_gt == 0:
      continue
    stream = []  # (score, tp) in visiting order, frame by frame
    for f in frames:
      mine = [
        (i, d)
        for i, d in enumerate(dets)
        if d[0] == f and d[2] == cls and d[1][0] < d[1][2] and d[1][1] < d[1][3]
      ]
      if frame_order == "score":
        mine.sort(key=lambda x: (-x[1][3], -x[0]))
      boxes = [g[1] for g in gts if g[0] == f and g[2] == cls]
      taken = set()
      for _, d in mine:
        ious = [_iou(d[1], b) for b in boxes]
        best = max(range(len(ious)), key=lambda j: (ious[j], -j)) if ious else None
        tp = best is not None and ious[best] >= threshold and best not in taken
        if tp:
          taken.add(best)
        stream.append((d[3], tp))
    ranked = [tp for _, (s, tp) in sorted(enumerate(stream), key=lambda x: (-x[1][0], -x[0]))]
    precisions, hits = [], 0
    for k, tp in enumerate(ranked, 1):
      hits += tp
      precisions.append(hits / k)
    aps[cls] = sum(max(precisions[k:]) for k, tp in enumerate(ranked) if tp) / n_gt
  return aps


@pytest.mark.parametrize("frame_order", ["score", "input"])
def test_matches_brute_force_on_random_cases(frame_order):
  rng = random.Random(0)

  def box():
    x, y = rng.randint(0, 6), rng.randint(0, 6)
    return [float(x), float(y), float(x + rng.randint(0, 4)), float(y + rng.randint(1, 4))]

  for _ in range(150):
    frames = [f"v{k}" for k in range(rng.randint(1, 4))]
    gts = [(rng.choice(frames), box(), rng.randint(1, 3)) for _ in range(rng.randint(0, 6))]
    dets = [
      (
        rng.choice(frames + ["extra"]),
        box(),
        rng.randint(1, 3),
        rng.choice([0.1, 0.2, 0.5, 0.5, 0.9]),
      )
      for _ in range(rng.randint(0, 10))
    ]
    threshold = rng.choice([0.3, 0.5, 0.7])
    got = detection.frame_map(dets, gts, iou_threshold=threshold, frame_order=frame_order)
    want = _brute_force(dets, gts, threshold, frame_order)
    for cls, ap in want.items():
      assert got["per_class"][cls] == pytest.approx(ap), (dets, gts, threshold)
    assert all(math.isnan(v) for c, v in got["per_class"].items() if c not in want)
    if want:
      assert got["mAP"] == pytest.approx(sum(want.values()) / len(want))
