"""EVAD evaluation: detections per keyframe, frame-mAP (AVA protocol), GFLOPs per clip.

Inference as the reference (docs/algorithms.md §4.4): person probability = softmax of the last
localizer stage; proposals with probability >= `person_threshold` are kept (all of them when
none reaches it); each kept box gives one detection per class scored by the sigmoid of the
last decoder layer's action logit. Frame keys are `(host, video_index, keyframe)`.

On several hosts each host predicts its own keyframes (every host runs the same number of
batches: `mgvm.data.detection.eval_num_batches`), then the detections and ground truth of all
hosts are gathered and every host computes the same frame-mAP. Boxes and scores travel as
float32 on one host too, so the result does not depend on the number of hosts.
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import numpy as np
from flax import nnx

from mgvm.data.device_ops import model_video
from mgvm.models.localizer import person_scores


def _predict(graphdef: nnx.GraphDef):
  def predict(params, video):
    video = model_video({"video": video})  # uint8 pipeline clips are normalised here
    out, _ = nnx.merge(graphdef, params)(video, deterministic=True)
    person = person_scores(out["person_logits"][-1])
    return person, out["boxes"][-1], jax.nn.sigmoid(out["actions"][-1])

  return predict


def predict_fn(graphdef: nnx.GraphDef):
  """jit `(params, video) -> (person prob [B, P], boxes [B, P, 4] px, action probs [B, P, C])`."""
  return jax.jit(_predict(graphdef))


def select_people(person: np.ndarray, threshold: float) -> np.ndarray:
  """bool [P]: person prob >= threshold, or every proposal when none is."""
  keep = person >= threshold
  return keep if keep.any() else np.ones_like(keep)


def batch_detections(
  batch: dict[str, np.ndarray], person, boxes, actions, image_hw, threshold: float, host: int = 0
) -> tuple[list, list]:
  """(detections, ground truth) of one batch in `frame_map`'s tuple form, boxes normalised;
  frame keys `(host, video_index, keyframe)`."""
  h, w = image_hw
  scale = np.asarray([w, h, w, h], np.float64)
  dets, gts = [], []
  mask = np.asarray(batch.get("mask", np.ones(len(person), bool)), bool)
  for i in np.flatnonzero(mask):
    key = (host, int(batch["video_index"][i]), int(batch["keyframe"][i]))
    for box, labels in zip(
      batch["boxes"][i][batch["box_valid"][i]], batch["actions"][i][batch["box_valid"][i]]
    ):
      for c in np.flatnonzero(labels > 0.5):
        gts.append((key, tuple(np.asarray(box, np.float64) / scale), int(c)))
    for p in np.flatnonzero(select_people(np.asarray(person[i]), threshold)):
      box = tuple(np.clip(np.asarray(boxes[i][p], np.float64) / scale, 0.0, 1.0))
      for c, score in enumerate(np.asarray(actions[i][p])):
        dets.append((key, box, c, float(score)))
  return dets, gts


def flops_of(compiled) -> float:
  """FLOPs of a compiled XLA executable by its cost analysis (per device when sharded)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def clips_per_device(video) -> int:
  """Clips one device computes: the batch of its shard (the whole batch when unsharded)."""
  sharding = getattr(video, "sharding", None)
  return int(sharding.shard_shape(video.shape)[0]) if sharding is not None else video.shape[0]


def encoder_gflops(graphdef: nnx.GraphDef, params, video) -> float:
  """GFLOPs per clip of the (pruned) encoder on `video` [B, T, H, W, 3]."""
  encode = jax.jit(lambda p, v: nnx.merge(graphdef, p).encode(v)[0])
  return flops_of(encode.lower(params, video).compile()) / clips_per_device(video) / 1e9


def _rows(items: list, with_score: bool) -> dict[str, np.ndarray]:
  """`frame_map` tuples → arrays (keys int32 [N, 3], boxes float32 [N, 4], class, score)."""
  n = len(items)
  return {
    "key": np.asarray([item[0] for item in items], np.int32).reshape(n, 3),
    "box": np.asarray([item[1] for item in items], np.float32).reshape(n, 4),
    "cls": np.asarray([item[2] for item in items], np.int32).reshape(n),
    **(
      {"score": np.asarray([item[3] for item in items], np.float32).reshape(n)}
      if with_score
      else {}
    ),
  }


def _tuples(rows: dict[str, np.ndarray]) -> list:
  """Arrays of `_rows` → `frame_map` tuples (boxes and scores as float64 of the float32 values)."""
  out = []
  for i in range(len(rows["cls"])):
    item = (
      tuple(int(v) for v in rows["key"][i]),
      tuple(float(v) for v in rows["box"][i]),
      int(rows["cls"][i]),
    )
    out.append(item + (float(rows["score"][i]),) if "score" in rows else item)
  return out


def evaluate(
  graphdef: nnx.GraphDef,
  params,
  batches: Iterable[dict],
  mesh,
  *,
  num_classes: int,
  image_hw,
  person_threshold: float = 0.7,
  iou_threshold: float = 0.5,
) -> dict[str, Any]:
  """frame-mAP of `params` over every keyframe in `batches` (`mgvm.data.detection` eval mode),
  of every host's keyframes when there are several (the module docstring)."""
  from mgvm.evaluate.frame_map import frame_map
  from mgvm.sharding import gather_hosts, host_rows, to_global

  host = jax.process_index()
  predict, total_gflops, enc_gflops = None, None, None
  dets, gts, counts = [], [], np.zeros(2, np.int32)  # keyframes, truncated boxes
  for batch in batches:
    video = to_global({"video": batch["video"]}, mesh)["video"]
    if predict is None:  # compiled once: predictions and the FLOPs of the whole detector
      predict = jax.jit(_predict(graphdef)).lower(params, video).compile()
      total_gflops = flops_of(predict) / clips_per_device(video) / 1e9
      enc_gflops = encoder_gflops(graphdef, params, video)
    person, boxes, actions = host_rows(predict(params, video), mesh)
    d, g = batch_detections(batch, person, boxes, actions, image_hw, person_threshold, host)
    dets += d
    gts += g
    real = np.asarray(batch["mask"], bool)
    counts += [int(real.sum()), int(np.asarray(batch["num_truncated"])[real].sum())]
  dets = _tuples(gather_hosts(_rows(dets, with_score=True)))
  gts = _tuples(gather_hosts(_rows(gts, with_score=False)))
  keyframes, truncated = (int(v) for v in gather_hosts({"n": counts[None]})["n"].sum(0))
  if not keyframes:
    raise ValueError("no evaluation keyframes were seen (is the split empty?)")
  result = frame_map(dets, gts, iou_threshold=iou_threshold, class_ids=range(num_classes))
  per_class = {int(k): (None if np.isnan(v) else float(v)) for k, v in result["per_class"].items()}
  return {
    "frame_map": float(result["mAP"]),
    "per_class_ap": per_class,
    "iou_threshold": iou_threshold,
    "num_keyframes": keyframes,
    "num_gt": len(gts),
    "num_detections": len(dets),
    "truncated_gt_boxes": truncated,
    "gflops_per_clip": total_gflops,
    "encoder_gflops_per_clip": enc_gflops,
    "hosts": jax.process_count(),
  }
